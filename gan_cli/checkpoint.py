"""Save, load and resume: G, D, both optimizers, counters, RNG states and the config.

Checkpoints hold only tensors and plain containers, and are always read with
``torch.load(weights_only=True)``: loading one never runs code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

import torch
from omegaconf import DictConfig, OmegaConf

from .config import UserError

FORMAT = 1


def save(path: Path, *, G, D, opt_G, opt_D, step: int, d_updates: int, g_updates: int,
         config: Dict[str, Any], fixed_noise: torch.Tensor, best_value: Optional[float] = None) -> None:
    """Write atomically (temp file + rename): an interrupted save never leaves a broken file."""
    state = {
        "format": FORMAT,
        "G": G.state_dict(),
        "D": D.state_dict(),
        "opt_G": opt_G.state_dict(),
        "opt_D": opt_D.state_dict(),
        "step": step,
        "d_updates": d_updates,
        "g_updates": g_updates,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        "fixed_noise": fixed_noise.detach().cpu(),
        "config": config,
        "best_value": best_value,  # of eval.best_by so far (best.pt keeps the run's best)
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load(path: str) -> Dict[str, Any]:
    """Read a checkpoint on the CPU; a missing, corrupt or foreign file is a UserError."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "checkpoints" / "last.pt" if (p / "checkpoints" / "last.pt").exists() else p / "last.pt"
    if not p.is_file():
        raise UserError(f"resume={path}: no such checkpoint file (give a .pt file or a run directory with checkpoints/last.pt)")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and unpickler errors all mean: not a checkpoint we can read
        raise UserError(f"resume={path} is not a readable gan-cli checkpoint "
                        f"(torch.load(weights_only=True) failed with {type(err).__name__})") from None
    needed = {"G", "D", "opt_G", "opt_D", "step", "config"}
    if not isinstance(state, dict) or not needed <= state.keys():
        raise UserError(f"resume={path} is not a gan-cli checkpoint: it lacks {', '.join(sorted(needed - set(state or {})))}")
    return state


def restore(state: Dict[str, Any], *, G, D, opt_G, opt_D, path: str) -> None:
    """Load weights, optimizer states and RNG states; a checkpoint of other networks is a UserError."""
    try:
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
        opt_G.load_state_dict(state["opt_G"])
        opt_D.load_state_dict(state["opt_D"])
    except (RuntimeError, ValueError, KeyError) as err:
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(err).__name__)
        raise UserError(f"checkpoint {path} does not fit the networks of this config ({detail[:200]})") from None
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"][: torch.cuda.device_count()])


# What a resumed run may change; everything else is the checkpoint's config.
RESUMABLE = ("steps", "device", "log_every", "sample_every", "ckpt_every", "n_samples", "resume",
             "dataset.root", "dataset.download")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def resume_config(cfg, overrides: Iterable[str]) -> Tuple[Any, Optional[Dict[str, Any]]]:
    """For ``resume=PATH``: the saved config, with the RESUMABLE keys that the command line sets.

    Returns (config to run, checkpoint state or None). An override of anything else that differs
    from the saved run is a UserError: a resumed run continues the same experiment.
    """
    if not cfg.resume:
        return cfg, None
    state = load(cfg.resume)
    saved = OmegaConf.create(state["config"])
    given = list(dict.fromkeys(_key(o) for o in overrides))
    for key in given:
        if key.startswith("hydra") or key in RESUMABLE:
            continue
        now, before = OmegaConf.select(cfg, key), OmegaConf.select(saved, key)
        if isinstance(now, DictConfig):  # a group choice such as loss=hinge
            now, before = OmegaConf.to_container(now), OmegaConf.to_container(before) if before is not None else None
        if now != before:
            raise UserError(f"{key}={now if not isinstance(now, dict) else now.get('name')} differs from the checkpoint's "
                            f"{key}={before if not isinstance(before, dict) else before.get('name')}: a resumed run keeps its "
                            f"config; only {', '.join(RESUMABLE)} can change")
    for key in RESUMABLE:
        if key in given or key == "resume":
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
    return saved, state


def guard_run_dir(run_dir: Path, resume: Optional[str]) -> None:
    """Never overwrite another run's checkpoint: a run dir with one must be the run being resumed."""
    existing = Path(run_dir) / "checkpoints" / "last.pt"
    if not existing.exists():
        return
    if resume:
        source = Path(resume).expanduser().resolve()
        if source in (existing.resolve(), Path(run_dir).resolve(), existing.parent.resolve()):
            return
    raise UserError(f"hydra.run.dir={run_dir} already holds a run (checkpoints/last.pt); pass resume={existing} "
                    f"to continue it, or choose another hydra.run.dir")
