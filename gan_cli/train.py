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

import logging
import math
import sys
from pathlib import Path
from typing import Dict, Iterable, NamedTuple, Optional

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from . import checkpoint, data as datasets, evaluate, losses, models, optim
from .cli import check, precheck
from .config import UserError, register_configs, resolve_device
from .monitor import Monitor, hparams

log = logging.getLogger("gan_cli")


def _grad_norm(params) -> torch.Tensor:
    """Global L2 norm of the gradients (on the device: no sync)."""
    return torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])


class DStep(NamedTuple):
    """What one D update reports: loss, mean/std of D(x) and D(G(z)), grad norm; and the scores."""

    values: torch.Tensor  # (6,) in the order of Stats.D_TAGS, on the device
    real: torch.Tensor  # D(x) of the minibatch (for the histograms)
    fake: torch.Tensor  # D(G(z)) of the minibatch


class GAN:
    """G, D, their optimizers and the loss pair; one method per kind of update."""

    def __init__(self, cfg, data: datasets.Data, device: torch.device):
        self.data, self.device = data, device
        self.nets = models.build(cfg.arch, data, cfg.z_dim).to(device)
        self.G, self.D = self.nets
        self.opt_G = optim.build(cfg.optimizer, self.G.parameters())
        self.opt_D = optim.build(cfg.optimizer, self.D.parameters())
        self.pair = losses.get(cfg.loss)
        self.prior, self.z_dim = cfg.prior, cfg.z_dim

    def noise(self, m: int) -> torch.Tensor:
        return datasets.noise(self.prior, m, self.z_dim, self.device)

    def score(self, a: torch.Tensor) -> torch.Tensor:
        """What the D/ tags report: D = sigma(a), or the raw critic score for wasserstein_gp."""
        a = a.detach()
        return a if self.pair.critic else torch.sigmoid(a)

    def _d_loss(self, x, fake, a_real, a_fake):
        loss = self.pair.d(a_real, a_fake)
        if self.pair.gp_weight > 0:
            loss = loss + self.pair.gp_weight * losses.gradient_penalty(self.D, x, fake.detach())
        return loss if self.pair.d_scale == 1.0 else self.pair.d_scale * loss

    def _d_stats(self, loss, a_real, a_fake, grad_norm) -> DStep:
        real, fake = self.score(a_real), self.score(a_fake)
        values = torch.stack([loss.detach(), real.mean(), real.std(), fake.mean(), fake.std(), grad_norm])
        return DStep(values, real, fake)

    def d_step(self, m: int) -> DStep:
        """One D update on a fresh real minibatch and fresh noise; G is frozen (no graph through it)."""
        x, z = self.data.sample(m), self.noise(m)
        with torch.no_grad():
            fake = self.G(z)
        a_real, a_fake = self.D(x), self.D(fake)
        loss = self._d_loss(x, fake, a_real, a_fake)
        self.opt_D.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = _grad_norm(self.D.parameters())
        self.opt_D.step()
        return self._d_stats(loss, a_real, a_fake, grad_norm)

    def g_step(self, m: int) -> torch.Tensor:
        """One G update on fresh noise; D is frozen (its parameters take no gradient)."""
        self.D.requires_grad_(False)
        loss = self.pair.g(self.D(self.G(self.noise(m))))
        self.opt_G.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = _grad_norm(self.G.parameters())
        self.opt_G.step()
        self.D.requires_grad_(True)
        return torch.stack([loss.detach(), grad_norm])

    def simultaneous_step(self, m: int):
        """The authors' code: both gradients at the same parameters on ONE minibatch, both stepped."""
        x, z = self.data.sample(m), self.noise(m)
        fake = self.G(z)
        a_real, a_fake = self.D(x), self.D(fake)
        loss_d = self._d_loss(x, fake, a_real, a_fake)
        loss_g = self.pair.g(a_fake)
        d_params, g_params = list(self.D.parameters()), list(self.G.parameters())
        d_grads = torch.autograd.grad(loss_d, d_params, retain_graph=True)
        g_grads = torch.autograd.grad(loss_g, g_params)
        for p, g in zip(d_params + g_params, d_grads + g_grads):
            p.grad = g
        d_norm, g_norm = _grad_norm(d_params), _grad_norm(g_params)
        self.opt_D.step()
        self.opt_G.step()
        return self._d_stats(loss_d, a_real, a_fake, d_norm), torch.stack([loss_g.detach(), g_norm])

    @torch.no_grad()
    def sample(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) in eval mode (batch norm uses its running statistics), then back to train mode."""
        self.G.eval()
        out = self.G(z)
        self.G.train()
        return out

    def state(self, cfg) -> checkpoint.State:
        """A fresh checkpoint state: counters at 0, the config, the FIXED noise of the sample grids."""
        fixed = datasets.noise(cfg.prior, cfg.n_samples * (1 if self.data.is_image else 16), cfg.z_dim, "cpu",
                               generator=torch.Generator().manual_seed(cfg.seed))
        return checkpoint.State(self.G, self.D, self.opt_G, self.opt_D, config=OmegaConf.to_container(cfg, resolve=True),
                                fixed_noise=fixed)


class Stats:
    """Running sums of every update's statistics, on the device; ``read()`` is the one host sync of
    a log window. For a game whose state is a point (models.Nets.point), its path is kept too."""

    D_TAGS = ("loss/D", "D/real_mean", "D/real_std", "D/fake_mean", "D/fake_std", "grad/D")
    G_TAGS = ("loss/G", "grad/G")

    def __init__(self, nets: models.Nets, device: torch.device, iterations: int):
        self.nets = nets
        self.d = torch.zeros(len(self.D_TAGS), device=device)
        self.g = torch.zeros(len(self.G_TAGS), device=device)
        self.n_d = self.n_g = 0
        self.last_d: Optional[DStep] = None
        self.i = 0  # iterations since the start (rows of the path)
        self._path = None
        if nets.has_point:  # its state after every iteration, kept on the device
            self._path = torch.empty(iterations + 1, 2, device=device)
            self._path[0] = nets.point()

    def add_d(self, step: DStep) -> None:
        self.d += step.values
        self.n_d += 1
        self.last_d = step

    def add_g(self, values: torch.Tensor) -> None:
        self.g += values
        self.n_g += 1

    def add(self, d: DStep, g: torch.Tensor) -> None:
        self.add_d(d)
        self.add_g(g)

    def end_iteration(self) -> None:
        self.i += 1
        if self._path is not None:
            self._path[self.i] = self.nets.point()

    def path(self) -> Optional[torch.Tensor]:
        """The point's path so far (None when the game has no point)."""
        return None if self._path is None else self._path[: self.i + 1]

    def histograms(self) -> Dict[str, torch.Tensor]:
        return {"D/real": self.last_d.real, "D/fake": self.last_d.fake}

    def read(self) -> Dict[str, float]:
        """The window's means by tag (and the point's distance to (0, 0)); then start a new window."""
        parts = [self.d / self.n_d, self.g / self.n_g]
        tags = self.D_TAGS + self.G_TAGS
        if self._path is not None:
            parts.append(self._path[self.i].norm().view(1))
            tags += ("theory/distance",)
        values = torch.cat(parts).tolist()  # the one host sync per window
        self.d.zero_()
        self.g.zero_()
        self.n_d = self.n_g = 0
        return dict(zip(tags, values))


class Bookkeeping:
    """Everything between two iterations: the log window every log_every, samples every
    sample_every, evaluation (and checkpoints/best.pt) every eval_every, checkpoints/last.pt every
    ckpt_every; each at the last iteration too. Nothing here touches the update rules."""

    def __init__(self, cfg, gan: GAN, state: checkpoint.State, schedule: optim.Schedule,
                 evaluator: evaluate.Evaluator, monitor: Monitor, run_dir: Path):
        self.cfg, self.gan, self.state, self.schedule = cfg, gan, state, schedule
        self.evaluator, self.monitor, self.run_dir = evaluator, monitor, run_dir
        self.best_tag = evaluate.best_metric(cfg.eval.best_by, evaluator.families)
        # plain ints: OmegaConf attribute access costs microseconds every time
        self.steps, self.log_every, self.sample_every = cfg.steps, cfg.log_every, cfg.sample_every
        self.eval_every, self.ckpt_every = cfg.eval_every, cfg.ckpt_every
        self.window: Dict[str, float] = {}
        self.evaluation: Dict[str, float] = {}
        self.warned_dead = False

    def after(self, it: int, stats: Stats) -> None:
        last = it == self.steps
        if it % self.log_every == 0 or last:
            self.log(it, stats)
        sample, evaluation, save = (last or it % every == 0 for every in (self.sample_every, self.eval_every, self.ckpt_every))
        if sample or evaluation or save:
            with self.monitor.aside():
                if sample:
                    self.monitor.samples(it, self.gan.sample(self.state.fixed_noise), self.gan.data, stats.path())
                if evaluation:
                    self.evaluate(it)
                if save:
                    self.save("last.pt")
        self.monitor.advance(it)

    def log(self, it: int, stats: Stats) -> None:
        values = stats.read()
        self.window = self.monitor.log_window(it, {**values, **self.schedule.values(it - 1)}, stats.histograms())
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise UserError(f"training diverged at iteration {it}: a loss or statistic is not finite ({', '.join(bad)}); "
                            "try a smaller optimizer.lr")
        if not self.warned_dead and not self.gan.pair.critic and values["D/fake_mean"] < 0.01 and values["D/real_mean"] > 0.99:
            self.warned_dead = True
            self.monitor.warn(f"iteration {it}: D rejects nearly every fake (D(G(z)) = {values['D/fake_mean']:.4f}); "
                              f"with loss={self.cfg.loss.name} G's gradient may vanish: watch grad/G")

    def evaluate(self, it: int) -> None:
        self.monitor.phase("eval")
        self.evaluation, curves = self.evaluator.run(self.gan.nets)
        self.monitor.log_eval(it, self.evaluation, curves)
        self.monitor.phase("train")
        value = self.evaluation.get(self.best_tag)
        if value is not None and evaluate.is_better(self.best_tag, value, self.state.best_value):
            self.state.best_value = value
            self.save("best.pt")

    def save(self, name: str) -> None:
        checkpoint.save(self.run_dir / "checkpoints" / name, self.state)

    def finish(self) -> Dict[str, float]:
        counts = {"steps": self.state.step, "d_updates": self.state.d_updates, "g_updates": self.state.g_updates}
        return self.monitor.finish(hparams(self.cfg), counts, self.window, self.evaluation)


def train(cfg: DictConfig, run_dir: Path, overrides: Iterable[str] = (), console=None) -> Dict[str, float]:
    """Run Algorithm 1 as ``cfg`` says, writing everything into ``run_dir``; return the final figures."""
    run_dir = Path(run_dir)
    cfg, saved = checkpoint.resume_config(cfg, overrides)
    check(cfg)
    checkpoint.guard_run_dir(run_dir, cfg.resume)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    data = datasets.load(cfg.dataset, device)
    gan = GAN(cfg, data, device)
    state = gan.state(cfg)
    if saved is not None:
        checkpoint.restore(saved, state, path=cfg.resume)
        log.info("resumed from %s at iteration %d", cfg.resume, state.step)
    state.fixed_noise = state.fixed_noise.to(device)
    evaluator = evaluate.Evaluator(cfg, data, device)
    monitor = Monitor(run_dir, total=cfg.steps, start=state.step, console=console, theory=data.has_density)
    monitor.describe(hparams(cfg), {"G": models.count_parameters(gan.G), "D": models.count_parameters(gan.D)},
                     device, evaluator.protocol())
    schedule = optim.Schedule(cfg.optimizer)
    stats = Stats(gan.nets, device, iterations=max(cfg.steps - state.step, 0))
    book = Bookkeeping(cfg, gan, state, schedule, evaluator, monitor, run_dir)
    m, k, simultaneous = cfg.batch_size, cfg.k, cfg.updates == "simultaneous"
    with monitor:
        for it in range(state.step + 1, cfg.steps + 1):
            schedule.apply(it - 1, gan.opt_G, gan.opt_D)  # lr and momentum of this iteration (the paper's schedule)
            # ---- Algorithm 1 (Goodfellow et al. 2014) -------------------------------------------------
            if simultaneous:  # the authors' code: D and G stepped from the same parameters, one minibatch
                stats.add(*gan.simultaneous_step(m))
            else:
                for _ in range(k):  # for k steps: x ~ p_data, z ~ p_z; ascend D's stochastic gradient of V
                    stats.add_d(gan.d_step(m))
                stats.add_g(gan.g_step(m))  # z ~ p_z; descend G's stochastic gradient (its loss of the pair)
            # ---- bookkeeping: counters, then logs / samples / evaluation / checkpoints when due ------------
            state.count(d_updates=1 if simultaneous else k)
            stats.end_iteration()
            book.after(it, stats)
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


@hydra.main(config_path=config_dir(), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> Optional[Dict[str, float]]:
    hc = HydraConfig.get()
    try:
        return train(cfg, Path(hc.runtime.output_dir), overrides=list(hc.overrides.task))
    except UserError as err:
        fail(err)
    return None


def main() -> None:
    """Console entry point: check the command line, then hand over to Hydra."""
    register_configs()
    try:
        precheck(sys.argv[1:], config_dir())
    except UserError as err:
        fail(err)
    _hydra_main()


if __name__ == "__main__":
    main()
