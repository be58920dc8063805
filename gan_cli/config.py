"""The settings: the registry of choices (each registered with the knobs it reads), the schema, range checks and
no-effect warnings derived from it. OmegaConf enforces the types; every other failure is one :class:`UserError` line."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import math
import os
import time
import typing
from dataclasses import dataclass, field, make_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeVar

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException


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
    """The values a setting accepts. ``kind``: int, real, flag, choice, text, path, reals, group (a group's name: its
    builder checks it), free (not checked)."""

    kind: str
    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False  # lo itself is not allowed
    hi_open: bool = False
    choices: Tuple[Any, ...] = ()
    null: str = ""  # what null means, when null is allowed

    def describe(self) -> str:
        if self.kind in ("group", "free", "flag"):
            text = {"group": "a choice of its group", "free": "a mapping of settings to values, e.g. "
                    "{optimizer: adam, optimizer.lr: 0.0002}", "flag": "true or false"}[self.kind]
        elif self.kind == "choice":
            text = "one of: " + ", ".join("null" if c is None else str(c) for c in self.choices)
        elif self.kind in ("text", "path"):
            text = f"a {self.kind} of at most {int(self.hi)} characters"
        else:
            what = {"int": "an integer", "real": "a finite number", "reals": "a list of finite numbers"}[self.kind]
            left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            text = f"{what} in {left}{_num(self.lo)}, {_num(self.hi)}{right}"
        return text + (f" (or null: {self.null})" if self.null else "")

    def allows(self, value: Any) -> bool:
        if value is None or self.kind in ("group", "free"):
            return self.kind in ("group", "free") or bool(self.null)
        if self.kind == "flag":
            return isinstance(value, bool)
        if self.kind == "choice":
            value = value.lower() if value in ("True", "False") else value  # in_memory=true, read as a string
            return any(value == c and type(value) is type(c) for c in self.choices)
        if self.kind in ("text", "path"):
            return isinstance(value, str) and 0 < len(value) <= self.hi and "\0" not in value
        if self.kind == "reals":
            return isinstance(value, (list, tuple)) and len(value) >= 1 and all(self._number(v) for v in value)
        return self._number(value) and (self.kind != "int" or isinstance(value, int))  # _number refuses bools

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


@dataclass(frozen=True)
class Knob:
    """One setting: its default, its domain and what it means."""

    default: Any
    domain: Domain
    about: str = ""
    # a group knob that only has an effect with some choices of ANOTHER group, named by a family of
    # that group's entries (arch.g_output_bias_from_data: ("dataset", "image"))
    applies: Tuple[str, str] = ("", "")

    def annotation(self) -> Any:
        base = {"int": int, "real": float, "flag": bool, "text": str, "path": str, "group": str,
                "reals": List[float], "free": Dict[str, Any]}.get(self.domain.kind)
        if base is None:  # a choice: the type of its choices
            base = type(next(c for c in self.domain.choices if c is not None))
        return Optional[base] if self.default is None or self.domain.null else base

    def field(self) -> Any:
        if isinstance(self.default, (list, dict)):
            return field(default_factory=lambda: type(self.default)(self.default), metadata={"domain": self.domain})
        return field(default=self.default, metadata={"domain": self.domain})


def integer(default: Optional[int], lo: int, hi: int, about: str = "", null: str = "", applies=("", "")) -> Knob:
    return Knob(default, Domain("int", lo, hi, null=null), about, applies)


def real(default: Optional[float], lo: float, hi: float, about: str = "", lo_open: bool = False, hi_open: bool = False,
         null: str = "", applies=("", "")) -> Knob:
    return Knob(default, Domain("real", lo, hi, lo_open, hi_open, null=null), about, applies)


def reals(default: List[float], lo: float, hi: float, about: str = "", lo_open: bool = False) -> Knob:
    return Knob(list(default), Domain("reals", lo, hi, lo_open), about)


def flag(default: bool, about: str = "", applies=("", "")) -> Knob:
    return Knob(default, Domain("flag"), about, applies)


def one_of(default: Any, choices: Tuple[Any, ...], about: str = "", null: str = "") -> Knob:
    return Knob(default, Domain("choice", choices=choices, null=null), about)


def text(default: Optional[str], about: str = "", kind: str = "text", null: str = "", longest: int = 4096) -> Knob:
    return Knob(default, Domain(kind, 1, longest, null=null), about)


def free(default: Dict[str, Any], about: str = "") -> Knob:
    return Knob(dict(default), Domain("free"), about)


MAX_ITERATIONS = 10**9  # steps and every *_every / iteration count

# -- the registry of choices -----------------------------------------------------------------------
GROUPS = ("dataset", "arch", "loss", "optimizer")
PRESETS = ("experiment", "hparams_search")  # groups of YAML files only (presets), no registered choices
# the modules whose import registers the built-in choices (each may register more: tests, plug-ins)
BUILT_IN = ("gan_cli.data", "gan_cli.game.models", "gan_cli.game.losses", "gan_cli.game.optim",
            "gan_cli.evaluation.evaluate")
_SHARED: Dict[str, Dict[str, Knob]] = {g: {} for g in GROUPS + ("eval",)}  # knobs every choice of a group reads
CHOICES: Dict[str, Dict[str, Any]] = {g: {} for g in GROUPS + ("eval",)}  # group -> name -> entry (eval: metrics)
_SCHEMA: Dict[str, Any] = {}


def share(group: str, knobs: Mapping[str, Knob]) -> None:
    """Declare knobs that every choice of ``group`` reads (optimizer.lr, loss.d_scale)."""
    _SHARED[group].update(knobs)
    _SCHEMA.clear()


def register(group: str, name: str, entry: T) -> T:
    """Register ``entry`` (with ``knobs``, the settings it reads beyond the shared ones, and ``about``) as the choice
    ``group=name``; a knob that another choice declares too must be the same Knob."""
    for key, knob in entry.knobs.items():
        for other_name, other in CHOICES[group].items():
            if other_name != name and key in other.knobs and other.knobs[key] != knob:
                raise ValueError(f"{group}.{key} is declared differently by {group}={other_name} and {group}={name}")
        if key in _SHARED[group]:
            raise ValueError(f"{group}.{key} is shared by every {group}; {group}={name} cannot declare it again")
    CHOICES[group][name] = entry
    _SCHEMA.clear()
    if group in GROUPS and not (Path(config_dir()) / group / f"{name}.yaml").is_file():
        ConfigStore.instance().store(group=group, name=name, node={"name": name})  # a choice with no YAML of its own
    return entry


def registry() -> Dict[str, Dict[str, Any]]:
    for module in BUILT_IN:
        importlib.import_module(module)
    return CHOICES


def choices(group: str) -> Dict[str, Any]:
    return registry()[group]


WHAT = {"dataset": "a dataset", "arch": "an architecture", "loss": "a loss", "optimizer": "an optimizer",
        "eval": "a metric family"}


def entry(group: str, name: str) -> Any:
    return choose(choices(group), name, group, WHAT[group])


def shared(group: str) -> Dict[str, Knob]:
    registry()
    return dict(_SHARED[group])


def _group_schema(group: str) -> type:
    knobs: Dict[str, Knob] = {"name": Knob(MISSING, Domain("group"))} if group in GROUPS else {}
    knobs.update({**_SHARED[group], **{key: k for e in choices(group).values() for key, k in e.knobs.items()}})
    fields = [(key, k.annotation() if k.default is not MISSING else str, k.field()) for key, k in knobs.items()]
    return _named(make_dataclass(f"{group.title()}Config", fields))


EMA = {
    "decay": real(None, 0, 1, "an exponential moving average of G's weights for samples and evaluation (e.g. 0.999)",
                  lo_open=True, hi_open=True, null="no average"),
    "start": integer(0, 0, MAX_ITERATIONS, "the average starts after this iteration (before it: G itself)"),
    "also_raw": flag(False, "also sample and evaluate G itself, its tags under raw/ (raw/eval/fid, raw/game/samples)"),
}
TOP = {
    "k": integer(1, 1, 1000, "discriminator updates per generator update (Algorithm 1)"),
    "steps": integer(5000, 1, MAX_ITERATIONS, "iterations of Algorithm 1 (each: k D updates + 1 G update)"),
    "batch_size": integer(64, 1, 10_000_000, "m, the minibatch of every update (examples D sees per side)"),
    "pack": integer(1, 1, 64,
                    "PacGAN: D reads pack samples side by side, so an update draws pack x batch_size of each"),
    "z_dim": integer(100, 1, 100_000, "noise size"),
    "prior": one_of("uniform", ("uniform", "normal"),
                    "uniform on (-sqrt 3, sqrt 3) (unit variance, as the paper) or normal"),
    "updates": one_of("alternating", ("alternating", "simultaneous"),
                      "alternating (Algorithm 1) or simultaneous (the authors' code)"),
    "seed": integer(0, 0, 2**32 - 1, "the same seed on the CPU gives identical losses"),
    "device": one_of("auto", ("auto", "cpu", "cuda"), "auto (the GPU when there is one), cpu, cuda"),
    "precision": one_of("fp32", ("fp32", "bf16"), "bf16: forward passes under bfloat16 autocast"),
    "compile": flag(False, "torch.compile G and D (on a GPU with CUDA graphs); the first iterations compile"),
    "log_every": integer(100, 1, MAX_ITERATIONS, "iterations between scalar logs"),
    "sample_every": integer(500, 1, MAX_ITERATIONS, "iterations between sample images"),
    "ckpt_every": integer(1000, 1, MAX_ITERATIONS, "iterations between checkpoints"),
    "eval_every": integer(None, 1, MAX_ITERATIONS, "iterations between evaluations (eval/ and theory/ tags, best.pt)",
                          null="1,000, or steps / 5 for a shorter run (at least 5 points)"),
    "n_samples": integer(64, 1, 1024, "images in the sample grid / points in the toy scatter (x16)"),
    "resume": text(None, "a run directory or checkpoint to continue from", "path", null="a new run"),
    "optimized_metric": text(None, "the figure a hyperparameter search optimises (hparams_search=...)", longest=200,
                             null="the run's figures"),
}


def eval_every(cfg) -> int:
    """``eval_every``, or 1,000 and at most steps / 5 (rounded up): evaluation curves of at least 5 points."""
    return cfg.eval_every or min(1000, -(-cfg.steps // 5))


def schema(group: Optional[str] = None) -> type:
    """The structured config (a dataclass) of the whole run, or of one group, derived from the registry."""
    if not _SCHEMA:
        registry()
        _SCHEMA.update({g: _group_schema(g) for g in GROUPS + ("eval",)})
        _SCHEMA["ema"] = _named(make_dataclass("EmaConfig", [(k, v.annotation(), v.field()) for k, v in EMA.items()]))
        fields = [(g, _SCHEMA[g], field(default=MISSING) if g in GROUPS else field(default_factory=_SCHEMA[g]))
                  for g in GROUPS + ("eval", "ema")]
        fields += [(key, k.annotation(), k.field()) for key, k in TOP.items()]
        _SCHEMA["_"] = _named(make_dataclass("TrainConfig", fields))
    return _SCHEMA["_" if group is None else group]


def _named(cls: type) -> type:
    cls.__module__ = __name__  # found again by name: see __getattr__
    return cls


def __getattr__(name: str) -> type:
    """The schema's classes by name (``TrainConfig``, ...), built on first use: a config pickled in one process (a
    submitit job's) is read back in another."""
    if name.endswith("Config") and not name.startswith("_"):
        schema()
        for cls in _SCHEMA.values():
            if cls.__name__ == name:
                return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA GPU is visible to torch; "
                        "use device=auto (GPU when there is one) or device=cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


NAME_BYTES = 200  # the longest overrides part of a run directory's name (file systems allow 255 bytes)


def short_name(overrides: str) -> str:
    """``overrides`` as one directory name: separators replaced, past NAME_BYTES shortened with a stable hash."""
    name = overrides.replace(os.sep, "%2F")
    if len(name.encode()) <= NAME_BYTES:
        return name
    head = name.encode()[: NAME_BYTES - 14].decode(errors="ignore")
    return f"{head}~{hashlib.sha1(name.encode()).hexdigest()[:12]}"


def register_configs() -> None:
    """Put the schema in the ConfigStore (``conf/config.yaml`` lists it first) and the run directories' resolvers."""
    ConfigStore.instance().store(name="schema", node=schema())
    # run-dir names: "<time>_<overrides>", or just "<time>" when there are none
    OmegaConf.register_new_resolver("gan_suffix", lambda s: f"_{short_name(s)}" if s else "", replace=True)
    # run-dir times: now, or under torchrun rank 0's start, which every rank agreed on (GAN_CLI_START, set by
    # distributed.init)
    OmegaConf.register_new_resolver("gan_now", lambda pattern: datetime.fromtimestamp(
        float(os.environ.get("GAN_CLI_START") or time.time())).strftime(pattern), use_cache=True, replace=True)


def config_dir() -> str:
    """The configs shipped in the wheel (gan_cli/conf) or, in a checkout, the top-level conf/."""
    package = Path(__file__).resolve().parent
    return str(package / "conf" if (package / "conf").is_dir() else package.parent / "conf")


def choice_node(group: str, name: str) -> Any:
    path = Path(config_dir()) / group / f"{name}.yaml"
    return OmegaConf.load(path) if path.is_file() else OmegaConf.create({"name": name})


def dotted_keys(node: Mapping[str, Any], prefix: str = "") -> List[str]:
    """Every leaf's dotted key in a nested mapping (a dict or a DictConfig)."""
    return [leaf for key, value in node.items()
            for leaf in (dotted_keys(value, f"{prefix}{key}.") if isinstance(value, Mapping) else [f"{prefix}{key}"])]


def preset(name: str) -> Tuple[Dict[str, str], List[str]]:
    """The experiment preset ``name``'s group choices (``{"dataset": "ring"}``) and dotted settings (none if no such
    preset)."""
    path = Path(config_dir()) / "experiment" / f"{name}.yaml"
    if not path.is_file():
        return {}, []
    body = OmegaConf.to_container(OmegaConf.load(path))
    groups, settings = {}, []
    for entry in body.pop("defaults", []):
        if isinstance(entry, str) and entry != "_self_":  # a preset this one builds on (figure1_two_modes)
            base_groups, base_settings = preset(entry)
            groups, settings = {**groups, **base_groups}, settings + base_settings
        elif isinstance(entry, dict):
            groups.update({k.split()[-1].strip("/"): str(v) for k, v in entry.items()})
    return groups, list(dict.fromkeys(settings + dotted_keys(body)))


def domains(cls: Any = None, prefix: str = "") -> Iterator[Tuple[str, Domain]]:
    """Every setting's dotted key and its Domain, from the schema."""
    cls = cls or schema()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from domains(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, f.metadata["domain"]


def parse_overrides(overrides: Sequence[str]) -> list:
    """Hydra's parse of command-line overrides; none where they do not parse (the command line's check names that)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except HydraException:
        return []


def settings(overrides: Sequence[str]) -> Dict[str, str]:
    """Each setting a command line gives, with the value Hydra reads (the last where given twice)."""
    return {o.get_key_element().lstrip("+~"): str(o.value()) for o in parse_overrides(overrides)}


def texts(node: Any) -> List[str]:
    """A list node's items as written (``${...}`` left unresolved): the overrides Hydra records."""
    return [str(item) for item in OmegaConf.to_container(node, resolve=False)]


def hydras(key: str) -> bool:
    """Whether a setting or group is Hydra's own (``hydra``, ``hydra.run.dir``, ``hydra/launcher``), not gan-train's."""
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def sweeping(argv) -> bool:
    """Whether a command line asks Hydra for a sweep (``-m``, ``--multirun``)."""
    return any(a in ("-m", "--multirun") for a in argv)


def first_line(err: Exception) -> str:
    """An exception's first line (its type's name when it has no text)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def shown(value: Any) -> str:
    """A value as an error message quotes it (a long one shortened)."""
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return text if len(text) <= 60 else text[:40] + f"... ({len(text)} characters)"


def validate(cfg: Any) -> None:
    """Check a composed config (every knob's domain, the chosen entries' ``check`` of what must fit together, then
    the top-level knobs); a UserError names the value."""
    for key, domain in domains():
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=True)
        except OmegaConfBaseException as err:  # ${oc.env:UNSET}, ${no.such.key}, a missing value
            raise UserError(f"{key} cannot be read: {first_line(err)}") from None
        if hasattr(value, "_content") or isinstance(value, (list, dict)):  # ListConfig / DictConfig
            value = OmegaConf.to_container(value)
        if not domain.allows(value):
            raise UserError(f"{key}={shown(value)} is not allowed: {key} must be {domain.describe()}")
    for group in GROUPS:
        if (own := getattr(entry(group, cfg[group].name), "check", None)) is not None:
            own(cfg)
    if cfg.updates != "alternating" and cfg.k != 1:
        raise UserError(f"k={cfg.k} is not allowed with updates=simultaneous: "
                        "it makes one D and one G update per step, so k must be 1")


def inapplicable(cfg: Any, keys: Any) -> List[str]:
    """A warning line for each of ``keys`` (given on the command line) that the chosen options do not read
    (``optimizer.beta1`` with optimizer=sgd); eval.* is left out (one set serves every dataset of a sweep)."""
    out = []
    for key in sorted(k for k in keys if k.partition(".")[0] in GROUPS and "." in k):
        group, _, knob = key.partition(".")
        chosen = cfg[group].name
        # the choices of the group that read the knob (None: all of them, a shared knob)
        fits = None if knob in _SHARED[group] or knob == "name" else \
            tuple(name for name, e in choices(group).items() if knob in e.knobs)
        if fits is not None and chosen not in fits:
            out.append(f"{key} has no effect with {group}={chosen} (it applies to {group}={'|'.join(fits)})")
            continue
        knobs = {**entry(group, chosen).knobs, **_SHARED[group]}
        other, family = knobs[knob].applies if knob in knobs else ("", "")
        if other and family not in entry(other, cfg[other].name).families:
            names = "|".join(n for n, e in choices(other).items() if family in e.families)
            out.append(f"{key} has no effect with {other}={cfg[other].name} (it applies to {other}={names})")
    return out

