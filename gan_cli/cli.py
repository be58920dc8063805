"""Check a gan-train command line before Hydra creates a run directory, and a composed config
before anything is built.

Every mistake becomes one UserError line naming the bad value and what is allowed: an unknown
group choice, a value of the wrong type, a value out of range, choices that do not fit together, a
dataset folder without the data, a GPU that is not there, a checkpoint that is missing or broken.
Sweeps (``k=1,5``) are checked one value at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from . import checkpoint, data, evaluate, losses, models, optim
from .config import GROUPS, UserError, resolve_device, validate

# Flags that make Hydra print something instead of running, and flags that take a value.
_INFO_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc",
               "--version", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd",
               "--experimental-rerun"}
_VALUE_FLAGS = {"--package", "-p"}


def _overrides(argv: Sequence[str]) -> List[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _VALUE_FLAGS:
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


def _choices(conf_dir: str, group: str) -> List[str]:
    return sorted(p.stem for p in (Path(conf_dir) / group).glob("*.yaml"))


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _explain(err: Exception, overrides: List[str]) -> str:
    """One line for a composition error: the override at fault and what its key accepts."""
    cause = err if isinstance(err, OmegaConfBaseException) else err.__cause__
    key = getattr(cause, "full_key", None) or ""
    given = next((o for o in overrides if o.lstrip("+~").partition("=")[0] == key), None)
    if isinstance(cause, ConfigKeyError) or "Could not override" in str(err):
        bad = given or next((o for o in overrides if f"'{o.partition('=')[0]}'" in str(err)), key)
        return f"{bad}: no such setting; `gan-train --cfg job` lists them all (a new key needs a leading +)"
    if isinstance(cause, ValidationError) and given:
        return f"{given} is not allowed: {_first_line(cause)}"
    return _first_line(cause or err)


def check(cfg) -> None:
    """Everything about a composed config that is known before data or networks are built: the
    range of every knob (config.py), each group's choice (its builder), what fits with what."""
    validate(cfg)
    dataset = data.spec(cfg.dataset.name)
    models.check(cfg.arch.name, cfg.dataset.name, is_image=dataset.dim is None, dim=dataset.dim)
    losses.get(cfg.loss)
    optim.check(cfg.optimizer)
    evaluate.check(cfg)


def _check_one(conf_dir: str, overrides: List[str]) -> None:
    """Compose one concrete command line and check everything that can be known before training."""

    for o in overrides:
        key, _, value = o.partition("=")
        key = key.lstrip("+~")
        if key in GROUPS + ("experiment",) and value not in _choices(conf_dir, key):
            raise UserError(f"{key}={value} is not a choice of '{key}'; choose one of: {', '.join(_choices(conf_dir, key))}")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
    except (OmegaConfBaseException, HydraException) as err:
        raise UserError(_explain(err, overrides)) from None
    finally:
        GlobalHydra.instance().clear()
    cfg, _ = checkpoint.resume_config(cfg, overrides)
    check(cfg)
    data.check_available(cfg.dataset)
    resolve_device(cfg.device)


def precheck(argv: Sequence[str], conf_dir: str) -> None:
    """Raise UserError for the first problem in a gan-train command line (no-op for --help etc.)."""
    if any(a.split("=", 1)[0] in _INFO_FLAGS for a in argv):
        return
    overrides = [o for o in _overrides(argv) if not o.lstrip("+~").startswith("hydra")]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise UserError(f"cannot read the command line: {_first_line(err)}") from None
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    sweeps = [o for o in parsed if o.is_sweep_override()]
    if not sweeps:
        _check_one(conf_dir, fixed)
    for o in sweeps:  # each value of each sweep once, the other overrides fixed
        for value in o.sweep_string_iterator():
            _check_one(conf_dir, fixed + [f"{o.get_key_element()}={value}"])
    run_dir = next((o.partition("=")[2] for o in _overrides(argv) if o.startswith("hydra.run.dir=")), None)
    multirun = any(a in ("-m", "--multirun") for a in argv)
    if run_dir and not multirun:
        resume = next((o.partition("=")[2] for o in fixed if o.startswith("resume=")), None)
        checkpoint.guard_run_dir(Path(run_dir), resume or None)
