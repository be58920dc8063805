"""Algorithm 1's updates (:class:`GAN`: a D step, a G step, the authors' simultaneous step) and their
statistics (:class:`Stats`: summed on the device until the log window is read, one host sync)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Dict, NamedTuple, Optional

import torch

from gan_cli import data as datasets
from gan_cli.game import ema as averaging
from gan_cli.game import losses, models, optim
from gan_cli.runs import distributed


def reads_jointly(D: torch.nn.Module) -> bool:
    """Whether a D update may read real and generated examples in one call (larger matrix products): unless D's
    output for one example depends on the others of its batch (batch norm)."""
    return not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in D.modules())


class DStep(NamedTuple):
    """What one D update reports: (6,) values in the order of Stats.D_TAGS, on the device; D's scores of x and G(z)."""

    values: torch.Tensor
    real: torch.Tensor
    fake: torch.Tensor


class GAN:
    """G, D, their optimizers and the loss; one method per kind of update. The updates read minibatches along
    dimension ``sample_dim``: 0 here; 1 in a population (gan_cli.game.population), whose members stack along 0 and
    whose losses and statistics are then one per member."""

    sample_dim = 0

    def __init__(self, cfg, data: datasets.Data, device: torch.device):
        self.data, self.device = data, device
        self.nets = models.build(cfg.arch, data, cfg.z_dim, cfg.pack).to(device)
        self.G, self.D = self.nets
        # the run's own random stream (minibatches, noise, dropout masks, the penalty's mixing): on the CPU, the
        # global generator's state after the networks were initialised from cfg.seed; on a GPU, seeded by cfg.seed
        self.gen = torch.Generator(device)
        if device.type == "cpu":
            self.gen.set_state(torch.get_rng_state())
        else:
            self.gen.manual_seed(cfg.seed)
        models.draw_with(self.D, self.gen)
        # convolutions on a GPU: channels-last layout (the tensor cores' own)
        self.channels_last = device.type == "cuda" and any(
            isinstance(m, torch.nn.modules.conv._ConvNd) for net in self.nets for m in net.modules())
        for net in self.nets if self.channels_last else ():
            net.to(memory_format=torch.channels_last)
        # under torchrun: the forward passes whose backward averages gradients over the ranks (DDP)
        self.G_ddp, self.D_ddp = distributed.wrap(self.G, device), distributed.wrap(self.D, device)
        self.opt_G, self.opt_D = (optim.build(cfg.optimizer, net.parameters(), device, net=name)
                                  for name, net in (("G", self.G), ("D", self.D)))
        self.loss = losses.get(cfg.loss)
        self.ema = averaging.build(cfg.ema, self.G)  # the moving average of G (None: ema.decay=null)
        self.prior, self.z_dim, self.pack = cfg.prior, cfg.z_dim, cfg.pack  # an update of m examples draws pack x m
        self.joint, self.bf16 = reads_jointly(self.D), cfg.precision == "bf16"
        # G_train / D_train learn, G_plain / D_plain are plain functions (D's samples, G's loss through a frozen D);
        # with compile=true, their compiled forms
        self.graphs = bool(cfg.compile) and device.type == "cuda"  # CUDA graphs: replayed fixed-shape steps
        modules, forms = (self.G_ddp, self.D_ddp, self.G, self.D), {}  # one form per module object
        for m in modules:
            if id(m) not in forms:
                forms[id(m)] = torch.compile(m, mode="reduce-overhead" if self.graphs else None) if cfg.compile else m
        self.G_train, self.D_train, self.G_plain, self.D_plain = (forms[id(m)] for m in modules)
        self.params = {"G": list(self.G.parameters()), "D": list(self.D.parameters())}  # listed once, read each step

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()

    def _begin(self) -> None:
        if self.graphs:  # a new update: the previous replay's outputs may be reused
            torch.compiler.cudagraph_mark_step_begin()

    def _real(self, n: int) -> torch.Tensor:
        x = self.data.sample(n, self.gen)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def noise(self, m: int) -> torch.Tensor:
        return datasets.noise(self.prior, m, self.z_dim, self.device, self.gen)

    def _d_loss(self, x, fake, a_real, a_fake):
        return self.loss.d_objective(self.D, x, fake, a_real, a_fake, self.gen)

    def _grad_norm(self, params) -> torch.Tensor:
        """Global L2 norm of the gradients (on the device: no sync): the norm of the tensors' norms, as
        torch.nn.utils.get_total_norm's, without its grouping by device and dtype (a small net's step is overhead)."""
        grads = [p.grad for p in params if p.grad is not None]
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else \
            torch.zeros((), device=self.device)

    def _d_stats(self, loss, a_real, a_fake, grad_norm) -> DStep:
        real, fake = self.loss.score(a_real), self.loss.score(a_fake)
        c = 1 if real.shape[-1] > 1 else 0  # the sample std; 0 for a minibatch of one (batch_size=1)
        return DStep(torch.stack([loss.detach(), real.mean(-1), real.std(-1, correction=c), fake.mean(-1),
                                  fake.std(-1, correction=c), grad_norm], -1), real, fake)

    def d_step(self, m: int) -> DStep:
        """One D update on a fresh real minibatch and fresh noise; G is frozen (no graph through it)."""
        self._begin()
        x, z = self._real(m * self.pack), self.noise(m * self.pack)
        with torch.no_grad(), self.autocast():
            fake = self.G_plain(z).to(x.dtype)
        with self.autocast():
            if self.joint:
                n = x.shape[self.sample_dim] // self.pack
                a_real, a_fake = self.D_train(torch.cat([x, fake], self.sample_dim)).split([n, n], -1)
            else:
                a_real, a_fake = self.D_train(x), self.D_train(fake)
        a_real, a_fake = losses.wide(a_real), losses.wide(a_fake)
        loss = self._d_loss(x, fake, a_real, a_fake)
        self.opt_D.zero_grad(set_to_none=True)
        loss.sum().backward()  # a population's: the sum of its members' (each member's gradient its own)
        grad_norm = self._grad_norm(self.params["D"])
        self.opt_D.step()
        return self._d_stats(loss, a_real, a_fake, grad_norm)

    def g_step(self, m: int) -> torch.Tensor:
        """One G update on fresh noise; D is frozen (its parameters take no gradient)."""
        self._begin()
        for p in self.params["D"]:
            p.requires_grad_(False)
        with self.autocast():
            a_fake = self.D_plain(self.G_train(self.noise(m * self.pack)))
        loss = self.loss.g(losses.wide(a_fake))
        self.opt_G.zero_grad(set_to_none=True)
        loss.sum().backward()
        grad_norm = self._grad_norm(self.params["G"])
        self.opt_G.step()
        for p in self.params["D"]:
            p.requires_grad_(True)
        return torch.stack([loss.detach(), grad_norm], -1)

    def simultaneous_step(self, m: int):
        """The authors' code: both gradients at the same parameters on ONE minibatch, both stepped."""
        self._begin()
        x, z = self._real(m * self.pack), self.noise(m * self.pack)
        with self.autocast():
            fake = self.G_plain(z)
            a_real, a_fake = self.D_plain(x), self.D_plain(fake)
        fake, a_real, a_fake = fake.to(x.dtype), losses.wide(a_real), losses.wide(a_fake)
        loss_d = self._d_loss(x, fake, a_real, a_fake)
        loss_g = self.loss.g(a_fake)
        d_params, g_params = self.params["D"], self.params["G"]
        d_grads = torch.autograd.grad(loss_d.sum(), d_params, retain_graph=True)
        g_grads = torch.autograd.grad(loss_g.sum(), g_params)
        for p, g in zip(d_params + g_params, d_grads + g_grads):
            p.grad = g
        distributed.average_gradients(d_params + g_params)  # autograd.grad bypasses DDP: average here (torchrun)
        d_norm, g_norm = self._grad_norm(d_params), self._grad_norm(g_params)
        self.opt_D.step()
        self.opt_G.step()
        return self._d_stats(loss_d, a_real, a_fake, d_norm), torch.stack([loss_g.detach(), g_norm], -1)

    @torch.no_grad()
    def finite(self) -> bool:
        """Every parameter of G and D is finite (one host sync: checked before a checkpoint is written)."""
        return bool(torch.stack([p.isfinite().all() for net in self.nets for p in net.parameters()]).all())

    @torch.no_grad()
    def sample(self, z: torch.Tensor, raw: bool = False) -> torch.Tensor:
        """G(z) in eval mode: the moving average of G (once started) unless ``raw``, as the evaluation reads it."""
        G = self.G if self.ema is None or raw else self.ema.generator()
        with models.evaluating(G):
            return G(z)


class Stats:
    """Running sums of every update's statistics, on the device (``read()``: a log window's one host sync); for a
    game whose state is a point, its path."""

    D_TAGS = ("game/loss_D", "game/D_real", "spread/D_real_std", "game/D_fake", "spread/D_fake_std", "grad/D")
    G_TAGS = ("game/loss_G", "grad/G")

    def __init__(self, nets: models.Nets, device: torch.device, iterations: int, members: int = 0):
        self.nets, lead = nets, ((members,) if members else ())  # a population's: a row per member
        self.d, self.g = (torch.zeros(*lead, len(tags), device=device) for tags in (self.D_TAGS, self.G_TAGS))
        self.n_d = self.n_g = 0
        self.i, self.last_d, self._path = 0, None, None  # iterations since the start; the last D update
        if nets.has_point:  # its state after every iteration
            self._path = torch.empty(iterations + 1, *lead, 2, device=device)
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
        return None if self._path is None else self._path[: self.i + 1]

    def histograms(self) -> Dict[str, torch.Tensor]:
        return {"spread/D_real": self.last_d.real, "spread/D_fake": self.last_d.fake}

    def read(self, flush: bool = True):
        """The window's means by tag (and the point's distance to (0, 0)), a dict per member in a population; with
        ``flush``, start a new window."""
        parts = [self.d / self.n_d, self.g / self.n_g]
        tags = self.D_TAGS + self.G_TAGS
        if self._path is not None:
            parts.append(self._path[self.i].norm(dim=-1, keepdim=True))
            tags += ("eval/distance",)
        values = distributed.mean(torch.cat(parts, -1)).tolist()  # the one host sync per window (all ranks' mean)
        if flush:
            self.d.zero_()
            self.g.zero_()
            self.n_d = self.n_g = 0
        return [dict(zip(tags, row)) for row in values] if self.d.dim() > 1 else dict(zip(tags, values))

    def nonfinite(self) -> list:
        """The tags whose window sums are not finite (a list per member in a population)."""
        ok = torch.cat([self.d, self.g], -1).isfinite().view(-1, len(self.D_TAGS + self.G_TAGS)).tolist()
        rows = [[tag for tag, fine in zip(self.D_TAGS + self.G_TAGS, row) if not fine] for row in ok]
        return rows if self.d.dim() > 1 else rows[0]

    def pending(self) -> Dict[str, Any]:  # the window not yet logged, for a checkpoint
        return {"d": self.d.detach().cpu().clone(), "g": self.g.detach().cpu().clone(),
                "n_d": self.n_d, "n_g": self.n_g}

    def restore(self, window: Optional[Dict[str, Any]]) -> None:
        """Continue a checkpoint's window (a resumed run logs the same windows)."""
        if window:
            self.d.copy_(window["d"])
            self.g.copy_(window["g"])
            self.n_d, self.n_g = int(window["n_d"]), int(window["n_g"])
