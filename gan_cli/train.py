"""gan-train: Algorithm 1 of Goodfellow et al. (2014), configured by Hydra, logged to TensorBoard.

    for number of training iterations:                                   (cfg.steps)
        for k steps:                                                      (cfg.k)
            sample m noise samples z ~ p_z and m real examples x ~ p_data (fresh each D step)
            update D by ascending  grad_thetaD 1/m sum[log D(x) + log(1 - D(G(z)))]   (G frozen)
        sample m noise samples z ~ p_z
        update G by descending grad_thetaG 1/m sum log(1 - D(G(z)))          (D frozen)

The loss pair (sec. 1 of GAN_REFERENCE.md) replaces the two objectives for the other variants.
Statistics stay on the device and are read once every log_every iterations.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, Iterable, Optional

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from . import checkpoint, data as datasets, evaluate, losses, models, optim
from .config import UserError, register_configs, validate
from .monitor import Monitor

log = logging.getLogger("gan_cli")

STATS_D = ("loss/D", "D/real_mean", "D/real_std", "D/fake_mean", "D/fake_std", "grad/D")
STATS_G = ("loss/G", "grad/G")


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA GPU is visible to torch; use device=auto (GPU when there is one) or device=cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _grad_norm(params) -> torch.Tensor:
    """Global L2 norm of the gradients (on the device: no sync)."""
    return torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])


class GAN:
    """G, D, their optimizers and the loss pair; one method per kind of update."""

    def __init__(self, cfg, data: datasets.Data, device: torch.device):
        self.data, self.device = data, device
        G, D = models.build(cfg.arch, data, cfg.z_dim)
        self.G, self.D = G.to(device), D.to(device)
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

    def _d_stats(self, loss, a_real, a_fake, grad_norm):
        real, fake = self.score(a_real), self.score(a_fake)
        stats = torch.stack([loss.detach(), real.mean(), real.std(), fake.mean(), fake.std(), grad_norm])
        return stats, real, fake

    def d_step(self, m: int):
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
        stats_d, real, fake_scores = self._d_stats(loss_d, a_real, a_fake, d_norm)
        return stats_d, real, fake_scores, torch.stack([loss_g.detach(), g_norm])

    @torch.no_grad()
    def sample(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) in eval mode (batch norm uses its running statistics), then back to train mode."""
        self.G.eval()
        out = self.G(z)
        self.G.train()
        return out


def _hparams(cfg) -> Dict[str, object]:
    return {
        "dataset": cfg.dataset.name, "arch": cfg.arch.name, "loss": cfg.loss.name,
        "optimizer": cfg.optimizer.name, "lr": cfg.optimizer.lr, "k": cfg.k, "steps": cfg.steps,
        "batch_size": cfg.batch_size, "z_dim": cfg.z_dim, "prior": cfg.prior, "updates": cfg.updates,
        "seed": cfg.seed,
    }


def train(cfg: DictConfig, run_dir: Path, overrides: Iterable[str] = (), console=None) -> Dict[str, float]:
    """Run Algorithm 1 as ``cfg`` says, writing everything into ``run_dir``; return the final figures."""
    run_dir = Path(run_dir)
    cfg, state = checkpoint.resume_config(cfg, overrides)
    validate(cfg)
    checkpoint.guard_run_dir(run_dir, cfg.resume)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    data = datasets.load(cfg.dataset, device)
    gan = GAN(cfg, data, device)
    start = 0
    fixed_z = datasets.noise(cfg.prior, cfg.n_samples * (1 if data.is_image else 16), cfg.z_dim, "cpu",
                             generator=torch.Generator().manual_seed(cfg.seed))
    if state is not None:
        checkpoint.restore(state, G=gan.G, D=gan.D, opt_G=gan.opt_G, opt_D=gan.opt_D, path=cfg.resume)
        start, fixed_z = int(state["step"]), state["fixed_noise"]
        log.info("resumed from %s at iteration %d", cfg.resume, start)
    fixed_z = fixed_z.to(device)
    evaluator = evaluate.Evaluator(cfg.eval, data, device, cfg.loss.name, cfg.prior, cfg.z_dim, seed=cfg.seed)
    best_tag = evaluate.best_metric(cfg.eval.best_by, data)
    best_value = state.get("best_value") if state is not None else None
    dirac = cfg.arch.name == "dirac"
    if dirac:  # (theta, psi) after every iteration, kept on the device
        trajectory = torch.empty(cfg.steps - start + 1, 2, device=device)
        trajectory[0] = models.dirac_point(gan.G, gan.D)
    log.info("%s | G %s params, D %s params | %s | run dir %s", " ".join(f"{k}={v}" for k, v in _hparams(cfg).items()),
             f"{models.count_parameters(gan.G):,}", f"{models.count_parameters(gan.D):,}", device, run_dir)

    monitor = Monitor(run_dir, total=cfg.steps, start=start, console=console, theory=data.has_density)
    for name, text in evaluator.protocol().items():
        log.info("protocol (%s): %s", name, text)
    config_plain = OmegaConf.to_container(cfg, resolve=True)
    scheduled = optim.has_schedule(cfg.optimizer)
    opt_cfg = SimpleNamespace(**OmegaConf.to_container(cfg.optimizer))  # read every step when scheduled
    acc_d = torch.zeros(len(STATS_D), device=device)
    acc_g = torch.zeros(len(STATS_G), device=device)
    n_d = n_g = 0
    last: Dict[str, float] = {}
    last_eval: Dict[str, float] = {}
    t_start = t_window = time.perf_counter()
    step_window = start
    aside = aside_window = 0.0  # seconds spent on samples, evaluation and checkpoints (not training)
    warned_dead = False
    # plain locals for the loop: OmegaConf attribute access costs microseconds every time
    m, k, steps, simultaneous = cfg.batch_size, cfg.k, cfg.steps, cfg.updates == "simultaneous"
    log_every, sample_every, eval_every, ckpt_every = cfg.log_every, cfg.sample_every, cfg.eval_every, cfg.ckpt_every

    def save(it: int, name: str = "last.pt") -> None:
        checkpoint.save(run_dir / "checkpoints" / name, G=gan.G, D=gan.D, opt_G=gan.opt_G, opt_D=gan.opt_D,
                        step=it, d_updates=it * cfg.k, g_updates=it, config=config_plain, fixed_noise=fixed_z,
                        best_value=best_value)

    try:
        for step in range(start, steps):
            if scheduled:
                optim.apply_schedule(opt_cfg, step, gan.opt_G, gan.opt_D)
            if simultaneous:
                stats_d, real, fake, stats_g = gan.simultaneous_step(m)
                acc_d += stats_d
            else:
                for _ in range(k):
                    stats_d, real, fake = gan.d_step(m)
                    acc_d += stats_d
                stats_g = gan.g_step(m)
            acc_g += stats_g
            n_d += 1 if simultaneous else k
            n_g += 1
            it = step + 1
            if dirac:
                trajectory[it - start] = models.dirac_point(gan.G, gan.D)
            if it % log_every == 0 or it == steps:
                window = [acc_d / n_d, acc_g / n_g] + ([trajectory[it - start].norm().view(1)] if dirac else [])
                values = torch.cat(window).tolist()  # the one host sync per window
                now = time.perf_counter()
                last = dict(zip(STATS_D + STATS_G + (("theory/distance",) if dirac else ()), values))
                last["perf/steps_per_s"] = (it - step_window) / max(now - t_window - aside_window, 1e-9)
                if scheduled:
                    last["optim/lr"] = optim.lr_at(opt_cfg, step)
                    last["optim/momentum"] = optim.momentum_at(opt_cfg, step)
                monitor.log_window(it, last, {"D/real": real, "D/fake": fake})
                if not all(math.isfinite(v) for v in values):
                    raise UserError(f"training diverged at iteration {it}: a loss or statistic is not finite "
                                    f"({', '.join(k for k, v in last.items() if not math.isfinite(v))}); try a smaller optimizer.lr")
                if not warned_dead and not gan.pair.critic and last["D/fake_mean"] < 0.01 and last["D/real_mean"] > 0.99:
                    warned_dead = True
                    monitor.warn(f"iteration {it}: D rejects nearly every fake (D(G(z)) = {last['D/fake_mean']:.4f}); "
                                 f"with loss={cfg.loss.name} G's gradient may vanish: watch grad/G")
                acc_d.zero_()
                acc_g.zero_()
                n_d = n_g = 0
                t_window, step_window, aside_window = now, it, 0.0
            t_aside = time.perf_counter()
            if it % sample_every == 0 or it == steps:
                monitor.samples(it, gan.sample(fixed_z), data)
                if dirac:
                    monitor.trajectory(it, trajectory[: it - start + 1], start)
            if it % eval_every == 0 or it == steps:
                monitor.phase("eval")
                last_eval, curves = evaluator.run(gan.G, gan.D)
                monitor.log_eval(it, last_eval, curves)
                monitor.phase("train")
                if best_tag in last_eval and evaluate.is_better(best_tag, last_eval[best_tag], best_value):
                    best_value = last_eval[best_tag]
                    save(it, "best.pt")
            if it % ckpt_every == 0 or it == steps:
                save(it)
            spent = time.perf_counter() - t_aside
            aside, aside_window = aside + spent, aside_window + spent
            monitor.advance(it)
        elapsed = time.perf_counter() - t_start
        metrics: Dict[str, float] = {
            "steps": cfg.steps, "d_updates": cfg.steps * (1 if cfg.updates == "simultaneous" else cfg.k),
            "g_updates": cfg.steps, **{k: v for k, v in last.items() if k != "perf/steps_per_s"}, **last_eval,
            "perf/steps_per_s": (cfg.steps - start) / max(elapsed - aside, 1e-9), "perf/aside_s": aside,
            "wall_s": elapsed,
        }
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        monitor.finish(_hparams(cfg), metrics)
        return metrics
    finally:
        monitor.close()


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
    from . import cli

    register_configs()
    try:
        cli.precheck(sys.argv[1:], config_dir())
    except UserError as err:
        fail(err)
    _hydra_main()


if __name__ == "__main__":
    main()
