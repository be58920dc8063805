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

:func:`_iterate` is that loop and nothing else (the other variants' loss pairs, GAN_REFERENCE.md sec. 1, replace
its objectives in :class:`GAN`'s updates); all between iterations is :class:`Bookkeeping`.
"""

from __future__ import annotations

import logging
import math
import signal
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, ContextManager, Dict, Iterable, Iterator, Optional, Tuple

import torch
from omegaconf import DictConfig, OmegaConf

from gan_cli import data as datasets
from gan_cli.config import UserError, eval_every, resolve_device
from gan_cli.evaluation import evaluate, memory
from gan_cli.game import models, optim, population
from gan_cli.game.updates import GAN, Stats
from gan_cli.runs import checkpoint, distributed, rundir
from gan_cli.runs.figures import warm_figures
from gan_cli.runs.footprint import keep_freed_buffers, release_memory
from gan_cli.runs.monitor import Monitor, Quiet, WarningsTo, logging_to, split_handlers

log = logging.getLogger("gan_cli")

class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGUSR1 stopped the run after a checkpoint; the exit code is 128 + signal. ``handoff``
    gives a job manager's preemption signal (submitit's) back to it: it requeues the job, which resumes there."""

    def __init__(self, signum: int, it: int, run_dir: Path, handoff=None):
        self.code, self.handoff = 128 + signum, handoff
        then = "the job is requeued and resumes from it" if handoff else f"continue with: gan-train resume={run_dir}"
        super().__init__(f"interrupted ({signal.Signals(signum).name}) at iteration {it}; {then}")


class Diverged(UserError):
    """A loss, a statistic or a parameter is no longer finite."""


class Bookkeeping:
    """Everything between two iterations: the log window every log_every, samples every sample_every, evaluation
    (and checkpoints/best.pt) every eval_every, checkpoints/last.pt every ckpt_every; each at the last iteration
    too. None of it touches the updates or the training's random stream: a resumed run continues exactly."""

    def __init__(self, cfg, gan: GAN, state: checkpoint.State, stats: Stats, schedule: optim.Schedule,
                 evaluator: evaluate.Evaluator, monitor: Monitor, run_dir: Path):
        self.cfg, self.gan, self.state, self.stats, self.schedule = cfg, gan, state, stats, schedule
        self.evaluator, self.monitor, self.run_dir = evaluator, monitor, run_dir
        self.best_tag = evaluate.best_metric(cfg.eval.best_by, evaluator.families)
        # plain ints: OmegaConf attribute access costs microseconds every time
        self.steps, self.log_every = cfg.steps, cfg.log_every
        self.every = (cfg.sample_every, eval_every(cfg), cfg.ckpt_every)
        self.window: Dict[str, float] = {}  # the last log window's values
        self.evaluation: Dict[str, float] = {}  # the last evaluation's
        self.warned_dead = self.finished = False
        # the newest good checkpoint (the one resumed from, until this run writes one) and its iteration
        self.kept, self.kept_at = (checkpoint.find(cfg.resume) if cfg.resume else None), state.step
        self.rng: Optional[Dict[str, Any]] = None  # the generators' states when the current aside work began
        self.announce = True  # the final table and tensorboard line (a sweep prints its own summary instead)
        self.main = distributed.is_main()  # under torchrun only rank 0 samples, evaluates and saves
        self.also_raw = gan.ema is not None and cfg.ema.also_raw  # G evaluated beside its average (raw/ tags)
        self.members = 0  # a member of a population: how many trained together (metrics.json's perf/members)

    def after(self, it: int) -> None:
        last = it == self.steps
        if it % self.log_every == 0 or last:
            self.log(it, flush=it % self.log_every == 0)
        sample, evaluation, save = (last or it % every == 0 for every in self.every)
        if (sample or evaluation or save) and self.main:
            with self.aside():
                if save:  # first: the networks are kept whatever fails after (an evaluation, a figure)
                    self.save("last.pt")
                if evaluation and self.evaluate(it) and save:
                    self.save("last.pt")  # with the new best value, which a resumed run compares against
                if sample:
                    self.sample(it)
        self.monitor.advance(it)

    @contextmanager
    def aside(self) -> Iterator[None]:
        """Work that is not training: its time is not counted, its random draws are not the training's
        (the generators are restored after it), and checkpoints record the states it started from."""
        self.rng = checkpoint.rng_state(self.gan.gen)
        devices = [self.gan.device] if self.gan.device.type == "cuda" else []
        with self.monitor.aside(), torch.random.fork_rng(devices=devices):
            yield
        release_memory()  # what the evaluation and figures freed goes back to the system

    def log(self, it: int, flush: bool = True) -> None:
        """One log window; a window that is not finite ends the run before anything of it is written."""
        values = self.stats.read(flush)
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise self.diverged(it, ", ".join(bad))
        self.window = self.monitor.log_window(it, {**values, **self.schedule.values(it - 1)}, self.stats.histograms())
        # the loss's own "D has won" test, on the window's means
        why = None if self.warned_dead else self.gan.loss.has_won(values["game/D_real"], values["game/D_fake"],
                                                                  values["game/loss_D"])
        if why:
            self.warned_dead = True
            self.monitor.warn(f"iteration {it}: {why} (loss={self.cfg.loss.name})")

    def start(self) -> None:
        """Iteration 0 of a new run: the untrained G's evaluation and samples, where every curve and film
        starts (no checkpoint: best.pt is chosen among trained generators)."""
        if self.main and self.state.step == 0:
            with self.aside():
                self.evaluate(0, keep_best=False)
                self.sample(0)

    def sample(self, it: int) -> None:
        self.monitor.samples(it, self.gan.sample(self.state.fixed_noise), self.gan.data, self.stats.path())
        if self.also_raw:  # G itself beside its moving average
            self.monitor.samples(it, self.gan.sample(self.state.fixed_noise, raw=True), self.gan.data,
                                 tag="raw/game/samples")

    def evaluate(self, it: int, keep_best: bool = True) -> bool:
        """Measure G (figures logged) and keep it as best.pt when it is the best yet; True when it is."""
        self.monitor.phase("eval")
        self.evaluation, curves, raw_curves = self.evaluator.measure(self.gan.nets, self.gan.ema, self.also_raw)
        figures, constants = evaluate.constants(self.evaluation)
        if raw_curves is not None:
            self.monitor.log_eval(it, {}, raw_curves, figure_tag="raw/game/figure1")
        self.monitor.log_eval(it, figures, curves, constants=constants)
        self.monitor.phase("train")
        value = self.evaluation.get(self.best_tag) if keep_best else None
        if value is not None and evaluate.is_better(self.best_tag, value, self.state.best_value):
            self.state.best_value = value
            self.save("best.pt")
            return True
        return False

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
        self.finished = True
        counts = {"steps": self.state.step, "d_updates": self.state.d_updates, "g_updates": self.state.g_updates,
                  **({"perf/members": self.members} if self.members else {})}
        if distributed.active():  # one check at the end that DDP kept the ranks' networks equal
            counts.update(world_size=distributed.world_size(),
                          ranks_in_sync=distributed.in_sync(self.gan.nets, self.gan.device))
        return self.monitor.finish(counts, self.window, self.evaluation, status=status, announce=self.announce)

    @contextmanager
    def failing(self) -> Iterator[None]:
        """A fault after training began (an evaluation, a figure): metrics.json says so (status failed)."""
        try:
            yield
        except Exception:
            if not self.finished:
                with suppress(OSError, RuntimeError, ValueError):
                    self.finish("failed")
            raise

    def interrupt(self, it: int, signum: int, handoff=None) -> Interrupted:
        """Stop after iteration ``it``: its window, a checkpoint and metrics.json (status interrupted)."""
        if self.stats.n_g:  # a window not logged yet
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


# set by a population's launcher (gan_cli.cli.population) while its members are prepared: train() prepares each
# run and adds (cfg, gan, state, book, its log file handlers) here
COLLECT: Optional[list] = None


def train(cfg: DictConfig, run_dir: Path, overrides: Iterable[str] = (), console=None, announce: bool = True, *,
          check: Optional[Callable[[DictConfig], None]] = None,
          hparams: Optional[Callable[[DictConfig], Dict[str, object]]] = None,
          stop: Callable[[], ContextManager[Any]] = (  # nothing asks to stop (no signal handlers installed)
              lambda: nullcontext(SimpleNamespace(signum=None, handoff=lambda: None)))) -> Dict[str, float]:
    """Run Algorithm 1 as ``cfg`` says, writing everything into ``run_dir``; return the final figures.
    ``overrides``: the command line's settings (what a resumed run may change); ``announce``: print the final
    table and the tensorboard line. ``check`` refuses the config in force (UserError) before anything is built;
    ``hparams`` gives the run's HPARAMS hyperparameters from it (default: none); ``stop()`` is entered around
    the loop, its value's ``signum`` (None until a stop is asked) and ``handoff()`` read after each iteration.
    ``run_dir`` is locked for the run (or stays locked)."""
    run_dir = Path(run_dir)
    if COLLECT is not None:  # a member of a population: prepared now, trained with the others (game.population)
        from io import StringIO

        from rich.console import Console

        def checked(c: DictConfig) -> None:
            population.refuse(c)
            if check is not None:
                check(c)
        files, console = split_handlers(logging.getLogger().handlers)
        with logging_to(files + [WarningsTo(h) for h in console]):  # its set-up in its train.log
            cfg, gan, state, book = prepare(cfg, run_dir, overrides, Console(file=StringIO()), False, check=checked,
                                            hparams=hparams)
        COLLECT.append((cfg, gan, state, book, files))
        return {"status": "pending"}
    held = rundir.holds(run_dir)
    try:
        return _iterate(*prepare(cfg, run_dir, overrides, console, announce, check=check, hparams=hparams), stop)
    finally:
        if not held:
            rundir.release(run_dir)


def prepare(cfg: DictConfig, run_dir: Path, overrides: Iterable[str] = (), console=None, announce: bool = True, *,
            check=None, hparams=None) -> Tuple[DictConfig, GAN, checkpoint.State, Bookkeeping]:
    """Everything a run needs before its first iteration (:func:`train`'s arguments): the config in force, the
    networks and optimizers, the state, and its bookkeeping with the monitor open."""
    cfg, gan, state = _start(cfg, Path(run_dir), list(overrides), check)
    main, data, device = distributed.is_main(), gan.data, gan.device
    evaluator = evaluate.Evaluator(cfg, data, device)
    monitor = (Monitor(run_dir, total=cfg.steps, start=state.step, console=console, theory=data.has_density,
                       figures=not data.is_image) if main
               else Quiet(total=cfg.steps, start=state.step))  # rank 0's monitor; a quiet one elsewhere
    if main and data.has_density:  # matplotlib (for the figures) imported while the k-d tree searches run
        evaluator.searching = warm_figures
    # the progress bar follows the feature classifier's one-time training (then the evaluation goes on)
    evaluator.progress = lambda done, n: monitor.phase("eval" if done == n else f"classifier {done}/{n}")
    hp = hparams(cfg) if hparams else {}
    monitor.start_session(hp)
    monitor.describe(hp, {"G": models.count_parameters(gan.G), "D": models.count_parameters(gan.D)},
                     device, evaluator.protocol())
    stats = Stats(gan.nets, device, iterations=max(cfg.steps - state.step, 0))
    stats.restore(state.window)  # continuing the log window that a checkpoint cut
    book = Bookkeeping(cfg, gan, state, stats, optim.Schedule(cfg.optimizer), evaluator, monitor, Path(run_dir))
    book.announce = announce
    return cfg, gan, state, book


def _start(cfg: DictConfig, run_dir: Path, overrides: list,
           check: Optional[Callable[[DictConfig], None]]) -> Tuple[DictConfig, GAN, checkpoint.State]:
    """The config in force (a requeued job's own last.pt, or resume='s saved config under ``overrides``), then
    the data, networks, optimizers and state, seeded by cfg.seed. Rank 0 takes the run directory between: its
    lock, the leftovers of processes that died mid-write removed, never another run's checkpoint."""
    again = rundir.unfinished(run_dir) if not cfg.resume else None
    if again is not None:
        cfg.resume = str(again)
        log.info("continuing the run from %s", again)
    cfg, saved = checkpoint.resume_config(cfg, overrides)
    if check is not None:
        check(cfg)
    if saved is not None and again is None:
        checkpoint.check_steps(cfg, saved)
    if distributed.is_main():
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
        checkpoint.restore(saved, state, path=cfg.resume, run=gan.gen)
        log.info("resumed from %s at iteration %d", cfg.resume, state.step)
    if not distributed.is_main():  # every other rank draws minibatches of its own (rank 0 keeps the seed's stream)
        gan.gen.manual_seed(cfg.seed + 1_000_003 * distributed.rank() + state.step)
    state.fixed_noise = state.fixed_noise.to(device)
    return cfg, gan, state


def _iterate(cfg: DictConfig, gan: GAN, state: checkpoint.State, book: Bookkeeping,
             stop: Callable[[], ContextManager[Any]]) -> Dict[str, float]:
    """Algorithm 1 from the iteration after ``state.step`` to cfg.steps; between iterations, ``book``.
    A stop that is asked ends the run after the iteration (Interrupted), with a checkpoint."""
    stats, schedule, log_every = book.stats, book.schedule, cfg.log_every
    m, k, simultaneous = cfg.batch_size, cfg.k, cfg.updates == "simultaneous"
    several = distributed.active()  # ranks agree on a stop at log windows (a collective, not per step)
    with book.monitor, stop() as request, book.failing():
        book.start()
        for it in range(state.step + 1, cfg.steps + 1):
            schedule.apply(it - 1, gan.opt_G, gan.opt_D)  # lr and momentum of this iteration (the paper's schedule)
            # ---- Algorithm 1 (Goodfellow et al. 2014) -------------------------------------------------
            if simultaneous:  # the authors' code: D and G stepped from the same parameters, one minibatch
                stats.add(*gan.simultaneous_step(m))
            else:
                for _ in range(k):  # for k steps: x ~ p_data, z ~ p_z; ascend D's stochastic gradient of V
                    stats.add_d(gan.d_step(m))
                stats.add_g(gan.g_step(m))  # z ~ p_z; descend G's stochastic gradient (its loss of the pair)
            if gan.ema is not None:  # with ema.decay: the moving average of G takes this iteration in
                gan.ema.update(it)
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


def train_population(members: list, stop) -> Dict[int, Dict[str, float]]:
    """Train runs prepared while COLLECT was set ((cfg, gan, state, book, log handlers) each) as one population
    (gan_cli.game.population), by this module's loop; each member's final figures by its index (a member that
    diverged: none)."""
    cfgs, nets, states, books, handlers = map(list, zip(*members))
    steps = {s.step for s in states}
    if len(steps) > 1:
        raise UserError(f"the members of a population must start at the same iteration; they are at {sorted(steps)}")
    gans = population.Population(nets, cfgs)
    keep_freed_buffers()
    stats = Stats(gans.nets, gans.device, iterations=max(cfgs[0].steps - states[0].step, 0), members=len(members))
    windows = [s.window for s in states]
    if all(windows):  # continuing the log windows that the checkpoints cut
        stats.restore({**windows[0], **{k: torch.stack([w[k] for w in windows]) for k in ("d", "g")}})
    book = population.PopulationBook(gans, books, stats, handlers, Diverged, Interrupted)
    return _iterate(cfgs[0], gans, population.PopulationState(states), book, stop)
