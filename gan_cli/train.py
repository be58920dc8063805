"""gan-train: Algorithm 1 of Goodfellow et al. (2014), configured by Hydra, logged to TensorBoard.

    for number of training iterations do                                     (steps)
        for k steps do                                                        (k)
            sample minibatch of m noise samples z ~ p_g(z) and m examples x ~ p_data(x)
            update D by ascending its stochastic gradient
                grad_thetaD 1/m sum_i [log D(x_i) + log(1 - D(G(z_i)))]
        end for
        sample minibatch of m noise samples z ~ p_g(z)
        update G by descending its stochastic gradient
            grad_thetaG 1/m sum_i log(1 - D(G(z_i)))
    end for

:func:`train` is that loop and nothing else: the updates are methods of :class:`GAN` (the loss
pair of GAN_REFERENCE.md sec. 1 replaces the two objectives for the other variants), their
statistics accumulate on the device in :class:`Stats` (one host read per log window), and all
that happens between iterations (logs, samples, evaluation, checkpoints) is :class:`Bookkeeping`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Optional, Sequence, Tuple

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from . import checkpoint, data as datasets, distributed, evaluate, memory, models, optim, rundir
from .cli import apply_recipe, check, job_config, mode_unset, precheck, quote_paths, resume_in_place, run_and_exit
from .config import UserError, register_configs, resolve_device
from . import sweep
from .monitor import Monitor, Quiet, end_session, release_memory, start_session, warm_figures
from .updates import GAN, Stats

log = logging.getLogger("gan_cli")


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGUSR1 stopped the run after a checkpoint; the exit code is 128 + signal.
    Under a job manager that requeues (submitit's preemption signal), ``handoff`` gives the signal on
    to it once the checkpoint is written: it requeues the job, which resumes from that checkpoint."""

    def __init__(self, signum: int, it: int, run_dir: Path, handoff=None):
        self.code, self.handoff = 128 + signum, handoff
        then = "the job is requeued and resumes from it" if handoff else f"continue with: gan-train resume={run_dir}"
        super().__init__(f"interrupted ({signal.Signals(signum).name}) at iteration {it}; {then}")


class SweepInterrupted(BaseException):
    """Ctrl-C (or SIGTERM) stopped a job of a sweep: the sweep stops too (BaseException: Hydra's
    launchers record an Exception as a failed job and go on)."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class Diverged(UserError):
    """A loss, a statistic or a parameter is no longer finite."""


def requeue_signal() -> Optional[Tuple[int, Any]]:
    """In a job that submitit runs (hydra/launcher=slurm, submitit_local): its preemption / time-limit
    signal and submitit's handler for it (which requeues the job); None elsewhere."""
    if "SUBMITIT_EXECUTOR" not in os.environ:
        return None
    try:
        from submitit import JobEnvironment

        signum = JobEnvironment._usr_sig()
    except Exception:
        return None
    handler = signal.getsignal(signum)
    return (signum, handler) if callable(handler) else None


class StopRequest:
    """SIGINT (Ctrl-C), SIGTERM (what a cluster sends first) and SIGUSR1 ask the loop to stop after
    the current iteration; a second SIGINT aborts at once (KeyboardInterrupt). In a submitit job its
    preemption signal (SIGUSR2) does the same, then goes on to submitit, which requeues the job;
    SIGTERM is left to submitit there (it precedes that signal on preemption)."""

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name))

    def __init__(self):
        self.signum: Optional[int] = None
        self._before: Dict[int, Any] = {}
        self.requeue: Optional[Tuple[int, Any]] = None

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
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._before.items():
            signal.signal(s, handler)


class Bookkeeping:
    """Everything between two iterations: the log window every log_every, samples every
    sample_every, evaluation (and checkpoints/best.pt) every eval_every, checkpoints/last.pt every
    ckpt_every; each at the last iteration too. None of it touches the update rules or the training's
    random stream, so a run resumed from any checkpoint continues exactly as if never stopped."""

    def __init__(self, cfg, gan: GAN, state: checkpoint.State, stats: Stats, schedule: optim.Schedule,
                 evaluator: evaluate.Evaluator, monitor: Monitor, run_dir: Path):
        self.cfg, self.gan, self.state, self.stats, self.schedule = cfg, gan, state, stats, schedule
        self.evaluator, self.monitor, self.run_dir = evaluator, monitor, run_dir
        self.best_tag = evaluate.best_metric(cfg.eval.best_by, evaluator.families)
        # plain ints: OmegaConf attribute access costs microseconds every time
        self.steps, self.log_every, self.sample_every = cfg.steps, cfg.log_every, cfg.sample_every
        self.eval_every, self.ckpt_every = cfg.eval_every, cfg.ckpt_every
        self.window: Dict[str, float] = {}
        self.evaluation: Dict[str, float] = {}
        self.warned_dead = False
        # the newest good checkpoint (the one resumed from, until this run writes one) and its iteration
        self.kept: Optional[Path] = checkpoint.find(cfg.resume) if cfg.resume else None
        self.kept_at = state.step
        self.rng_devices = [gan.device] if gan.device.type == "cuda" else []
        self.rng: Optional[Dict[str, Any]] = None  # the generators' states when the current aside work began
        self.announce = True  # the final table and tensorboard line (a sweep prints its own summary instead)
        self.main = distributed.is_main()  # under torchrun only rank 0 samples, evaluates and saves
        self.also_raw = gan.ema is not None and cfg.ema.also_raw  # G evaluated beside its average (raw/ tags)

    def after(self, it: int) -> None:
        last = it == self.steps
        if it % self.log_every == 0 or last:
            self.log(it, flush=it % self.log_every == 0)
        sample, evaluation, save = (last or it % every == 0 for every in (self.sample_every, self.eval_every, self.ckpt_every))
        if (sample or evaluation or save) and self.main:
            with self.aside():
                if evaluation:  # first: its numerical work overlaps matplotlib's import (Monitor's figures=)
                    self.evaluate(it)
                if sample:
                    self.monitor.samples(it, self.gan.sample(self.state.fixed_noise), self.gan.data, self.stats.path())
                    if self.also_raw:  # G itself beside its moving average
                        self.monitor.samples(it, self.gan.sample(self.state.fixed_noise, raw=True), self.gan.data,
                                             tag="raw/samples")
                if save:
                    self.save("last.pt")
        self.monitor.advance(it)

    @contextmanager
    def aside(self) -> Iterator[None]:
        """Work that is not training: its time is not counted, its random draws are not the training's
        (the generators are restored after it), and checkpoints record the states it started from."""
        self.rng = checkpoint.rng_state()
        with self.monitor.aside(), torch.random.fork_rng(devices=self.rng_devices):
            yield
        release_memory()  # what the evaluation and figures freed goes back to the system

    def log(self, it: int, flush: bool = True) -> None:
        """One log window; a window that is not finite ends the run before anything of it is written."""
        values = self.stats.read(flush)
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise self.diverged(it, ", ".join(bad))
        self.window = self.monitor.log_window(it, {**values, **self.schedule.values(it - 1)}, self.stats.histograms())
        pair = self.gan.pair
        if not self.warned_dead and pair.won is not None:  # the loss's own "D has won" test, on the window's means
            why = pair.won(values["D/real_mean"], values["D/fake_mean"], values["loss/D"] / pair.d_scale)
            if why:
                self.warned_dead = True
                self.monitor.warn(f"iteration {it}: {why} (loss={self.cfg.loss.name})")

    def evaluate(self, it: int) -> None:
        self.monitor.phase("eval")
        self.evaluation, curves = self.evaluator.run(self.gan.shown())
        if self.also_raw:  # the same evaluation (same noise) of G itself, tagged apart
            raw, raw_curves = self.evaluator.run(self.gan.nets)
            self.evaluation.update(evaluate.raw_figures(raw))
            self.monitor.log_eval(it, {}, raw_curves, figure_tag="raw/theory/figure1")
        self.monitor.log_eval(it, self.evaluation, curves)
        self.monitor.phase("train")
        value = self.evaluation.get(self.best_tag)
        if value is not None and evaluate.is_better(self.best_tag, value, self.state.best_value):
            self.state.best_value = value
            self.save("best.pt")

    def save(self, name: str) -> None:
        """A checkpoint of this iteration, never of a non-finite state (the last good one stays)."""
        bad = self.stats.nonfinite() or ([] if self.gan.finite() else ["the parameters"])
        if bad:
            raise self.diverged(self.state.step, ", ".join(bad))
        self.state.window = self.stats.pending()
        checkpoint.save(self.run_dir / "checkpoints" / name, self.state, rng=self.rng)
        if name == "last.pt":
            self.kept, self.kept_at = self.run_dir / "checkpoints" / name, self.state.step

    def finish(self, status: str = "ok") -> Dict[str, float]:
        counts = {"steps": self.state.step, "d_updates": self.state.d_updates, "g_updates": self.state.g_updates}
        if distributed.active():  # one check at the end that DDP kept the ranks' networks equal
            counts.update(world_size=distributed.world_size(), ranks_in_sync=distributed.in_sync(self.gan.nets, self.gan.device))
        return self.monitor.finish(counts, self.window, self.evaluation, status=status, announce=self.announce)

    def interrupt(self, it: int, signum: int, handoff=None) -> Interrupted:
        """Stop after iteration ``it``: its window, a checkpoint and metrics.json (status interrupted)."""
        if not self.stats.empty:
            self.log(it, flush=False)
        if self.main:
            with self.aside():
                self.save("last.pt")
        self.finish("interrupted")
        return Interrupted(signum, it, self.run_dir, handoff)

    def diverged(self, it: int, what: str) -> Diverged:
        """metrics.json (status diverged); the error names what went non-finite and the checkpoint kept."""
        self.finish("diverged")
        kept = f"the last good checkpoint is {self.kept} (iteration {self.kept_at})" if self.kept else "no checkpoint was written"
        return Diverged(f"training diverged at iteration {it}: {what} not finite; {kept}; try a smaller optimizer.lr")


def new_state(cfg, gan: GAN) -> checkpoint.State:
    """A fresh checkpoint state: counters at 0, the config, the FIXED noise of the sample grids."""
    fixed = datasets.noise(cfg.prior, cfg.n_samples * (1 if gan.data.is_image else 16), cfg.z_dim, "cpu",
                           generator=torch.Generator().manual_seed(cfg.seed))
    return checkpoint.State(gan.G, gan.D, gan.opt_G, gan.opt_D, config=OmegaConf.to_container(cfg, resolve=True),
                            fixed_noise=fixed, G_ema=None if gan.ema is None else gan.ema.model)


def requeued(run_dir: Path) -> Optional[Path]:
    """The checkpoint to continue from when submitit runs a requeued job again in its own directory:
    the directory's last.pt, if the run there did not finish."""
    last = Path(run_dir) / "checkpoints" / "last.pt"
    if "SUBMITIT_EXECUTOR" not in os.environ or not last.is_file():
        return None
    try:
        status = json.loads((Path(run_dir) / "metrics.json").read_text()).get("status")
    except (OSError, ValueError):
        status = None
    return last if status != "ok" else None


def session(cfg, command: Sequence[str]) -> Tuple[Dict[str, object], Tuple[str, ...]]:
    """The HPARAMS entry of a run: its hyperparameters (every group choice, the usual knobs, every key
    of ``command``, the sweep's command line for a job of a sweep) and the metric list of ``command``'s
    datasets (so every job of a sweep declares the same)."""
    try:
        choices = dict(HydraConfig.get().runtime.choices)
    except ValueError:  # not under Hydra (tests call train() directly)
        choices = {}
    hp = sweep.job_hparams(cfg, choices, sweep.command_keys(command))
    try:
        own = evaluate.families(cfg)
    except Exception:
        own = ()
    families = tuple(dict.fromkeys(own + sweep.families(command, config_dir())))
    return hp, evaluate.hparam_metrics(families)


def train(cfg: DictConfig, run_dir: Path, overrides: Iterable[str] = (), console=None,
          command: Optional[Sequence[str]] = None, announce: bool = True) -> Dict[str, float]:
    """Run Algorithm 1 as ``cfg`` says, writing everything into ``run_dir``; return the final figures.
    ``command``: the sweep's command line for a job of a sweep (its HPARAMS columns); ``announce``:
    print the final table and the tensorboard line. The run directory is locked for the run (a lock
    that Hydra's callback took stays with it)."""
    run_dir = Path(run_dir)
    held = rundir.holds(run_dir)
    try:
        return _train(cfg, run_dir, list(overrides), console, command, announce)
    finally:
        if not held:
            rundir.release(run_dir)


def _train(cfg: DictConfig, run_dir: Path, overrides: list, console, command: Optional[Sequence[str]],
           announce: bool) -> Dict[str, float]:
    again = requeued(run_dir) if not cfg.resume else None
    if again is not None:
        cfg.resume = str(again)
        log.info("requeued: continuing from %s", again)
    cfg, saved = checkpoint.resume_config(cfg, overrides)
    check(cfg)
    if saved is not None and again is None:
        checkpoint.check_steps(cfg, saved)
    main = distributed.is_main()
    if main:
        rundir.hold(run_dir)  # one process per run directory (a single run holds it already: Hydra's callback)
        rundir.clean(run_dir)
        checkpoint.guard_run_dir(run_dir, cfg.resume)
    device = distributed.device(cfg.device) or resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    data = datasets.load(cfg.dataset, device)
    memory.check(cfg, data, device)  # before the networks are allocated
    gan = GAN(cfg, data, device)
    state = new_state(cfg, gan)
    if saved is not None:
        checkpoint.restore(saved, state, path=cfg.resume)
        log.info("resumed from %s at iteration %d", cfg.resume, state.step)
    if not main:  # every other rank draws minibatches of its own (rank 0 keeps the seed's stream)
        torch.manual_seed(cfg.seed + 1_000_003 * distributed.rank() + state.step)
    state.fixed_noise = state.fixed_noise.to(device)
    evaluator = evaluate.Evaluator(cfg, data, device)
    monitor = (Monitor(run_dir, total=cfg.steps, start=state.step, console=console, theory=data.has_density,
                       figures=not data.is_image) if main
               else Quiet(total=cfg.steps, start=state.step))
    if main and data.has_density:  # matplotlib (for the figures) imported while the k-d tree searches run
        evaluator.searching = warm_figures
    # the progress bar follows the feature classifier's one-time training (then the evaluation goes on)
    evaluator.progress = lambda done, total: monitor.phase("eval" if done == total else f"classifier {done}/{total}")
    hp, metrics = session(cfg, overrides if command is None else command)
    monitor.start_session(hp, metrics)
    monitor.describe(hp, {"G": models.count_parameters(gan.G), "D": models.count_parameters(gan.D)},
                     device, evaluator.protocol())
    schedule = optim.Schedule(cfg.optimizer)
    stats = Stats(gan.nets, device, iterations=max(cfg.steps - state.step, 0))
    stats.restore(state.window)
    book = Bookkeeping(cfg, gan, state, stats, schedule, evaluator, monitor, run_dir)
    book.announce = announce
    m, k, simultaneous = cfg.batch_size, cfg.k, cfg.updates == "simultaneous"
    several = distributed.active()  # ranks agree on a stop at log windows (a collective, not per step)
    log_every = cfg.log_every
    with monitor, StopRequest() as stop:
        for it in range(state.step + 1, cfg.steps + 1):
            schedule.apply(it - 1, gan.opt_G, gan.opt_D)  # lr and momentum of this iteration (the paper's schedule)
            # ---- Algorithm 1 (Goodfellow et al. 2014) -------------------------------------------------
            if simultaneous:  # the authors' code: D and G stepped from the same parameters, one minibatch
                stats.add(*gan.simultaneous_step(m))
            else:
                for _ in range(k):  # for k steps: x ~ p_data, z ~ p_z; ascend D's stochastic gradient of V
                    stats.add_d(gan.d_step(m))
                stats.add_g(gan.g_step(m))  # z ~ p_z; descend G's stochastic gradient (its loss of the pair)
            gan.average(it)  # with ema.decay: the moving average of G
            # ---- bookkeeping: counters, then logs / samples / evaluation / checkpoints when due ------------
            state.count(d_updates=1 if simultaneous else k)
            stats.end_iteration()
            book.after(it)
            if several and (it % log_every == 0 or it == cfg.steps):
                if distributed.any_rank(stop.signum is not None, device) and stop.signum is None:
                    stop.signum = signal.SIGTERM  # another rank was asked to stop: stop here with it
            if stop.signum is not None and it < cfg.steps and (not several or it % log_every == 0):
                raise book.interrupt(it, stop.signum, stop.handoff())
        return book.finish()


# ---------------------------------------------------------------------------------------------
# command line


def config_dir() -> str:
    """The configs shipped in the wheel (gan_cli/conf) or, in a checkout, the top-level conf/."""
    packaged = Path(__file__).resolve().parent / "conf"
    return str(packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "conf")


def fail(err: Exception) -> None:
    print(f"gan-train: error: {err}", file=sys.stderr)
    sys.exit(2)


def record_job(run_dir: Path, cfg, status: str, error: str, command: Sequence[str]) -> None:
    """A job of a sweep that ended before its run began (status invalid or failed): its metrics.json
    and its HPARAMS entry, so that the summary and TensorBoard show it with its status."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / "metrics.json").is_file():
        report = json.loads((run_dir / "metrics.json").read_text())
        if report.get("status") != "ok":  # the run wrote its own (diverged, interrupted): keep it, add the cause
            report["error"] = error
            rundir.write_text(run_dir / "metrics.json", json.dumps(report, indent=2) + "\n")
        return
    rundir.write_text(run_dir / "metrics.json", json.dumps({"status": status, "error": error, "wall_s": 0.0}, indent=2) + "\n")
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(run_dir)) as writer:
        try:
            hp, metrics = session(cfg, command)
        except Exception:
            hp, metrics = {}, evaluate.CORE_METRICS
        start_session(writer, hp, metrics)
        end_session(writer, status)


def searched(cfg, figures: Dict[str, Any]):
    """What a job returns to the sweeper: for a search (optimized_metric set, e.g. by hparams_search),
    that figure's final value as a float; None for a run that did not finish or has no finite value
    (the Optuna sweeper records the trial as failed and the search goes on; NaN would end it); otherwise
    the run's final figures."""
    metric = cfg.get("optimized_metric")
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
    run_dir, overrides = Path(hc.runtime.output_dir), list(hc.overrides.task)
    multirun = hc.mode == RunMode.MULTIRUN
    command = (sweep.sweep_overrides(Path(hc.sweep.dir)) if multirun else None) or overrides
    try:
        recipe = apply_recipe(cfg, config_dir(), overrides)
        if recipe:  # .hydra/config.yaml shows what runs
            log.info("loss=%s trains with its recipe: %s (set any of them to choose otherwise)", cfg.loss.name,
                     " ".join(f"{k}={v}" for k, v in recipe.items()))
            if hc.output_subdir:
                OmegaConf.save(cfg, run_dir / hc.output_subdir / "config.yaml")
        figures = train(cfg, run_dir, overrides=overrides, command=command, announce=not multirun)
        return searched(cfg, figures)
    except Interrupted as stop:
        if multirun:  # into the job's train.log (a cluster job's stderr is a file in .submitit/)
            log.warning("gan-train: %s", stop)
        elif distributed.is_main():  # under torchrun one line, from rank 0
            print(f"gan-train: {stop}", file=sys.stderr)
        if stop.handoff is not None:
            stop.handoff()  # submitit requeues the job and exits
        if multirun:
            raise SweepInterrupted(stop.code) from None
        sys.exit(stop.code)
    except UserError as err:
        if not multirun:
            fail(err)
        status = "diverged" if isinstance(err, Diverged) else "invalid"
        print(f"gan-train: job {hc.job.num} ({status}): {err}", file=sys.stderr)
        record_job(run_dir, cfg, status, str(err), command)
        return searched(cfg, {"status": status})
    except Exception as err:
        known = memory.as_user_error(err)  # a full disk, a read-only place, out of memory: one line
        if known is not None and not multirun:
            fail(known)
        if known is not None:
            print(f"gan-train: job {hc.job.num} (failed): {known}", file=sys.stderr)
            record_job(run_dir, cfg, "failed", str(known), command)
            return searched(cfg, {"status": "failed"})
        if not multirun:
            raise
        log.exception("job %s failed", hc.job.num)  # a fault of gan-train's: its traceback goes to the job's log
        record_job(run_dir, cfg, "failed", f"{type(err).__name__}: {err}".splitlines()[0], command)
        return searched(cfg, {"status": "failed"})


def main() -> None:
    """Console entry point: check the command line, then hand over to Hydra."""
    register_configs()
    # Hydra's own report of an exception is a traceback; let them reach the handlers below instead
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        distributed.init(sys.argv[1:])  # under torchrun: join the group, agree on the run's start time
        sys.argv[1:] = resume_in_place(quote_paths(sys.argv[1:]))  # Hydra reads sys.argv itself
        if not distributed.is_main():  # rank 0 alone writes the run directory and the log
            sys.argv += ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
        shown = job_config(sys.argv[1:], config_dir())
        if shown is not None:  # --cfg job: what will run, the loss's recipe included
            print(shown, end="")
            return
        precheck(sys.argv[1:], config_dir())
        with mode_unset(sys.argv[1:]):
            _hydra_main()
        if sweep.LAST is not None and sweep.LAST.failed:
            print(f"gan-train: {sweep.LAST.describe_failures()}", file=sys.stderr)
            sys.exit(1)
    except UserError as err:
        fail(err)
    except rundir.Refused as refused:  # a directory locked by another gan-train, or not writable
        fail(refused.error)
    except (HydraException, OmegaConfBaseException) as err:  # Hydra's own settings (hydra.*), which it checks itself
        text = str(err).strip()
        fail(UserError(text.splitlines()[0] if text else type(err).__name__))
    except SweepInterrupted as stop:
        sweep.finish_interrupted()
        sys.exit(stop.code)
    except BrokenPipeError:  # `gan-train --help | head`: the reader left; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt:  # before the loop, or a second Ctrl-C: stop at once, no traceback
        sweep.finish_interrupted()
        print("gan-train: aborted (a second interrupt stops at once; the last checkpoint is kept)", file=sys.stderr)
        sys.exit(130)
    except (OSError, RuntimeError, MemoryError) as err:  # a full disk, a read-only place, out of memory: one line
        known = memory.as_user_error(err)
        if known is None:
            raise
        fail(known)
    finally:
        distributed.close()


def cli() -> None:
    """The gan-train command: :func:`main`, then a quick exit (cli.run_and_exit)."""
    run_and_exit(main)


if __name__ == "__main__":
    cli()
