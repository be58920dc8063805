"""``hydra/launcher=population``: a sweep's jobs that differ only in what a member may have of its own
(sweep.PER_MEMBER: the seed, learning rates, SGD's momentum, Adam's betas, a gradient penalty's weight) train as one
population in this process (gan_cli.game.population); jobs that differ in anything else form populations of their
own, trained one after another. Each job is set up as Hydra sets up any job (its directory, .hydra/, train.log,
callbacks), and its run is prepared there; then the population trains, and each job returns its run's figures.

Running the same sweep again into its directory (``hydra.sweep.dir=...``) continues the members that a stop
(Ctrl-C, SIGTERM) checkpointed; members that finished are kept and count as finished (train.py, sweep.py).
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence

from hydra.core.utils import JobReturn, JobStatus, configure_log, run_job, setup_globals
from omegaconf import open_dict

from gan_cli.cli import sweep
from gan_cli.cli.train import StopRequest, SweepInterrupted, searched
from gan_cli.config import UserError
from gan_cli.evaluation import memory
from gan_cli.game import loop
from gan_cli.runs import rundir
from gan_cli.runs.monitor import split_handlers

log = logging.getLogger("gan_cli")


def structure(overrides: Sequence[str]) -> tuple:
    """What a job's population is keyed by: its overrides less those a member may have of its own. A gradient
    penalty's weight is a member's own when it is not 0 (a run without the penalty draws no mixing)."""
    key = []
    for o in overrides:
        name, _, value = o.partition("=")
        if name.lstrip("+~") == "loss.gp_weight":
            o = f"loss.gp_weight{'=0' if _number(value) == 0 else '>0' if _number(value) else '=' + value}"
        elif name.lstrip("+~") in sweep.PER_MEMBER:
            continue
        key.append(o)
    return tuple(key)


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return None


def launch(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> List[JobReturn]:
    """Hydra's Launcher.launch for populations."""
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    groups: Dict[tuple, list] = {}
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        groups.setdefault(structure(overrides), []).append((idx, list(overrides)))
    returns: Dict[int, JobReturn] = {}
    for jobs in groups.values():
        most = launcher.max_members or len(jobs)
        for start in range(0, len(jobs), most):
            returns.update(_population(launcher, jobs[start:start + most]))
    return [returns[idx] for idx in sorted(returns)]


def _population(launcher, jobs: list) -> Dict[int, JobReturn]:
    """Set up each job and prepare its run, then train the prepared ones together."""
    prepared, returns, owners = [], {}, []
    loop.COLLECT, rundir.KEEPING = prepared, True
    try:
        for idx, overrides in jobs:
            before = len(prepared)
            cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, overrides)
            with open_dict(cfg):
                cfg.hydra.job.id, cfg.hydra.job.num = f"job_id_for_{idx}", idx
            returns[idx] = run_job(hydra_context=launcher.hydra_context, task_function=launcher.task_function,
                                   config=cfg, job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
            if len(prepared) > before:  # its run is a member (else the job ended: invalid, already recorded)
                owners.append(idx)
    finally:
        loop.COLLECT, rundir.KEEPING = None, False
        root = logging.getLogger()  # the last job's train.log is its own: the population's lines go to the console
        root.handlers = split_handlers(root.handlers)[1]
    if not prepared:
        return returns
    sweep.update(Path(str(launcher.config.hydra.sweep.dir)))  # its members: running
    cfg, gan = prepared[0][0], prepared[0][1]
    most = min(memory.members_that_fit(cfg, gan.data, gan.device), int(launcher.max_members or len(prepared)))
    try:
        for start in range(0, len(prepared), most):
            chunk = list(range(start, min(start + most, len(prepared))))
            results = _train([prepared[i] for i in chunk], launcher)
            for i in chunk:
                figures = results.get(i - start) or _recorded(prepared[i][3].run_dir)
                returns[owners[i]].return_value = searched(prepared[i][0], figures)
                returns[owners[i]].status = JobStatus.COMPLETED
    finally:
        for member in prepared:
            rundir.release(member[3].run_dir)
    return returns


def _train(prepared: list, launcher) -> Dict[int, Dict[str, Any]]:
    """One population: its members' final figures by index (a member that did not finish: none)."""
    first, last = prepared[0][3].run_dir, prepared[-1][3].run_dir
    log.info("a population of %d (%s%s in %s; each member's log is its train.log)", len(prepared), first.name,
             f" ... {last.name}" if len(prepared) > 1 else "", first.parent)
    try:
        return loop.train_population(prepared, StopRequest)
    except loop.Interrupted as stop:
        print(f"gan-train: the population was interrupted ({signal.Signals(stop.code - 128).name}) after a checkpoint "
              "of every member", file=sys.stderr)
        raise SweepInterrupted(stop.code) from None
    except Exception as err:  # a mistake, a fault, out of memory: its members say failed; the next population runs
        known = err if isinstance(err, UserError) else memory.as_user_error(err)
        if known is None:
            log.exception("the population of %s failed", prepared[0][3].run_dir.name)
        print(f"gan-train: population: {known or type(err).__name__ + ': ' + str(err).splitlines()[0]}",
              file=sys.stderr)
        return {}


def _recorded(run_dir: Path) -> Dict[str, Any]:
    import json
    try:
        return json.loads((Path(run_dir) / "metrics.json").read_text())
    except (OSError, ValueError):
        return {"status": "failed"}


