"""gan-train: the command line of the training loop (gan_cli.game.loop), configured by Hydra: :func:`main` checks
the command line and hands it to Hydra; :func:`_hydra_main` runs one run or one job of a sweep."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gan_cli.cli import checks, sweep
from gan_cli.cli.checks import apply_recipe, check, job_config, precheck, quote_paths, resume_in_place, run_and_exit
from gan_cli.config import UserError, config_dir, register_configs, texts
from gan_cli.evaluation import evaluate, memory
from gan_cli.game import loop
from gan_cli.game.loop import Bookkeeping, Diverged, Interrupted, new_state  # noqa: F401 (importable from here too)
from gan_cli.runs import checkpoint, distributed, rundir
from gan_cli.runs.monitor import end_session, start_session

log = logging.getLogger("gan_cli")


class SweepInterrupted(BaseException):
    """Ctrl-C (or SIGTERM) stopped a job of a sweep: the sweep stops too (BaseException: Hydra's
    launchers record an Exception as a failed job and go on)."""

    code = property(lambda self: self.args[0])  # the exit status


def requeue_signal() -> Optional[Tuple[int, Any]]:
    """In a job that submitit runs: its preemption / time-limit signal and submitit's handler (which requeues)."""
    if "SUBMITIT_EXECUTOR" not in os.environ:
        return None
    try:
        from submitit import JobEnvironment

        signum = JobEnvironment._usr_sig()
    except (ImportError, AttributeError, RuntimeError) as err:  # no submitit, or a preemption signal it cannot name
        log.warning("submitit's preemption signal is not known here (%s: %s): a preempted job is not requeued",
                    type(err).__name__, err)
        return None
    handler = signal.getsignal(signum)
    return (signum, handler) if callable(handler) else None


class SacctOnce(logging.Filter):
    """submitit's SLURM watcher warns "Bypassing sacct error" at every poll of the jobs' states where the cluster
    keeps no accounting (sacct fails): a sweep's console filled with it. The first one is shown, saying so."""

    shown = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "Bypassing sacct error" not in str(record.msg):
            return True
        if self.shown:
            return False
        self.shown = True
        record.msg, record.args = f"{record.getMessage()} (shown once)", ()
        return True


logging.getLogger("submitit").addFilter(SacctOnce())


class StopRequest:
    """SIGINT (Ctrl-C), SIGTERM (what a cluster sends first) and SIGUSR1 ask the loop to stop after
    the current iteration; a second SIGINT aborts at once (KeyboardInterrupt). In a submitit job its
    preemption signal (SIGUSR2) does the same, then goes on to submitit, which requeues the job;
    SIGTERM is left to submitit there (it precedes that signal on preemption)."""

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name))
    signum: Optional[int] = None  # the signal that asked to stop
    requeue: Optional[Tuple[int, Any]] = None  # (signal, handler) of the job manager that requeues
    _before: Dict[int, Any] = {}  # the handlers to put back (replaced as a whole, never changed in place)

    def handoff(self):
        """What gives a stop by the job manager's signal back to the manager (None for other stops)."""
        if self.requeue is None or self.signum != self.requeue[0]:
            return None
        signum, handler = self.requeue
        return lambda: handler(signum, None)

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            signals = list(self.SIGNALS)
            self.requeue = requeue_signal()
            if self.requeue is not None:
                signals = [s for s in signals if s != signal.SIGTERM] + [self.requeue[0]]
            self._before = {s: signal.signal(s, self._handle) for s in signals}
            signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)  # a job of submitit_local inherits SIGINT blocked
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._before.items():
            signal.signal(s, handler)


def session(cfg, command: Sequence[str]) -> Dict[str, object]:
    """The hyperparameters of a run's HPARAMS entry: every group choice, the usual knobs and every key of
    ``command`` (the sweep's command line for a job of a sweep), at the values in force (a recipe's included)."""
    choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}  # tests call train()
    return sweep.job_hparams(cfg, choices, sweep.command_keys(command))


def train(cfg: DictConfig, run_dir: Path, overrides: Iterable[str] = (), console=None,
          command: Optional[Sequence[str]] = None, announce: bool = True) -> Dict[str, float]:
    """Run Algorithm 1 as ``cfg`` says (gan_cli.game.loop.train) into ``run_dir``, with the command line's checks
    of the config, its HPARAMS entry and stops by signal; return the final figures. ``command``: the sweep's
    command line for a job of a sweep (its HPARAMS columns; ``overrides`` otherwise); ``announce``: print the
    final table and the tensorboard line."""
    overrides = list(overrides)
    return loop.train(cfg, run_dir, overrides, console=console, announce=announce, check=in_force, stop=StopRequest,
                      hparams=lambda resolved: session(resolved, overrides if command is None else command))


def in_force(cfg: DictConfig) -> None:
    """Check the config that runs (the recipes applied; a resumed run's is its checkpoint's) and keep it as
    this attempt's .hydra/config.yaml, in place of the one Hydra composed from the command line alone."""
    check(cfg)
    if HydraConfig.initialized() and (hc := HydraConfig.get()).output_subdir:  # tests call train() without Hydra
        OmegaConf.save(cfg, Path(hc.runtime.output_dir) / hc.output_subdir / "config.yaml")


def fail(err: Exception) -> None:
    print(f"gan-train: error: {err}", file=sys.stderr)
    sys.exit(2)


def record_job(run_dir: Path, cfg, status: str, error: str, command: Sequence[str], occupied: bool = False,
               finished: bool = False) -> None:
    """A job of a sweep that ended before its run began (status invalid or failed): its metrics.json
    and its HPARAMS entry, so that the summary and TensorBoard show it with its status. A job directory that
    another gan-train holds, or that holds another run (``occupied``; ``finished``: the job's own run, which ended
    before), is left alone: the record goes beside it (sweep.REFUSED), for the summary. So does the record of a job
    that a stop kept from beginning (status interrupted): its directory stays free for the sweep run again."""
    held = not rundir.owned(run_dir) or status == "interrupted"
    if held or occupied:
        hc = HydraConfig.get()
        record = {"num": hc.job.num, "overrides": texts(hc.overrides.task), "status": status, "error": error,
                  "dir": run_dir.name, "held": held, "finished": finished}
        name = f"{run_dir.name}{sweep.REFUSED}" if held else f".{run_dir.name}.job{hc.job.num}{sweep.REFUSED}"
        rundir.write_text(run_dir.parent / name, json.dumps(record, indent=2) + "\n")
        return
    path = run_dir / "metrics.json"
    run_dir.mkdir(parents=True, exist_ok=True)
    ran = json.loads(path.read_text()) if path.is_file() else None
    if ran is None or ran.get("status") != "ok":  # the run wrote its own (diverged, interrupted): add the cause
        report = {"status": status, "error": error, "wall_s": 0.0} if ran is None else {**ran, "error": error}
        rundir.write_text(path, json.dumps(report, indent=2) + "\n")
    if ran is not None:
        return
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(run_dir)) as writer:
        try:
            hp = session(cfg, command)
        except (UserError, HydraException, OmegaConfBaseException, OSError, ValueError) as err:
            log.warning("the job's HPARAMS entry has no hyperparameters: they could not be read (%s: %s)",
                        type(err).__name__, err)
            hp = {}
        start_session(writer, hp)
        end_session(writer, status)


def searched(cfg, figures: Dict[str, Any]):
    """What a job returns to the sweeper: for a search (optimized_metric set, e.g. by hparams_search), that
    figure's final value as a float, None for a run that did not finish or has no finite value (Optuna records
    the trial as failed and the search goes on; NaN would end it); otherwise the run's final figures."""
    metric = evaluate.RENAMED.get(cfg.get("optimized_metric"), cfg.get("optimized_metric"))
    if metric is None:
        return figures
    value = figures.get(metric) if figures.get("status") == "ok" else None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


@hydra.main(config_path=config_dir(), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> Optional[Dict[str, float]]:
    """One run, or one job of a sweep. A job of a sweep never ends the sweep: what stops it is
    recorded (metrics.json status: invalid, diverged, failed) and the next job runs; only Ctrl-C
    (or SIGTERM) stops the whole sweep."""
    hc = HydraConfig.get()
    run_dir, overrides = Path(hc.runtime.output_dir), texts(hc.overrides.task)
    multirun = hc.mode == RunMode.MULTIRUN
    command = (sweep.sweep_overrides(Path(hc.sweep.dir)) if multirun else None) or overrides
    try:
        if multirun and (Path(hc.sweep.dir) / sweep.STOPPED).exists():  # stopped by Ctrl-C before this job began
            record_job(run_dir, cfg, "interrupted", "not run: the sweep was stopped before this job began", command)
            return searched(cfg, {"status": "interrupted"})
        for choice, recipe in apply_recipe(cfg, overrides).items():  # .hydra/config.yaml shows what runs (in_force)
            log.info("%s trains with its recipe: %s (set any of them to choose otherwise)", choice,
                     " ".join(f"{k}={v}" for k, v in recipe.items()))
        return searched(cfg, train(cfg, run_dir, overrides=overrides, command=command, announce=not multirun))
    except Interrupted as stop:
        if multirun:  # into the job's train.log (a cluster job's stderr is a file in .submitit/)
            log.warning("gan-train: %s", stop)
        elif distributed.is_main():  # under torchrun one line, from rank 0
            print(f"gan-train: {stop}", file=sys.stderr)
        if stop.handoff is not None:
            stop.handoff()  # submitit requeues the job and exits
        if multirun and sweep.CURRENT is not None:  # the sweep's own process (the basic launcher): a stop ends it
            raise SweepInterrupted(stop.code) from None
        if multirun:  # a job in a process of its own ends as interrupted; the sweep's process stops the sweep
            return searched(cfg, {"status": "interrupted"})
        sys.exit(stop.code)
    except Exception as err:
        # a mistake in the config; a full disk, a read-only place, out of memory: one line; else a fault
        known = err if isinstance(err, UserError) else memory.as_user_error(err)
        if not multirun:
            if known is None:
                raise
            fail(known)
        status = "diverged" if isinstance(err, Diverged) else "invalid" if known is err else "failed"
        if isinstance(known, checkpoint.Occupied) and (done := sweep.finished_before(run_dir, overrides)):
            ended = "" if done["status"] == "ok" else f" ({done['status']})"
            print(f"gan-train: job {hc.job.num} finished before in {run_dir}{ended}: kept, not run again")
            record_job(run_dir, cfg, done["status"], "", command, occupied=True, finished=True)
            return searched(cfg, done)
        if isinstance(known, checkpoint.Occupied):  # a job's directory is the sweep's to choose
            known = known.in_sweep()
        if known is None:  # a fault of gan-train's: its traceback goes to the job's log
            log.exception("job %s failed", hc.job.num)
        else:
            print(f"gan-train: job {hc.job.num} ({status}): {known}", file=sys.stderr)
        error = str(known) if known is not None else f"{type(err).__name__}: {err}".splitlines()[0]
        record_job(run_dir, cfg, status, error, command, occupied=isinstance(err, checkpoint.Occupied))
        return searched(cfg, {"status": status})


def main() -> None:
    """Console entry point: check the command line, then hand over to Hydra."""
    register_configs()
    # Hydra's own report of an exception is a traceback; let them reach the handlers below instead
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        distributed.init(sys.argv[1:])  # under torchrun: join the group, agree on the run's start time
        sys.argv[1:] = resume_in_place(quote_paths(checks.options_first(sys.argv[1:])))  # Hydra reads sys.argv
        shown = job_config(sys.argv[1:], config_dir())
        if shown is not None:  # --cfg job: what will run, the recipes included
            print(shown, end="")
            return
        precheck(sys.argv[1:], config_dir())  # every value given, an earlier one of a setting given again included
        if not distributed.is_main():  # rank 0 alone writes the run directory and the log
            sys.argv += ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
        sys.argv[1:] = checks.last_of_each(sys.argv[1:])
        sys.argv += sweep.job_names(sys.argv[1:])  # a sweep's job directories named by what varies
        _hydra_main()
        if sweep.STOP is not None:  # Ctrl-C or SIGTERM stopped a sweep whose jobs ran in other processes
            sweep.say_how_to_continue()
            sys.exit(128 + sweep.STOP)
        if sweep.LAST is not None and sweep.LAST.failed:
            print(f"gan-train: {sweep.LAST.describe_failures()}", file=sys.stderr)
            sys.exit(1)
    except (UserError, rundir.Refused) as err:  # Refused: a directory locked by another gan-train, or not writable
        fail(err.error if isinstance(err, rundir.Refused) else err)
    except (HydraException, OmegaConfBaseException) as err:  # Hydra's own settings (hydra.*), which it checks itself
        fail(checks.hydra_error(err))
    except SweepInterrupted as stop:
        sweep.finish_interrupted()
        sweep.say_how_to_continue()
        sys.exit(stop.code)
    except BrokenPipeError:  # `gan-train --help | head`: the reader left; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt:  # before the loop, or a second Ctrl-C: stop at once, no traceback
        sweep.finish_interrupted()
        print("gan-train: aborted (a second interrupt stops at once; the last checkpoint is kept)", file=sys.stderr)
        sys.exit(130)
    except (OSError, RuntimeError, MemoryError) as err:  # a full disk, a read-only place, out of memory: one line
        if (known := memory.as_user_error(err)) is None:
            raise
        fail(known)
    finally:
        distributed.close()


def cli() -> None:
    """The gan-train command: :func:`main`, then a quick exit (cli.run_and_exit)."""
    run_and_exit(main)


if __name__ == "__main__":
    cli()
