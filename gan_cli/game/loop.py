"""The training loop: Algorithm 1 of Goodfellow et al. (2014), as a run config says.

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

:func:`_iterate` is that loop and nothing else: the updates are methods of :class:`GAN` (the loss
pair of GAN_REFERENCE.md sec. 1 replaces the two objectives for the other variants), their
statistics accumulate on the device in :class:`Stats` (one host read per log window), and all
that happens between iterations (logs, samples, evaluation, checkpoints) is :class:`Bookkeeping`.
What a command line adds (its checks of the config, the HPARAMS entry, stops by signal) comes in
as parameters of :func:`train`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Iterable, Iterator, Optional, Sequence, Tuple, Union

import torch
from omegaconf import DictConfig, OmegaConf

from gan_cli import data as datasets
from gan_cli.config import UserError, resolve_device
from gan_cli.evaluation import evaluate, memory
from gan_cli.game import models, optim
from gan_cli.game.updates import GAN, Stats
from gan_cli.runs import checkpoint, distributed, rundir
from gan_cli.runs.figures import warm_figures
from gan_cli.runs.footprint import release_memory
from gan_cli.runs.monitor import Monitor, Quiet

log = logging.getLogger("gan_cli")

HParams = Tuple[Dict[str, object], Sequence[str]]  # an HPARAMS entry: hyperparameters, the metric tags it shows


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGUSR1 stopped the run after a checkpoint; the exit code is 128 + signal.
    Under a job manager that requeues (submitit's preemption signal), ``handoff`` gives the signal on
    to it once the checkpoint is written: it requeues the job, which resumes from that checkpoint."""

    def __init__(self, signum: int, it: int, run_dir: Path, handoff=None):
        self.code, self.handoff = 128 + signum, handoff
        then = "the job is requeued and resumes from it" if handoff else f"continue with: gan-train resume={run_dir}"
        super().__init__(f"interrupted ({signal.Signals(signum).name}) at iteration {it}; {then}")


class Diverged(UserError):
    """A loss, a statistic or a parameter is no longer finite."""


class Unasked:
    """The stop requests of a loop that nothing asks to stop (no signal handlers installed): none."""

    signum: Optional[int] = None

    def handoff(self) -> None:
        return None

    def __enter__(self) -> "Unasked":
        return self

    def __exit__(self, *exc) -> None:
        pass


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
        due = (last or it % every == 0 for every in (self.sample_every, self.eval_every, self.ckpt_every))
        sample, evaluation, save = due
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
        if not self.warned_dead:  # the loss's own "D has won" test, on the window's means
            why = self.gan.loss.has_won(values["D/real_mean"], values["D/fake_mean"], values["loss/D"])
            if why:
                self.warned_dead = True
                self.monitor.warn(f"iteration {it}: {why} (loss={self.cfg.loss.name})")

    def evaluate(self, it: int) -> None:
        self.monitor.phase("eval")
        self.evaluation, curves, raw_curves = self.evaluator.measure(self.gan.nets, self.gan.ema, self.also_raw)
        if raw_curves is not None:
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
            counts.update(world_size=distributed.world_size(),
                          ranks_in_sync=distributed.in_sync(self.gan.nets, self.gan.device))
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
        kept = (f"the last good checkpoint is {self.kept} (iteration {self.kept_at})" if self.kept
                else "no checkpoint was written")
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
    except (OSError, ValueError):  # no metrics.json, or one cut short: the run there did not finish
        status = None
    return last if status != "ok" else None


def own_hparams(cfg) -> HParams:
    """The HPARAMS entry of a run that is given none: no hyperparameters, its own dataset's metrics."""
    return {}, evaluate.hparam_metrics(evaluate.families(cfg))


def train(cfg: DictConfig, run_dir: Path, overrides: Iterable[str] = (), console=None, announce: bool = True, *,
          check: Optional[Callable[[DictConfig], None]] = None,
          hparams: Optional[Callable[[DictConfig], HParams]] = None,
          stop: Callable[[], ContextManager[Any]] = Unasked) -> Dict[str, float]:
    """Run Algorithm 1 as ``cfg`` says, writing everything into ``run_dir``; return the final figures.
    ``overrides``: the command line's settings (what a resumed run may change); ``announce``: print the
    final table and the tensorboard line. ``check`` refuses a config (UserError), called on the config
    in force (a resumed run's included) before anything is built; ``hparams`` gives the run's HPARAMS
    entry from that config; ``stop()`` is entered around the loop, and its value's ``signum`` (None
    until a stop is asked) and ``handoff()`` are read after each iteration. The run directory is locked
    for the run (a lock that Hydra's callback took stays with it)."""
    run_dir = Path(run_dir)
    held = rundir.holds(run_dir)
    try:
        cfg, saved = _settle(cfg, run_dir, list(overrides), check)
        gan, state = _build(cfg, saved)
        monitor, evaluator = _watch(cfg, run_dir, gan, state, console, hparams or own_hparams)
        book = _bookkeeping(cfg, gan, state, evaluator, monitor, run_dir)
        book.announce = announce
        return _iterate(cfg, gan, state, book, stop)
    finally:
        if not held:
            rundir.release(run_dir)


def _settle(cfg: DictConfig, run_dir: Path, overrides: list,
            check: Optional[Callable[[DictConfig], None]]) -> Tuple[DictConfig, Optional[Dict[str, Any]]]:
    """The config in force and the checkpoint it continues (None for a fresh run): a requeued job's own
    last.pt, or resume= with the saved config under ``overrides``. Rank 0 then takes the run directory:
    its lock, the leftovers of processes that died mid-write removed, never another run's checkpoint."""
    again = requeued(run_dir) if not cfg.resume else None
    if again is not None:
        cfg.resume = str(again)
        log.info("requeued: continuing from %s", again)
    cfg, saved = checkpoint.resume_config(cfg, overrides)
    if check is not None:
        check(cfg)
    if saved is not None and again is None:
        checkpoint.check_steps(cfg, saved)
    if distributed.is_main():
        rundir.hold(run_dir)  # one process per run directory (a single run holds it already: Hydra's callback)
        rundir.clean(run_dir)
        checkpoint.guard_run_dir(run_dir, cfg.resume)
    return cfg, saved


def _build(cfg: DictConfig, saved: Optional[Dict[str, Any]]) -> Tuple[GAN, checkpoint.State]:
    """The data, the networks and their optimizers on the run's device, seeded by cfg.seed, and the
    checkpoint state (restored from ``saved``)."""
    device = distributed.device(cfg.device) or resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    data = datasets.load(cfg.dataset, device)
    memory.check(cfg, data, device)  # before the networks are allocated
    gan = GAN(cfg, data, device)
    state = new_state(cfg, gan)
    if saved is not None:
        checkpoint.restore(saved, state, path=cfg.resume)
        log.info("resumed from %s at iteration %d", cfg.resume, state.step)
    if not distributed.is_main():  # every other rank draws minibatches of its own (rank 0 keeps the seed's stream)
        torch.manual_seed(cfg.seed + 1_000_003 * distributed.rank() + state.step)
    state.fixed_noise = state.fixed_noise.to(device)
    return gan, state


def _watch(cfg: DictConfig, run_dir: Path, gan: GAN, state: checkpoint.State, console,
           hparams: Callable[[DictConfig], HParams]) -> Tuple[Union[Monitor, Quiet], evaluate.Evaluator]:
    """The evaluator and the monitor (rank 0's; a Quiet one on other ranks), with the run's HPARAMS
    entry and its opening lines written."""
    main, data, device = distributed.is_main(), gan.data, gan.device
    evaluator = evaluate.Evaluator(cfg, data, device)
    monitor = (Monitor(run_dir, total=cfg.steps, start=state.step, console=console, theory=data.has_density,
                       figures=not data.is_image) if main
               else Quiet(total=cfg.steps, start=state.step))
    if main and data.has_density:  # matplotlib (for the figures) imported while the k-d tree searches run
        evaluator.searching = warm_figures
    # the progress bar follows the feature classifier's one-time training (then the evaluation goes on)
    evaluator.progress = lambda done, total: monitor.phase("eval" if done == total else f"classifier {done}/{total}")
    hp, metrics = hparams(cfg)
    monitor.start_session(hp, metrics)
    monitor.describe(hp, {"G": models.count_parameters(gan.G), "D": models.count_parameters(gan.D)},
                     device, evaluator.protocol())
    return monitor, evaluator


def _bookkeeping(cfg: DictConfig, gan: GAN, state: checkpoint.State, evaluator: evaluate.Evaluator,
                 monitor: Union[Monitor, Quiet], run_dir: Path) -> Bookkeeping:
    """The bookkeeping of the iterations left, with the learning-rate schedule and the statistics'
    accumulator (continuing the log window that a checkpoint cut)."""
    schedule = optim.Schedule(cfg.optimizer)
    stats = Stats(gan.nets, gan.device, iterations=max(cfg.steps - state.step, 0))
    stats.restore(state.window)
    return Bookkeeping(cfg, gan, state, stats, schedule, evaluator, monitor, run_dir)


def _iterate(cfg: DictConfig, gan: GAN, state: checkpoint.State, book: Bookkeeping,
             stop: Callable[[], ContextManager[Any]]) -> Dict[str, float]:
    """Algorithm 1 from the iteration after ``state.step`` to cfg.steps; between iterations, ``book``.
    A stop that is asked ends the run after the iteration (Interrupted), with a checkpoint."""
    stats, schedule = book.stats, book.schedule
    m, k, simultaneous = cfg.batch_size, cfg.k, cfg.updates == "simultaneous"
    several = distributed.active()  # ranks agree on a stop at log windows (a collective, not per step)
    log_every = cfg.log_every
    with book.monitor, stop() as request:
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
                if distributed.any_rank(request.signum is not None, gan.device) and request.signum is None:
                    request.signum = signal.SIGTERM  # another rank was asked to stop: stop here with it
            if request.signum is not None and it < cfg.steps and (not several or it % log_every == 0):
                raise book.interrupt(it, request.signum, request.handoff())
        return book.finish()
