"""Checkpoints: one small State object saved and restored, and where a run keeps its checkpoints.

    state = State(G, D, opt_G, opt_D, config=..., fixed_noise=...)   # counters start at 0
    save(path, state)                                                 # atomic; RNG states taken now
    saved = load(find("outputs/runs/<run>"))                          # a checked dict, on the CPU
    restore(saved, state)                                             # weights, optimizers, counters, RNG

Checkpoints hold only tensors and plain containers, and are always read with
``torch.load(weights_only=True)``: loading one never runs code. Their ``format`` is checked.
"""

from __future__ import annotations

import errno
import pickle
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

import torch
from omegaconf import DictConfig, OmegaConf

from gan_cli.config import UserError, dotted_keys, first_line, hydras, schema
from gan_cli.runs import rundir

FORMAT = 1  # the layout of the saved dict; load() refuses any other
NEEDED = ("G", "D", "opt_G", "opt_D", "step", "rng", "config")
# what torch.load(weights_only=True) raises for an unreadable file, a truncated or corrupt zip or pickle, a foreign
# pickle (its weights-only unpickler refuses it), a damaged stream (the unpickler's struct, assert, index, key checks)
UNREADABLE = (OSError, EOFError, RuntimeError, ValueError, KeyError, IndexError, TypeError, AttributeError,
              AssertionError, struct.error, pickle.UnpicklingError)


@dataclass
class State:
    """What a checkpoint holds (optimizers None when only evaluating); the RNG states are taken when saving."""

    G: torch.nn.Module
    D: torch.nn.Module
    opt_G: Optional[torch.optim.Optimizer] = None
    opt_D: Optional[torch.optim.Optimizer] = None
    config: Optional[Dict[str, Any]] = None
    fixed_noise: Optional[torch.Tensor] = None
    step: int = 0  # iterations of Algorithm 1 done
    d_updates: int = 0  # D updates done (k per iteration, or 1 with updates=simultaneous)
    g_updates: int = 0
    best_value: Optional[float] = None  # of eval.best_by so far (best.pt keeps the run's best)
    G_ema: Optional[torch.nn.Module] = None  # the moving average of G (ema.decay set): an AveragedModel
    window: Optional[Dict[str, Any]] = None  # the statistics of the log window not yet logged (train.Stats)

    def count(self, d_updates: int) -> None:
        """One more iteration of Algorithm 1, with ``d_updates`` D updates and one G update."""
        self.step += 1
        self.d_updates += d_updates
        self.g_updates += 1


def rng_state(run: Optional[torch.Generator] = None) -> Dict[str, Any]:
    """The random number generators' states now (CPU, every CUDA device, and the run's own generator)."""
    state = {"torch": torch.get_rng_state(),
             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    return state if run is None else {**state, "run": run.get_state()}


def save(path: Path, state: State, rng: Optional[Dict[str, Any]] = None) -> None:
    """Write atomically (temp file + rename). ``rng``: the generators' states to record (default: now), so that
    work between the training and the save (samples, evaluation) cannot change what a resumed run draws."""
    saved = {"format": FORMAT, "G": state.G.state_dict(), "D": state.D.state_dict(), "opt_G": state.opt_G.state_dict(),
             "opt_D": state.opt_D.state_dict(), "step": state.step, "d_updates": state.d_updates,
             "g_updates": state.g_updates, "rng": rng or rng_state(), "fixed_noise": state.fixed_noise.detach().cpu(),
             "config": state.config, "best_value": state.best_value, "window": state.window}
    if state.G_ema is not None:
        saved["G_ema"] = state.G_ema.state_dict()
    path = Path(path)
    with rundir.replacing(path) as tmp:  # a temporary of this process alone, renamed when written
        try:
            torch.save(saved, tmp)
        except RuntimeError as err:
            # torch's writer reports a failed write as a RuntimeError (``basic_ios::clear``, ``unexpected
            # pos``): name the likely cause by looking at the disk (full) or say what torch said
            try:
                full = shutil.disk_usage(path.parent).free < 64 * 2**20
            except OSError:
                full = False
            if full:
                raise OSError(errno.ENOSPC, "no space left", str(path)) from None
            raise OSError(errno.EIO, f"torch.save failed ({first_line(err)[:120]})", str(path)) from None


def find(path: str, best: bool = False, label: str = "resume") -> Path:
    """The checkpoint a path names: the file, or a run directory's checkpoints/last.pt (best.pt with ``best``).
    ``label`` names the argument in error messages (``resume=PATH``)."""
    given = f"{label}={path}" if label else str(path)
    p = Path(path).expanduser()
    name = "best.pt" if best else "last.pt"
    try:
        for candidate in (p, p / "checkpoints" / name, p / name):
            if candidate.is_file():
                return candidate
        exists = p.exists()
    except OSError as err:  # a name too long for the file system, a folder that cannot be read
        raise UserError(f"{given}: cannot be read ({rundir.REASONS.get(err.errno) or err.strerror})") from None
    if not exists:
        raise UserError(f"{given}: no such checkpoint file or run directory (give a .pt file or a run directory "
                        "with checkpoints/last.pt)")
    raise UserError(f"{given} holds no checkpoint (looked for {p / 'checkpoints' / name}); give a run directory of "
                    "gan-train or a .pt file")


def load(path: Path, label: str = "resume") -> Dict[str, Any]:
    """Read a checkpoint file on the CPU; a corrupt, foreign or other-format file is a UserError."""
    given = f"{label}={path}" if label else str(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except UNREADABLE as err:  # not a checkpoint we can read
        raise UserError(f"{given} is not a readable gan-cli checkpoint "
                        f"(torch.load(weights_only=True) failed with {type(err).__name__})") from None
    if not isinstance(saved, dict) or not set(NEEDED) <= saved.keys():
        missing = sorted(set(NEEDED) - set(saved if isinstance(saved, dict) else ()))
        raise UserError(f"{given} is not a gan-cli checkpoint: it lacks {', '.join(missing)}")
    if isinstance(saved.get("format"), int) and saved["format"] > FORMAT:
        raise UserError(f"{given} has checkpoint format {saved['format']}, newer than this gan-cli reads ({FORMAT}): "
                        "upgrade gan-cli to read it")
    if saved.get("format") != FORMAT:
        raise UserError(f"{given} has checkpoint format {saved.get('format')}; this gan-cli reads format {FORMAT} "
                        "(use the gan-cli version that wrote it)")
    kinds = {"step": int, "config": dict, "rng": dict, "G": dict, "D": dict, "opt_G": dict, "opt_D": dict}
    wrong = [k for k, kind in kinds.items() if not isinstance(saved[k], kind)]
    if wrong or "torch" not in saved["rng"] or "name" not in saved["config"].get("dataset", {}):
        raise UserError(f"{given} is not a gan-cli checkpoint: its {', '.join(wrong) or 'rng / config'} entry "
                        "is not what gan-train writes")
    return saved


def check_steps(cfg, saved: Dict[str, Any]) -> None:
    """A resumed run must have iterations left: steps above the checkpoint's iteration."""
    done = int(saved["step"])
    if cfg.steps <= done:
        raise UserError(f"steps={cfg.steps} is not above the checkpoint's iteration {done} ({cfg.resume}): "
                        f"nothing is left to train; pass steps=N with N > {done} to continue the run")


def restore(saved: Dict[str, Any], state: State, path: str, run: Optional[torch.Generator] = None) -> None:
    """Put a loaded checkpoint into ``state`` (every field it has, and the RNG states: ``run``, the run's own
    generator, continues its stream); other networks: UserError."""
    if state.G_ema is not None and "G_ema" not in saved:
        raise UserError(f"checkpoint {path} has no G_ema (the moving average of G): its run had ema.decay=null")
    try:
        for name in ("G", "D", "opt_G", "opt_D", "G_ema"):
            if getattr(state, name) is not None:
                getattr(state, name).load_state_dict(saved[name])
    except (RuntimeError, ValueError, KeyError) as err:
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(err).__name__)
        raise UserError(f"checkpoint {path} does not fit the networks of this config ({detail[:200]})") from None
    state.step = int(saved["step"])
    state.d_updates, state.g_updates = int(saved.get("d_updates", 0)), int(saved.get("g_updates", state.step))
    state.fixed_noise = saved.get("fixed_noise", state.fixed_noise)
    state.best_value, state.window = saved.get("best_value"), saved.get("window")
    torch.set_rng_state(saved["rng"]["torch"])
    if saved["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["rng"]["cuda"][: torch.cuda.device_count()])
    if run is not None and "run" in saved["rng"]:
        run.set_state(saved["rng"]["run"])
    elif run is not None and run.device.type == "cpu":  # written before runs had their own: they drew from this one
        run.set_state(saved["rng"]["torch"])


# What a resumed run may change; everything else is the checkpoint's config.
RESUMABLE = ("steps", "device", "log_every", "sample_every", "ckpt_every", "n_samples", "resume",
             "dataset.root", "dataset.download", "dataset.workers", "dataset.in_memory")


def resume_config(cfg, overrides: Iterable[str], defaults=None) -> Tuple[Any, Optional[Dict[str, Any]]]:
    """For ``resume=PATH``: (the saved config with the RESUMABLE keys the command line sets, the loaded
    checkpoint), or (cfg, None). Any other override that differs from the saved run is a UserError; with
    ``defaults`` (the config composed without the command line), so is every key that a group choice of the
    command line changes (``experiment=grid`` sets dataset, arch, optimizer...)."""
    if not cfg.resume:
        return cfg, None
    saved = load(find(cfg.resume))
    # on the schema, so that a key added since the checkpoint was written takes its default
    before_cfg = OmegaConf.merge(OmegaConf.structured(schema()), saved["config"])
    given = list(dict.fromkeys(o.split("=", 1)[0].lstrip("+~") for o in overrides))
    leaves = dotted_keys(cfg)
    by = " ".join(o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in leaves)  # choices of groups
    set_by_choice = [] if defaults is None else [
        k for k in leaves if OmegaConf.select(cfg, k) != OmegaConf.select(defaults, k)]
    for key in dict.fromkeys(given + set_by_choice):
        if hydras(key) or key in RESUMABLE:
            continue
        now, before = OmegaConf.select(cfg, key), OmegaConf.select(before_cfg, key)
        if isinstance(now, DictConfig):  # a group choice such as loss=hinge
            now, before = OmegaConf.to_container(now), OmegaConf.to_container(before) if before is not None else None
        if now != before:
            key = key.removesuffix(".name")  # a group's choice: dataset.name=grid reads dataset=grid
            origin = f" (set by {by})" if key not in given and by else ""
            raise UserError(f"{key}={now if not isinstance(now, dict) else now.get('name')}{origin} differs from "
                            f"the checkpoint's {key}={before if not isinstance(before, dict) else before.get('name')}: "
                            f"a resumed run keeps its config; only {', '.join(RESUMABLE)} can change")
    for key in RESUMABLE:
        if key in given or key == "resume":
            OmegaConf.update(before_cfg, key, OmegaConf.select(cfg, key), force_add=True)
    return before_cfg, saved


def guard_run_dir(run_dir: Path, resume: Optional[str]) -> None:
    """Never write into another run: a run directory that holds a run's record (a checkpoint, an event history,
    metrics.json) must be the run being resumed."""
    run_dir = Path(run_dir)
    found = rundir.records(run_dir)
    if not found:
        return
    ours = {run_dir.resolve(), (run_dir / "checkpoints").resolve(), *(p.resolve() for p in found)}
    if resume and Path(resume).expanduser().resolve() in ours:
        return
    ckpt = next((p for p in found if p.name == "last.pt"), next((p for p in found if p.suffix == ".pt"), None))
    raise Occupied(run_dir, found[0], ckpt)


class Occupied(UserError):
    """A run directory that holds another run (``found`` there; ``ckpt``, the checkpoint to continue it from)."""

    def __init__(self, run_dir: Path, found: Path, ckpt: Optional[Path], in_sweep: bool = False):
        self.run_dir, self.found, self.ckpt = run_dir, found, ckpt
        held = f"already holds a run ({found.relative_to(run_dir)})"
        if in_sweep:  # the job's directory comes from the sweep's
            super().__init__(f"the job directory {run_dir} {held}; choose another hydra.sweep.dir"
                             + (f", or continue that run alone with gan-train resume={ckpt}" if ckpt else ""))
        else:
            resume = f"pass resume={ckpt} to continue it, or " if ckpt else ""
            super().__init__(f"hydra.run.dir={run_dir} {held}; {resume}choose another hydra.run.dir")

    def in_sweep(self) -> "Occupied":
        return Occupied(self.run_dir, self.found, self.ckpt, in_sweep=True)
