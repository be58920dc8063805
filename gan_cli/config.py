"""Typed schemas of every knob, registered in Hydra's ConfigStore, and their range checks.

OmegaConf enforces the types while Hydra composes the config (``k=abc`` fails there);
:func:`validate` checks ranges before anything is built; each builder (data, models, losses,
optim) checks its own choice names with :func:`choose`. Every failure surfaces as one
:class:`UserError` line (see ``gan_cli.cli``).
"""

from __future__ import annotations

import hashlib
import math
import os
from datetime import datetime
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, TypeVar

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

GROUPS = ("dataset", "arch", "loss", "optimizer")  # config groups; their choices are the YAML files in conf/<group>/
# the choices of the top-level knobs (the group choices live with their builders: data, models, losses, optim)
DEVICES = ("auto", "cpu", "cuda")
PRIORS = ("uniform", "normal")
UPDATES = ("alternating", "simultaneous")
PRECISIONS = ("fp32", "bf16")


class UserError(Exception):
    """A mistake in what the user asked for: reported as one line, never a traceback."""


T = TypeVar("T")


def choose(table: Mapping[str, T], name: str, group: str, what: str) -> T:
    """``table[name]``, or a UserError naming the choices (``loss=x is not a loss; choose one of: ...``)."""
    if name not in table:
        raise UserError(f"{group}={name} is not {what}; choose one of: {', '.join(table)}")
    return table[name]


@dataclass(frozen=True)
class Domain:
    """The values a setting accepts, stated beside its type in the schema and checked by
    :func:`check_domains` before anything is built. ``kind``: int, real, flag, choice, text, path,
    reals (a list of reals), group (a group's name: its builder checks it), free (not checked)."""

    kind: str
    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False  # lo itself is not allowed
    hi_open: bool = False
    choices: Tuple[Any, ...] = ()
    null: str = ""  # what null means, when null is allowed
    applies: Tuple[str, Tuple[str, ...]] = ("", ())  # (group, its choices the setting has an effect with)

    def describe(self) -> str:
        """What is allowed, in words (``an integer in [1, 1000]``, ``one of: sgd, adam``)."""
        if self.kind in ("group", "free"):
            text = "a choice of its group" if self.kind == "group" else "anything"
        elif self.kind == "flag":
            text = "true or false"
        elif self.kind == "choice":
            text = "one of: " + ", ".join("null" if c is None else str(c) for c in self.choices)
        elif self.kind in ("text", "path"):
            text = f"a {'path' if self.kind == 'path' else 'text'} of at most {int(self.hi)} characters"
        else:
            what = {"int": "an integer", "real": "a finite number", "reals": "a list of finite numbers"}[self.kind]
            left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            text = f"{what} in {left}{_num(self.lo)}, {_num(self.hi)}{right}"
        return text + (f" (or null: {self.null})" if self.null else "")

    def allows(self, value: Any) -> bool:
        """Whether ``value`` (a composed config's value) is in the domain."""
        if value is None:
            return bool(self.null) or self.kind in ("group", "free")
        if self.kind in ("group", "free"):
            return True
        if self.kind == "flag":
            return isinstance(value, bool)
        if self.kind == "choice":
            value = value.lower() if value in ("True", "False") else value  # in_memory=true, read as a string
            return any(value == c and type(value) is type(c) for c in self.choices)
        if self.kind in ("text", "path"):
            return isinstance(value, str) and 0 < len(value) <= self.hi and "\0" not in value
        if self.kind == "reals":
            return isinstance(value, (list, tuple)) and len(value) >= 1 and all(self._number(v) for v in value)
        if self.kind == "int" and (not isinstance(value, int) or isinstance(value, bool)):
            return False
        return self._number(value)

    def _number(self, v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            return False
        return self.hi is None or (v < self.hi or (not self.hi_open and v == self.hi))


def _num(x: Optional[float]) -> str:
    if x is None:
        return "inf"
    return f"{int(x):_}".replace("_", ",") if float(x).is_integer() and abs(x) >= 1 else f"{x:g}"


def _setting(default: Any, domain: Domain) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"domain": domain})
    return field(default=default, metadata={"domain": domain})


def integer(default: Optional[int], lo: int, hi: int, null: str = "", applies=("", ())) -> Any:
    return _setting(default, Domain("int", lo, hi, null=null, applies=applies))


def real(default: Optional[float], lo: float, hi: float, lo_open: bool = False, hi_open: bool = False, null: str = "",
         applies=("", ())) -> Any:
    return _setting(default, Domain("real", lo, hi, lo_open, hi_open, null=null, applies=applies))


def flag(default: bool, applies=("", ())) -> Any:
    return _setting(default, Domain("flag", applies=applies))


def one_of(default: Any, choices: Tuple[Any, ...], null: str = "", applies=("", ())) -> Any:
    return _setting(default, Domain("choice", choices=choices, null=null, applies=applies))


def text(default: Optional[str], kind: str = "text", null: str = "", longest: int = 4096) -> Any:
    return _setting(default, Domain(kind, 1, longest, null=null))


MAX_ITERATIONS = 10**9  # steps and every *_every / iteration count
IMAGE_SETS = ("digits", "mnist", "fashion_mnist", "cifar10", "folder")
DOWNLOADS = ("mnist", "fashion_mnist", "cifar10")  # the sets torchvision can fetch
FOLDER = ("dataset", ("folder",))


@dataclass
class DatasetConfig:
    name: str = _setting(MISSING, Domain("group"))
    # image sets: folder that holds MNIST/, FashionMNIST/, cifar-10-batches-py/ (folder: the images)
    root: str = text("data", "path")
    download: bool = flag(False, applies=("dataset", DOWNLOADS))  # let torchvision fetch the files (needs the network)
    # folder: images resized (shorter side) and center-cropped to resolution x resolution
    resolution: int = integer(32, 4, 1024, applies=FOLDER)
    # folder: 1 (grayscale) or 3 (RGB); null: RGB unless every file is grayscale
    channels: Optional[int] = one_of(None, (1, 3), null="detected", applies=FOLDER)
    # folder: true (whole on the device), false (streamed from disk), auto (in memory if it fits)
    in_memory: str = one_of("auto", ("auto", "true", "false"), applies=FOLDER)
    # folder: DataLoader worker processes; null: one per CPU core but one (at most 8)
    workers: Optional[int] = integer(None, 0, 64, null="one per CPU core but one, at most 8", applies=FOLDER)
    # toy sets (ring, grid, mixture1d): component centres are fixed by the name, these shape them
    n_modes: int = integer(8, 1, 1000, applies=("dataset", ("ring",)))  # ring: number of Gaussians on the circle
    radius: float = real(1.0, 0, 1000, lo_open=True, applies=("dataset", ("ring",)))  # ring: circle radius
    # grid: distance between neighbouring centres (5 x 5 centres)
    spacing: float = real(2.0, 0, 1000, lo_open=True, applies=("dataset", ("grid",)))
    # toy sets: standard deviation of every component
    std: float = real(0.01, 0, 100, lo_open=True, applies=("dataset", ("ring", "grid", "mixture1d")))
    means: List[float] = _setting([-2.0, 2.0], Domain("reals", -1000, 1000, applies=("dataset", ("mixture1d",))))
    weights: List[float] = _setting([0.5, 0.5], Domain("reals", 0, 1e6, lo_open=True, applies=("dataset", ("mixture1d",))))


@dataclass
class ArchConfig:
    name: str = _setting(MISSING, Domain("group"))
    # units per hidden layer of G (mlp, maxout) / base channels (dcgan)
    g_hidden: int = integer(256, 1, 65536, applies=("arch", ("mlp", "maxout", "pacgan", "dcgan")))
    # units per hidden layer of D (mlp, maxout) / base channels (dcgan)
    d_hidden: int = integer(256, 1, 65536, applies=("arch", ("mlp", "maxout", "pacgan", "dcgan")))
    pieces: int = integer(5, 1, 64, applies=("arch", ("maxout",)))  # maxout: linear pieces per unit
    # probability of dropping an input / a hidden unit of D (maxout: 0.2 = keep 0.8 / 0.5); null (mlp's
    # default): the paper's 0.2 / 0.5 on images, none on 1-D and 2-D points, whose only coordinates it would drop
    d_dropout_input: Optional[float] = real(0.0, 0, 1, hi_open=True, null="automatic")
    d_dropout_hidden: Optional[float] = real(0.0, 0, 1, hi_open=True, null="automatic")
    g_init_range: float = real(0.0, 0, 10)  # > 0: weights ~ U(-r, r) (the paper: 0.05); 0: PyTorch default
    d_init_range: float = real(0.0, 0, 10)  # > 0: weights ~ U(-r, r) (the paper: 0.005); 0: PyTorch default
    # image sets: G's output bias = logit of pixel means
    g_output_bias_from_data: bool = flag(False, applies=("dataset", IMAGE_SETS))
    theta0: float = real(1.0, -1000, 1000, applies=("arch", ("dirac",)))  # dirac: initial G(z) = theta
    psi0: float = real(1.0, -1000, 1000, applies=("arch", ("dirac",)))  # dirac: initial D(x) = psi * x


@dataclass
class LossConfig:
    name: str = _setting(MISSING, Domain("group"))
    # wasserstein_gp: lambda of the gradient penalty
    gp_weight: float = real(10.0, 0, 10000, applies=("loss", ("wasserstein_gp",)))
    # maximum_likelihood: logits are clamped here before exp
    max_logit: float = real(20.0, 0, 80, lo_open=True, applies=("loss", ("maximum_likelihood",)))
    # D minimizes d_scale x its loss (the authors' MNIST code: 0.5, the mean of two BCEs)
    d_scale: float = real(1.0, 0, 100, lo_open=True)
    # the settings its paper trains with, applied where the command line and the preset chose nothing
    recipe: Dict[str, Any] = field(default_factory=dict, metadata={"domain": Domain("free")})


SGD, ADAM = ("optimizer", ("sgd",)), ("optimizer", ("adam",))


@dataclass
class OptimizerConfig:
    name: str = _setting(MISSING, Domain("group"))
    lr: float = real(0.1, 0, 10, lo_open=True)
    # TTUR (Heusel et al. 2017): D's and G's own learning rates; null: optimizer.lr
    d_lr: Optional[float] = real(None, 0, 10, lo_open=True, null="optimizer.lr")
    g_lr: Optional[float] = real(None, 0, 10, lo_open=True, null="optimizer.lr")
    momentum: float = real(0.5, 0, 1, hi_open=True, applies=SGD)  # sgd: initial momentum
    # sgd: ramp momentum linearly to this value ...
    final_momentum: Optional[float] = real(None, 0, 1, hi_open=True, null="no ramp", applies=SGD)
    momentum_ramp_steps: int = integer(0, 0, MAX_ITERATIONS, applies=SGD)  # ... over this many iterations (0 = no ramp)
    lr_decay: float = real(1.0, 1, 2)  # lr is divided by this every iteration (the paper: 1.000004)
    min_lr: float = real(1e-6, 0, 10)  # floor of the decayed lr
    beta1: float = real(0.5, 0, 1, hi_open=True, applies=ADAM)  # adam
    beta2: float = real(0.999, 0, 1, hi_open=True, applies=ADAM)  # adam
    weight_decay: float = real(0.0, 0, 10)
    nesterov: bool = flag(False, applies=SGD)  # sgd


@dataclass
class EvalConfig:
    # metric that keeps checkpoints/best.pt (auto: eval/fid, theory/jsd or theory/distance)
    best_by: str = text("auto", longest=200)
    # image sets: generator samples for Parzen (the paper: 10,000) and FID/KID/PR
    n_samples: int = integer(10000, 1, 200_000)
    parzen: bool = flag(True)  # image sets: the paper's Parzen-window log-likelihood
    features: bool = flag(True)  # image sets: FID / KID / precision / recall in a classifier's feature space
    classifier_steps: int = integer(1000, 1, 100_000)  # training steps of that classifier (once; then cached)
    # folder of cached classifiers (default ~/.cache/gan-cli/classifiers)
    cache_dir: Optional[str] = text(None, "path", null="~/.cache/gan-cli/classifiers")
    # ring / grid: samples for the mode metrics (VEEGAN / PacGAN: 2,500)
    mode_samples: int = integer(2500, 1, 1_000_000)
    theory_samples: int = integer(50000, 2, 1_000_000)  # known-density data: samples for JSD, V-hat and D*
    knn: int = integer(10, 1, 10_000)  # known-density data: neighbours of the k-NN density of p_g in the JSD
    # the same for D* = p_data / (p_data + p_g) (larger: less noise in D*)
    knn_d_star: int = integer(200, 1, 10_000)
    bins_1d: int = integer(200, 2, 100_000)  # 1-D data: histogram cells of p_g in the Figure 1 curves
    # RGB sets (cifar10, folder): Inception FID / KID from this LOCAL weights file (torch-fidelity's
    # pt_inception-2015-12-05-6726825d.pth); null: off
    inception_weights: Optional[str] = text(None, "path", null="off")


@dataclass
class EmaConfig:
    # an exponential moving average of G's weights for samples and evaluation (e.g. 0.999); null: off
    decay: Optional[float] = real(None, 0, 1, lo_open=True, hi_open=True, null="no average")
    start: int = integer(0, 0, MAX_ITERATIONS)  # the average starts after this iteration (before it, samples and evaluation read G)
    also_raw: bool = flag(False)  # also sample and evaluate G itself, its tags under raw/ (raw/eval/fid, raw/samples)


@dataclass
class TrainConfig:
    dataset: DatasetConfig = MISSING
    arch: ArchConfig = MISSING
    loss: LossConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    eval: EvalConfig = field(default_factory=EvalConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    k: int = integer(1, 1, 1000)  # discriminator updates per generator update (Algorithm 1)
    steps: int = integer(5000, 1, MAX_ITERATIONS)  # iterations of Algorithm 1 (each: k D updates + 1 G update)
    batch_size: int = integer(64, 1, 10_000_000)  # m, the minibatch size of every update (examples D sees per side)
    # PacGAN: D reads pack samples side by side, so an update draws pack x batch_size of each
    pack: int = integer(1, 1, 64)
    z_dim: int = integer(100, 1, 100_000)
    # uniform on (-sqrt 3, sqrt 3) (unit variance, as the paper) or normal
    prior: str = one_of("uniform", PRIORS)
    updates: str = one_of("alternating", UPDATES)  # alternating (Algorithm 1) or simultaneous (the authors' code)
    seed: int = integer(0, 0, 2**32 - 1)
    device: str = one_of("auto", DEVICES)
    # bf16: the forward passes under bfloat16 autocast (parameters, optimizer state and losses stay float32)
    precision: str = one_of("fp32", PRECISIONS)
    # torch.compile G and D (on a GPU with CUDA graphs: mode reduce-overhead); the first iterations compile
    compile: bool = flag(False)
    log_every: int = integer(100, 1, MAX_ITERATIONS)
    sample_every: int = integer(500, 1, MAX_ITERATIONS)
    ckpt_every: int = integer(1000, 1, MAX_ITERATIONS)
    eval_every: int = integer(1000, 1, MAX_ITERATIONS)  # iterations between evaluations (theory/ and eval/ tags, best.pt)
    n_samples: int = integer(64, 1, 1024)  # images in the sample grid / points in the toy scatter (x16)
    resume: Optional[str] = text(None, "path", null="a new run")  # path of a checkpoint to continue from
    # the figure a hyperparameter search (hparams_search=..., Optuna) minimises or maximises: the run
    # returns its final value (None for a run that did not finish: Optuna records a failed trial)
    optimized_metric: Optional[str] = text(None, longest=200, null="the run's figures")


def resolve_device(name: str) -> torch.device:
    """The torch device that ``device=auto|cpu|cuda`` names (auto: the GPU when there is one)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA GPU is visible to torch; use device=auto (GPU when there is one) or device=cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


NAME_BYTES = 200  # the longest overrides part of a run directory's name (file systems allow 255 bytes)


def short_name(overrides: str) -> str:
    """``overrides`` as one directory name: path separators replaced, and shortened with a stable hash
    when longer than NAME_BYTES (the full overrides stay in .hydra/overrides.yaml)."""
    name = overrides.replace(os.sep, "%2F")
    if len(name.encode()) <= NAME_BYTES:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    head = name.encode()[: NAME_BYTES - 14].decode(errors="ignore")
    return f"{head}~{digest}"


def register_configs() -> None:
    """Put the schemas in the ConfigStore; ``conf/config.yaml`` lists ``schema`` first."""
    cs = ConfigStore.instance()
    cs.store(name="schema", node=TrainConfig)
    # run-dir names: "<time>_<overrides>", or just "<time>" when there are none
    # (the overrides part shortened with a stable hash past NAME_BYTES, path separators replaced)
    OmegaConf.register_new_resolver("gan_suffix", lambda s: f"_{short_name(s)}" if s else "", replace=True)
    OmegaConf.register_new_resolver("gan_name", short_name, replace=True)
    # run-dir times: now, or under torchrun rank 0's start, which every rank agreed on (distributed.init)
    OmegaConf.register_new_resolver("gan_now", lambda pattern: start_time().strftime(pattern), use_cache=True, replace=True)


def start_time() -> datetime:
    """The run's start: rank 0's clock under torchrun (GAN_CLI_START, set by distributed.init), now otherwise."""
    stamp = os.environ.get("GAN_CLI_START")
    return datetime.fromtimestamp(float(stamp)) if stamp else datetime.now()


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def domains(cls: Any = None, prefix: str = "") -> Iterator[Tuple[str, Domain]]:
    """Every setting's dotted key and its Domain, from the schema (nested groups walked)."""
    import dataclasses
    import typing

    cls = cls or TrainConfig
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from domains(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, f.metadata["domain"]


def shown(value: Any) -> str:
    """A value as an error message quotes it (a long one shortened)."""
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return text if len(text) <= 60 else text[:40] + f"... ({len(text)} characters)"


def check_domains(cfg: Any) -> None:
    """Every value of a composed config in its schema domain, or a UserError naming the key."""
    for key, domain in domains():
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=True)
        except OmegaConfBaseException as err:  # ${oc.env:UNSET}, ${no.such.key}, a missing value
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"{key} cannot be read: {first}") from None
        if hasattr(value, "_content") or isinstance(value, (list, dict)):  # ListConfig / DictConfig
            value = OmegaConf.to_container(value) if value is not None else None
        if not domain.allows(value):
            raise UserError(f"{key}={shown(value)} is not allowed: {key} must be {domain.describe()}")


def inapplicable(cfg: Any, keys: Any) -> List[str]:
    """The settings among ``keys`` (those the command line gave) that have no effect with the
    chosen group options (``optimizer.beta1`` with optimizer=sgd): one line each, for a warning. The
    eval.* sample counts are left out: one set of them serves every dataset of a sweep."""
    out = []
    for key, domain in domains():
        group, fits = domain.applies
        if key in keys and group and cfg[group].name not in fits:
            out.append(f"{key} has no effect with {group}={cfg[group].name} (it applies to {group}={'|'.join(fits)})")
    return out


def validate(cfg: Any) -> None:
    """Check every knob of a composed config: its domain (the schema), then what must fit together;
    raise UserError naming the value. Names of group choices are checked by the builders (cli.check)."""
    check_domains(cfg)
    _require(cfg.updates == "alternating" or cfg.k == 1,
             f"k={cfg.k} is not allowed with updates=simultaneous: it makes one D and one G update per step, so k must be 1")
    opt = cfg.optimizer
    _require(not (opt.name == "sgd" and opt.nesterov and opt.momentum == 0),
             "optimizer.nesterov=true is not allowed with optimizer.momentum=0: Nesterov's method needs a momentum > 0")
    ev = cfg.eval
    for key in ("knn", "knn_d_star"):
        _require(ev[key] < ev.theory_samples, f"eval.{key}={ev[key]} is not allowed: it must be an integer in "
                                              f"[1, eval.theory_samples) = [1, {ev.theory_samples})")
    ds = cfg.dataset
    _require(len(ds.means) == len(ds.weights),
             f"dataset.means={list(ds.means)} / dataset.weights={list(ds.weights)} are not allowed: give as many positive weights as means")
