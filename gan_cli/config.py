"""Typed schemas of every knob, registered in Hydra's ConfigStore, and their range checks.

OmegaConf enforces the types while Hydra composes the config (``k=abc`` fails there);
:func:`validate` checks ranges before anything is built; each builder (data, models, losses,
optim) checks its own choice names with :func:`choose`. Every failure surfaces as one
:class:`UserError` line (see ``gan_cli.cli``).
"""

from __future__ import annotations

import os
from datetime import datetime
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, TypeVar

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

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


@dataclass
class DatasetConfig:
    name: str = MISSING
    root: str = "data"  # image sets: folder that holds MNIST/, FashionMNIST/, cifar-10-batches-py/ (folder: the images)
    download: bool = False  # image sets: let torchvision fetch the files (needs the network)
    # folder: images resized (shorter side) and center-cropped to resolution x resolution
    resolution: int = 32
    channels: Optional[int] = None  # folder: 1 (grayscale) or 3 (RGB); null: RGB unless every file is grayscale
    in_memory: str = "auto"  # folder: true (whole on the device), false (streamed from disk), auto (in memory if it fits)
    workers: Optional[int] = None  # folder: DataLoader worker processes; null: one per CPU core but one (at most 8)
    # toy sets (ring, grid, mixture1d): component centres are fixed by the name, these shape them
    n_modes: int = 8  # ring: number of Gaussians on the circle
    radius: float = 1.0  # ring: circle radius
    spacing: float = 2.0  # grid: distance between neighbouring centres (5 x 5 centres)
    std: float = 0.01  # toy sets: standard deviation of every component
    means: List[float] = field(default_factory=lambda: [-2.0, 2.0])  # mixture1d: component means
    weights: List[float] = field(default_factory=lambda: [0.5, 0.5])  # mixture1d: mixing weights


@dataclass
class ArchConfig:
    name: str = MISSING
    g_hidden: int = 256  # units per hidden layer of G (mlp, maxout) / base channels (dcgan)
    d_hidden: int = 256  # units per hidden layer of D (mlp, maxout) / base channels (dcgan)
    pieces: int = 5  # maxout: linear pieces per unit
    # probability of dropping an input / a hidden unit of D (maxout: 0.2 = keep 0.8 / 0.5); null (mlp's
    # default): the paper's 0.2 / 0.5 on images, none on 1-D and 2-D points, whose only coordinates it would drop
    d_dropout_input: Optional[float] = 0.0
    d_dropout_hidden: Optional[float] = 0.0
    g_init_range: float = 0.0  # > 0: weights ~ U(-r, r) (the paper: 0.05); 0: PyTorch default
    d_init_range: float = 0.0  # > 0: weights ~ U(-r, r) (the paper: 0.005); 0: PyTorch default
    g_output_bias_from_data: bool = False  # image sets: G's output bias = logit of pixel means
    theta0: float = 1.0  # dirac: initial G(z) = theta
    psi0: float = 1.0  # dirac: initial D(x) = psi * x


@dataclass
class LossConfig:
    name: str = MISSING
    gp_weight: float = 10.0  # wasserstein_gp: lambda of the gradient penalty
    max_logit: float = 20.0  # maximum_likelihood: logits are clamped here before exp
    d_scale: float = 1.0  # D minimizes d_scale x its loss (the authors' MNIST code: 0.5, the mean of two BCEs)
    # the settings its paper trains with, applied where the command line and the preset chose nothing
    recipe: Dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = 0.1
    # TTUR (Heusel et al. 2017): D's and G's own learning rates; null: optimizer.lr
    d_lr: Optional[float] = None
    g_lr: Optional[float] = None
    momentum: float = 0.5  # sgd: initial momentum
    final_momentum: Optional[float] = None  # sgd: ramp momentum linearly to this value ...
    momentum_ramp_steps: int = 0  # ... over this many iterations (0 = no ramp)
    lr_decay: float = 1.0  # lr is divided by this every iteration (the paper: 1.000004)
    min_lr: float = 1e-6  # floor of the decayed lr
    beta1: float = 0.5  # adam
    beta2: float = 0.999  # adam
    weight_decay: float = 0.0
    nesterov: bool = False  # sgd


@dataclass
class EvalConfig:
    best_by: str = "auto"  # metric that keeps checkpoints/best.pt (auto: eval/fid, theory/jsd or theory/distance)
    n_samples: int = 10000  # image sets: generator samples for Parzen (the paper: 10,000) and FID/KID/PR
    parzen: bool = True  # image sets: the paper's Parzen-window log-likelihood
    features: bool = True  # image sets: FID / KID / precision / recall in a classifier's feature space
    classifier_steps: int = 1000  # training steps of that classifier (once; then cached)
    cache_dir: Optional[str] = None  # folder of cached classifiers (default ~/.cache/gan-cli/classifiers)
    mode_samples: int = 2500  # ring / grid: samples for the mode metrics (VEEGAN / PacGAN: 2,500)
    theory_samples: int = 50000  # known-density data: samples for JSD, V-hat and D*
    knn: int = 10  # known-density data: neighbours of the k-NN density of p_g in the JSD
    knn_d_star: int = 200  # the same for D* = p_data / (p_data + p_g) (larger: less noise in D*)
    bins_1d: int = 200  # 1-D data: histogram cells of p_g in the Figure 1 curves
    # RGB sets (cifar10, folder): Inception FID / KID from this LOCAL weights file (torch-fidelity's
    # pt_inception-2015-12-05-6726825d.pth); null: off
    inception_weights: Optional[str] = None


@dataclass
class EmaConfig:
    # an exponential moving average of G's weights for samples and evaluation (e.g. 0.999); null: off
    decay: Optional[float] = None
    start: int = 0  # the average starts after this iteration (before it, samples and evaluation read G)
    also_raw: bool = False  # also sample and evaluate G itself, its tags under raw/ (raw/eval/fid, raw/samples)


@dataclass
class TrainConfig:
    dataset: DatasetConfig = MISSING
    arch: ArchConfig = MISSING
    loss: LossConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    eval: EvalConfig = field(default_factory=EvalConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    k: int = 1  # discriminator updates per generator update (Algorithm 1)
    steps: int = 5000  # iterations of Algorithm 1 (each: k D updates + 1 G update)
    batch_size: int = 64  # m, the minibatch size of every update (examples D sees per side)
    pack: int = 1  # PacGAN: D reads pack samples side by side, so an update draws pack x batch_size of each
    z_dim: int = 100
    prior: str = "uniform"  # uniform on (-sqrt 3, sqrt 3) (unit variance, as the paper) or normal
    updates: str = "alternating"  # alternating (Algorithm 1) or simultaneous (the authors' code)
    seed: int = 0
    device: str = "auto"
    # bf16: the forward passes under bfloat16 autocast (parameters, optimizer state and losses stay float32)
    precision: str = "fp32"
    # torch.compile G and D (on a GPU with CUDA graphs: mode reduce-overhead); the first iterations compile
    compile: bool = False
    log_every: int = 100
    sample_every: int = 500
    ckpt_every: int = 1000
    eval_every: int = 1000  # iterations between evaluations (theory/ and eval/ tags, best.pt)
    n_samples: int = 64  # images in the sample grid / points in the toy scatter (x16)
    resume: Optional[str] = None  # path of a checkpoint to continue from
    # the figure a hyperparameter search (hparams_search=..., Optuna) minimises or maximises: the run
    # returns its final value (None for a run that did not finish: Optuna records a failed trial)
    optimized_metric: Optional[str] = None


def resolve_device(name: str) -> torch.device:
    """The torch device that ``device=auto|cpu|cuda`` names (auto: the GPU when there is one)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA GPU is visible to torch; use device=auto (GPU when there is one) or device=cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def register_configs() -> None:
    """Put the schemas in the ConfigStore; ``conf/config.yaml`` lists ``schema`` first."""
    cs = ConfigStore.instance()
    cs.store(name="schema", node=TrainConfig)
    # run-dir names: "<time>_<overrides>", or just "<time>" when there are none
    OmegaConf.register_new_resolver("gan_suffix", lambda s: f"_{s}" if s else "", replace=True)
    # run-dir times: now, or under torchrun rank 0's start, which every rank agreed on (distributed.init)
    OmegaConf.register_new_resolver("gan_now", lambda pattern: start_time().strftime(pattern), use_cache=True, replace=True)


def start_time() -> datetime:
    """The run's start: rank 0's clock under torchrun (GAN_CLI_START, set by distributed.init), now otherwise."""
    stamp = os.environ.get("GAN_CLI_START")
    return datetime.fromtimestamp(float(stamp)) if stamp else datetime.now()


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def validate(cfg: Any) -> None:
    """Check the range of every knob of a composed config; raise UserError naming the value.

    Names of group choices and what fits with what are checked by the builders (see cli.check).
    """
    for key in ("k", "steps", "batch_size", "pack", "z_dim", "log_every", "sample_every", "ckpt_every", "eval_every", "n_samples"):
        value = cfg[key]
        _require(value >= 1, f"{key}={value} is not allowed: {key} must be an integer >= 1")
    _require(cfg.device in DEVICES, f"device={cfg.device} is not allowed: choose one of {', '.join(DEVICES)}")
    _require(cfg.prior in PRIORS, f"prior={cfg.prior} is not allowed: choose one of {', '.join(PRIORS)}")
    _require(cfg.updates in UPDATES, f"updates={cfg.updates} is not allowed: choose one of {', '.join(UPDATES)}")
    _require(cfg.precision in PRECISIONS, f"precision={cfg.precision} is not allowed: choose one of {', '.join(PRECISIONS)}")
    _require(cfg.updates == "alternating" or cfg.k == 1,
             f"k={cfg.k} is not allowed with updates=simultaneous: it makes one D and one G update per step, so k must be 1")
    opt = cfg.optimizer
    _require(opt.lr > 0, f"optimizer.lr={opt.lr} is not allowed: the learning rate must be > 0")
    for key in ("d_lr", "g_lr"):
        _require(opt[key] is None or opt[key] > 0,
                 f"optimizer.{key}={opt[key]} is not allowed: a learning rate must be > 0 (or null: optimizer.lr)")
    for key in ("momentum", "final_momentum"):
        value = opt[key]
        _require(value is None or 0 <= value < 1, f"optimizer.{key}={value} is not allowed: momentum must be in [0, 1)")
    _require(opt.momentum_ramp_steps >= 0, f"optimizer.momentum_ramp_steps={opt.momentum_ramp_steps} is not allowed: it must be >= 0")
    _require(opt.lr_decay >= 1, f"optimizer.lr_decay={opt.lr_decay} is not allowed: it divides lr every step and must be >= 1")
    _require(opt.min_lr >= 0, f"optimizer.min_lr={opt.min_lr} is not allowed: it must be >= 0")
    for key in ("beta1", "beta2"):
        _require(0 <= opt[key] < 1, f"optimizer.{key}={opt[key]} is not allowed: it must be in [0, 1)")
    _require(opt.weight_decay >= 0, f"optimizer.weight_decay={opt.weight_decay} is not allowed: it must be >= 0")
    ema = cfg.ema
    _require(ema.decay is None or 0 < ema.decay < 1,
             f"ema.decay={ema.decay} is not allowed: it must be in (0, 1), e.g. 0.999 (or null: no average)")
    _require(ema.start >= 0, f"ema.start={ema.start} is not allowed: it must be an integer >= 0")
    arch = cfg.arch
    for key in ("g_hidden", "d_hidden", "pieces"):
        _require(arch[key] >= 1, f"arch.{key}={arch[key]} is not allowed: it must be an integer >= 1")
    for key in ("d_dropout_input", "d_dropout_hidden"):
        _require(arch[key] is None or 0 <= arch[key] < 1,
                 f"arch.{key}={arch[key]} is not allowed: a dropout probability must be in [0, 1) (or null: automatic)")
    for key in ("g_init_range", "d_init_range"):
        _require(arch[key] >= 0, f"arch.{key}={arch[key]} is not allowed: it must be >= 0 (0 = PyTorch's default init)")
    _require(cfg.loss.gp_weight >= 0, f"loss.gp_weight={cfg.loss.gp_weight} is not allowed: it must be >= 0")
    _require(cfg.loss.d_scale > 0, f"loss.d_scale={cfg.loss.d_scale} is not allowed: it must be > 0")
    _require(cfg.loss.max_logit > 0, f"loss.max_logit={cfg.loss.max_logit} is not allowed: it must be > 0")
    ev = cfg.eval
    for key in ("n_samples", "classifier_steps", "mode_samples", "theory_samples", "bins_1d"):
        _require(ev[key] >= 1, f"eval.{key}={ev[key]} is not allowed: it must be an integer >= 1")
    for key in ("knn", "knn_d_star"):
        _require(1 <= ev[key] < ev.theory_samples, f"eval.{key}={ev[key]} is not allowed: it must be an integer in "
                                                   f"[1, eval.theory_samples) = [1, {ev.theory_samples})")
    ds = cfg.dataset
    _require(ds.resolution >= 1, f"dataset.resolution={ds.resolution} is not allowed: it must be an integer >= 1")
    _require(ds.channels in (None, 1, 3), f"dataset.channels={ds.channels} is not allowed: choose 1 (grayscale), 3 (RGB) "
                                          "or null (detected)")
    _require(str(ds.in_memory).lower() in ("auto", "true", "false"),
             f"dataset.in_memory={ds.in_memory} is not allowed: choose one of auto, true, false")
    _require(ds.workers is None or ds.workers >= 0, f"dataset.workers={ds.workers} is not allowed: it must be an integer "
                                                    ">= 0 (0: read in the training process) or null (automatic)")
    _require(ds.std > 0, f"dataset.std={ds.std} is not allowed: it must be > 0")
    _require(ds.n_modes >= 1, f"dataset.n_modes={ds.n_modes} is not allowed: it must be >= 1")
    _require(len(ds.means) == len(ds.weights) and len(ds.means) >= 1 and all(w > 0 for w in ds.weights),
             f"dataset.means={list(ds.means)} / dataset.weights={list(ds.weights)} are not allowed: give as many positive weights as means")
