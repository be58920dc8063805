"""Populations: runs that differ only in their seed and optimizer numbers (learning rates, SGD momentum, Adam betas)
or their gradient penalty's weight, trained together in one process.

Each member is a whole run (its own directory, monitor, evaluation and checkpoints: a :class:`loop.Bookkeeping`
around a :class:`GAN` of its own). Their networks are stacked along a leading dimension and :class:`Population`
updates them with GAN's own update methods (the same Algorithm 1, losses and statistics, one per member), calling
the networks through torch.func.vmap. Member i draws its minibatches, noise, dropout masks and penalty mixing from
its own generator in the order its solo run does, so it follows the solo run with seed i to float rounding.
Before a member's bookkeeping reads its networks (samples, evaluation, checkpoints), :meth:`Population.export`
writes the member's slice back into its own modules and optimizers.
"""

from __future__ import annotations

import copy
import logging
import time
from contextlib import ExitStack, closing
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, Dict, Iterable, List, Optional

import torch
from rich import get_console
from torch.func import functional_call, vmap

from gan_cli.config import UserError
from gan_cli.game import models, optim
from gan_cli.game.updates import GAN, Stats
from gan_cli.runs.monitor import WarningsTo, logging_to, progress_bar, split_handlers

log = logging.getLogger("gan_cli")


def _stack(tensors) -> torch.Tensor:
    return torch.stack([t.detach() for t in tensors])


class _Linear(torch.nn.Linear):
    """nn.Linear with its bias added in place. Under vmap, F.linear is a batched product and an out-of-place sum:
    a second (P, n, out) tensor written to fresh memory. The values are the same (with one output: _Score's)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.out_features == 1 and x.dim() == 2:
            return _Score.apply(x, self.weight, self.bias)
        y = x @ self.weight.t()
        return y if self.bias is None else y.add_(self.bias)


class _Score(torch.autograd.Function):
    """A linear layer with one output (x (n, h) -> (n, 1)) whose products, batched over the members, are row vectors
    times matrices: as autograd and vmap batch x @ w.t(), the forward and weight-gradient products are matrices
    times a column, which ran 2-12x slower here (a figure1 population of 64: about 12 % more member-iterations per
    second). The values are the same to float rounding; differentiable twice (a gradient penalty)."""

    @staticmethod
    def forward(x: torch.Tensor, w: torch.Tensor, b: Optional[torch.Tensor]) -> torch.Tensor:
        y = (w @ x.mT).mT
        return y if b is None else y.add_(b.unsqueeze(-2))

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, w, b = inputs
        ctx.save_for_backward(x, w)
        ctx.bias = b is not None

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        x, w = ctx.saved_tensors
        return g * w, g.mT @ x, g.sum(-2) if ctx.bias else None

    @staticmethod
    def vmap(info, in_dims, *args):
        """Under vmap, the same on the stacked tensors (members first)."""
        return _Score.apply(*(None if t is None else t.expand(info.batch_size, *t.shape) if d is None
                              else t.movedim(d, 0) for t, d in zip(args, in_dims))), 0


def _in_place(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with its linear layers' biases added in place, and each ReLU in place where, in a Sequential, it reads
    the output of a layer whose backward does not need it (a population's stacked activations are megabytes: a
    figure1 step of 64 members took about 1.17 times as long without). Same parameters, same values (a one-output layer:
    to float rounding)."""
    nn = torch.nn
    fresh = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm1d, nn.BatchNorm2d)  # outputs their backward skips
    for m in net.modules():
        if type(m) is nn.Linear:
            m.__class__ = _Linear
        if isinstance(m, nn.Sequential):
            for before, act in zip(m, list(m)[1:]):
                if isinstance(act, (nn.ReLU, nn.LeakyReLU)) and isinstance(before, fresh):
                    act.inplace = True
    return net


class Stacked:
    """P copies of one network: its parameters and buffers stacked along dimension 0, called on (P, n, ...) inputs
    through vmap; in training mode each member's dropout masks come from its own generator."""

    def __init__(self, nets: List[torch.nn.Module], gens: List[torch.Generator]):
        self.template, self.gens, self.training = _in_place(copy.deepcopy(nets[0])), gens, True
        named = [dict(n.named_parameters()) for n in nets]
        self.params = {k: _stack(p[k] for p in named).requires_grad_() for k in named[0]}
        bufs = [dict(n.named_buffers()) for n in nets]
        self.buffers = {k: _stack(b[k] for b in bufs) for k in bufs[0]}
        self.layouts: Dict[tuple, list] = {}  # the dropout layers a forward pass meets, by input shape
        t = self.template  # a tensor at two places in it (functional_call unties them, at a cost, every call)
        self.tied = any(len(list(f(remove_duplicate=False))) > len(list(f())) for f in (t.named_parameters,
                                                                                         t.named_buffers))
        self._call = vmap(self._one)

    def _one(self, params, buffers, x, masks):
        it = iter(masks)
        with models.supplying(lambda module, h: h * next(it)):
            return functional_call(self.template, (params, buffers), (x,), tie_weights=self.tied)

    def _layout(self, shape: tuple) -> list:
        """(dropout layer, input shape) of each mask a member's forward pass draws, in its order."""
        if shape not in self.layouts:
            met: list = []
            with torch.no_grad(), models.supplying(lambda module, h: met.append((module, h.shape)) or h):
                probe = copy.deepcopy(self.template).train()
                models.draw_with(probe, torch.Generator())
                probe(torch.zeros(shape, device=next(iter(self.params.values())).device))
            names = {id(m): k for k, m in probe.named_modules()}
            own = dict(self.template.named_modules())
            self.layouts[shape] = [(own[names[id(m)]], s) for m, s in met]
        return self.layouts[shape]

    def masks(self, x: torch.Tensor) -> tuple:
        """Each member's masks for a forward pass on its slice of ``x``, drawn from its generator; stacked."""
        layout = self._layout(tuple(x.shape[1:])) if self.training else []
        drawn = [[m.mask(s, x.device, g, x.dtype) for m, s in layout] for g in self.gens]
        return tuple(torch.stack(per_layer) for per_layer in zip(*drawn))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.template.training != self.training:  # (train() walks every module: not at every call)
            self.template.train(self.training)
        return self._call(self.params, self.buffers, x, self.masks(x))

    def parameters(self) -> List[torch.Tensor]:
        return list(self.params.values())

    def named_parameters(self):
        return self.params.items()

    def train(self, mode: bool = True) -> "Stacked":
        self.training = mode
        return self

    def eval(self) -> "Stacked":
        return self.train(False)

    @torch.no_grad()
    def export(self, i: int, net: torch.nn.Module) -> None:
        """Member i's parameters and buffers into ``net`` (its own module)."""
        for source, target in ((self.params, dict(net.named_parameters())), (self.buffers, dict(net.named_buffers()))):
            for k, t in target.items():
                t.copy_(source[k][i])


class StackedOptimizer:
    """torch's SGD (momentum, Nesterov, weight decay) or Adam over stacked parameters: the members that share a
    learning rate are stepped by one call with it of torch's fused kernel, as their solo runs step (a member's
    numbers are its solo run's). SGD's momentum (which the schedule may ramp) and Adam's betas are one number, or
    one per member (then torch's arithmetic element-wise, to float rounding)."""

    def __init__(self, cfgs: list, params: List[torch.Tensor], opts: List[torch.optim.Optimizer], lrs: List[float],
                 momenta: List[float]):
        cfg = cfgs[0]
        self.params, self.name, self.wd = params, cfg.name, cfg.weight_decay
        self.nesterov = cfg.name == "sgd" and cfg.nesterov
        betas = list(dict.fromkeys((c.beta1, c.beta2) for c in cfgs)) if cfg.name == "adam" else [None]
        self.betas = betas[0] if len(betas) == 1 else torch.tensor(  # each member's (P, 2), made on the device once
            [(c.beta1, c.beta2) for c in cfgs], dtype=torch.float64, device=params[0].device)
        self.step_count, self.groups, self._t, self._indices = 0, [], None, {}  # _indices: (members) -> on the device
        self.set_lr(lrs)
        if cfg.name != "sgd" or len(set(momenta)) == 1:  # SGD's momentum: one number, or each member's, (P,)
            self.momentum = momenta[0] if cfg.name == "sgd" else 0.0
        else:
            self._start = torch.tensor(momenta, dtype=torch.float64, device=params[0].device)
            self.momentum = self._start.to(params[0].dtype)
        self.state: List[Dict[str, torch.Tensor]] = [{} for _ in params]
        for k, state in enumerate(self.state):  # resumed members' optimizer states
            theirs = [o.state.get(o.param_groups[0]["params"][k], {}) for o in opts]
            for key in ("momentum_buffer", "exp_avg", "exp_avg_sq"):
                if all(t.get(key) is not None for t in theirs):
                    state[key] = _stack(t[key] for t in theirs)
            if "step" in theirs[0]:
                self.step_count = int(theirs[0]["step"])

    def set_lr(self, lrs: List[float]) -> None:
        """Each member's learning rate: members grouped by it (one group: no indexing)."""
        members: Dict[float, List[int]] = {}
        for i, lr in enumerate(lrs):
            members.setdefault(lr, []).append(i)
        if len(members) == 1:
            self.groups = [(lrs[0], None)]
            return
        for ix in map(tuple, members.values()):  # on the device once, not every iteration (no copy, no sync)
            if ix not in self._indices:
                self._indices[ix] = torch.tensor(ix, device=self.params[0].device)
        self.groups = [(lr, self._indices[tuple(ix)]) for lr, ix in members.items()]

    def ramp(self, step: int, cfg) -> None:
        """SGD's momentum at iteration ``step`` (a ramp's: optim.momentum_at's arithmetic, for members of their own
        in float64 on the device, so that nothing is copied to it each iteration)."""
        if not torch.is_tensor(self.momentum):
            self.momentum = optim.momentum_at(cfg, step)
            return
        done = min(step / cfg.momentum_ramp_steps, 1.0)
        self.momentum = (self._start + done * (cfg.final_momentum - self._start)).to(self.params[0].dtype)

    def _each(self, p: torch.Tensor, update) -> None:
        """``update(part, idx, lr)`` in place on each group's slice of ``p``."""
        for lr, idx in self.groups:
            if idx is None:
                update(p, slice(None), lr)
            else:
                part = p[idx]
                update(part, idx, lr)
                p.index_copy_(0, idx, part)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        for p, state in zip(self.params, self.state):
            if p.grad is None:
                continue
            if self.name == "adam" and "exp_avg" not in state:
                state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(p), torch.zeros_like(p)
            if not torch.is_tensor(self.betas if self.name == "adam" else self.momentum):
                self._fused(p, state)
                continue
            grad = p.grad if self.wd == 0 else p.grad.add(p, alpha=self.wd)
            if self.name == "adam":
                self._adam(p, grad, state)
                continue
            m = self.momentum.view(-1, *[1] * (p.dim() - 1))  # each member's, along dimension 0
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.clone()
            else:
                buf.mul_(m).add_(grad)
            step = grad.add(buf * m) if self.nesterov else buf
            self._each(p, lambda part, idx, lr, step=step: part.add_(step[idx], alpha=-lr))

    def _fused(self, p: torch.Tensor, state: Dict[str, torch.Tensor]) -> None:
        """One member-wide number each: torch's fused kernel, a solo run's (optim.build) arithmetic element for
        element, in one pass; once per learning-rate group."""
        grad = p.grad.contiguous()  # the kernel reads memory in order, whatever the strides (vmap's grads)
        if self.name == "adam":
            if self._t is None or self._t.device != p.device:  # the step, on the device (filled there: no copy)
                self._t = torch.zeros((), device=p.device)
            self._t.fill_(self.step_count)
            kept, first = [state["exp_avg"], state["exp_avg_sq"]], False
        else:
            first = self.momentum != 0 and "momentum_buffer" not in state
            if first:
                state["momentum_buffer"] = torch.empty_like(p)
            kept = [state["momentum_buffer"]] if self.momentum != 0 else []
        for lr, idx in self.groups:
            own = [p, grad, *kept] if idx is None else [x[idx] for x in (p, grad, *kept)]
            if self.name == "adam":
                torch._fused_adam_([own[0]], [own[1]], [own[2]], [own[3]], [], [self._t], lr=lr, beta1=self.betas[0],
                                   beta2=self.betas[1], weight_decay=self.wd, eps=1e-8, amsgrad=False, maximize=False)
            else:
                torch._fused_sgd_([own[0]], [own[1]], own[2:], weight_decay=self.wd, momentum=self.momentum, lr=lr,
                                  dampening=0.0, nesterov=self.nesterov, maximize=False, is_first_step=first)
            if idx is not None:
                for x, part in zip((p, *kept), (own[0], *own[2:])):
                    x.index_copy_(0, idx, part)

    def _adam(self, p: torch.Tensor, grad: torch.Tensor, state: Dict[str, torch.Tensor]) -> None:
        """Each member's betas, along dimension 0: torch's numbers, worked out in float64."""
        m, v = state["exp_avg"], state["exp_avg_sq"]

        def col(x: torch.Tensor) -> torch.Tensor:
            return x.to(p.dtype).view(-1, *[1] * (p.dim() - 1))

        beta1, beta2 = self.betas.unbind(1)
        m.lerp_(grad, col(1 - beta1))
        v.mul_(col(beta2)).add_(grad * col(1 - beta2) * grad)
        denom = (v.sqrt() / col((1 - beta2 ** self.step_count).sqrt())).add_(1e-8)
        correction = 1 - beta1 ** self.step_count
        self._each(p, lambda part, idx, lr: part.add_(m[idx] / denom[idx] * col(-lr / correction)[idx]))

    def export(self, i: int, opt: torch.optim.Optimizer) -> None:
        """Member i's optimizer state into its own torch optimizer (what its checkpoint saves)."""
        for k, p in enumerate(opt.param_groups[0]["params"]):
            state = {key: t[i].clone() for key, t in self.state[k].items()}
            if state:
                opt.state[p] = {**state, "step": torch.tensor(float(self.step_count))} if self.name == "adam" else state


class StackedEMA:
    """The moving average of every member's G (gan_cli.game.ema.EMA's arithmetic on the stacked tensors)."""

    def __init__(self, G: Stacked, emas: list):
        self.decay, self.start, self.emas = emas[0].decay, emas[0].start, emas
        self.source = list(G.params.values()) + list(G.buffers.values())
        self.averaged = [dict(e.model.module.named_parameters()) | dict(e.model.module.named_buffers()) for e in emas]
        self.names, self.count = list(G.params) + list(G.buffers), int(emas[0].model.n_averaged)
        self.tensors = [_stack(a[k] for a in self.averaged) for k in self.names]

    @torch.no_grad()
    def update(self, it: int) -> None:
        if it <= self.start:
            return
        for mine, theirs in zip(self.tensors, self.source):
            if self.count == 0 or not mine.is_floating_point():
                mine.copy_(theirs)
            else:
                mine.lerp_(theirs, 1 - self.decay)
        self.count += 1

    @torch.no_grad()
    def export(self, i: int) -> None:
        for k, t in zip(self.names, self.tensors):
            self.averaged[i][k].copy_(t[i])
        self.emas[i].model.n_averaged.fill_(self.count)


def refuse(cfg) -> None:
    """What a population cannot train, in one line naming the setting."""
    from gan_cli.runs import distributed
    for bad, why in ((cfg.compile, "compile=true"), (cfg.precision != "fp32", f"precision={cfg.precision}"),
                     (distributed.active(), "torchrun"),
                     (cfg.dataset.get("in_memory") == "false", "dataset.in_memory=false")):
        if bad:
            raise UserError(f"{why} is not supported in a population (hydra/launcher=population); run it with the "
                            "basic launcher")


class Population(GAN):
    """The members' GANs as one: GAN's update methods on stacked networks, each member's draws its own."""

    sample_dim = 1

    def __init__(self, members: List[GAN], cfgs: list):
        one = members[0]
        self.data, self.device, self.loss, self.prior = one.data, one.device, one.loss, one.prior
        weights = [m.loss.penalty_weight for m in members]
        if len(set(weights)) > 1 and 0 in weights:  # a run without the penalty draws no mixing (the launcher splits)
            raise UserError("members with and without a gradient penalty (loss.gp_weight=0) cannot train together")
        if len(set(weights)) > 1:  # each member's own
            dtype = next(one.D.parameters()).dtype
            self.loss = one.loss._replace(penalty_weight=torch.tensor(weights, dtype=dtype, device=one.device))
        self.members, self.z_dim, self.pack, self.joint = members, one.z_dim, one.pack, one.joint
        self.bf16 = self.graphs = self.channels_last = False
        self.gen = [m.gen for m in members]  # a list: each member draws from its own
        self.G, self.D = Stacked([m.G for m in members], self.gen), Stacked([m.D for m in members], self.gen)
        self.G_train, self.G_plain, self.D_train, self.D_plain = self.G, self.G, self.D, self.D
        self.params = {"G": self.G.parameters(), "D": self.D.parameters()}
        opt = [c.optimizer for c in cfgs]
        momenta = [optim.momentum_at(o, 0) if o.name == "sgd" else 0.0 for o in opt]
        self.opt_G, self.opt_D = (StackedOptimizer(opt, net.parameters(), [getattr(m, f"opt_{n}") for m in members],
                                                   [optim.base_lr(o, n) for o in opt], momenta)
                                  for n, net in (("G", self.G), ("D", self.D)))
        self.schedules = [optim.Schedule(o) for o in opt]
        self.ema = None if one.ema is None else StackedEMA(self.G, [m.ema for m in members])
        self.nets = models.Nets(self.G, self.D, None if one.nets._point is None else vmap(one.nets._point))

    def _grad_norm(self, params) -> torch.Tensor:
        """Each member's global L2 norm of its gradients, (P,): the norm of its tensors' norms, as torch's."""
        norms = [torch.linalg.vector_norm(p.grad.flatten(1), 2, dim=1) for p in params if p.grad is not None]
        return torch.linalg.vector_norm(torch.stack(norms), 2, dim=0)

    def schedule(self, step: int, *opts) -> None:
        """Each member's learning rates (and SGD momentum) at iteration ``step``, as its schedule says (``opts``: the
        loop's optimizers, which are this population's own)."""
        if not self.schedules[0].active:
            return
        for opt, net in ((self.opt_G, "G"), (self.opt_D, "D")):
            opt.set_lr([optim.lr_at(s.cfg, step, net) for s in self.schedules])
            if self.schedules[0].ramps:
                opt.ramp(step, self.schedules[0].cfg)

    def export(self, members: List[int]) -> None:
        """These members' networks, optimizer states and moving averages, each into its own GAN."""
        for i in members:
            for name in ("G", "D", "opt_G", "opt_D"):
                getattr(self, name).export(i, getattr(self.members[i], name))
            if self.ema is not None:
                self.ema.export(i)

    @torch.no_grad()
    def silence(self, i: int) -> None:
        """A member that diverged: its networks, buffers and optimizer states set to zero, so that it computes
        finite numbers from now on (its run has ended; the others' go on)."""
        for ts in (self.G.params, self.D.params, self.G.buffers, self.D.buffers, *self.opt_G.state, *self.opt_D.state):
            for t in ts.values():
                t[i].zero_()


class MemberStats:
    """Member i's view of the population's :class:`Stats` (what its Bookkeeping reads)."""

    def __init__(self, shared: Stats, i: int):
        self.shared, self.i, self.row = shared, i, None

    n_g = property(lambda self: self.shared.n_g)

    def read(self, flush: bool = True) -> Dict[str, float]:
        return self.row

    def nonfinite(self) -> list:
        return self.shared.nonfinite()[self.i]

    def pending(self) -> Dict[str, Any]:
        window = self.shared.pending()
        return {**window, "d": window["d"][self.i], "g": window["g"][self.i]}

    def histograms(self) -> Dict[str, torch.Tensor]:
        return {tag: t[self.i] for tag, t in self.shared.histograms().items()}

    def path(self) -> Optional[torch.Tensor]:
        path = self.shared.path()
        return None if path is None else path[:, self.i]


class Progress:
    """The population's progress on the console, where its members' logs do not go (each writes its train.log): a
    bar in a terminal, else a line each log window; its rate is member-iterations per second of training."""

    def __init__(self, name: str, total: int, start: int):
        self.name, self.total, self.step = name, total, start
        self.console, self.bar, self.aside, self.t = get_console(), None, 0.0, time.perf_counter()

    def begin(self, live: int) -> None:
        self.t, self.aside = time.perf_counter(), 0.0
        self.began = (self.t, self.step)  # for the time left: the pace so far, asides included
        if self.console.is_terminal:
            self.bar = progress_bar(self.console, "member-it/s")
            self.task = self.bar.add_task(f"population of {live}", total=self.total, completed=self.step, rate="-")
            self.bar.start()

    def window(self, step: int, live: int) -> None:
        now = time.perf_counter()
        rate = (step - self.step) * live / max(now - self.t - self.aside, 1e-9)
        self.t, self.step, self.aside = now, step, 0.0
        if self.bar is not None:
            self.bar.update(self.task, completed=step, description=f"population of {live}", rate=f"{rate:.0f}")
        else:
            left = (now - self.began[0]) / max(step - self.began[1], 1) * (self.total - step)
            log.info("population %s: step %d/%d | %d member%s training | %.0f member-it/s | %s left", self.name, step,
                     self.total, live, "s" * (live != 1), rate, timedelta(seconds=round(left)))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


class PopulationBook:
    """The members' Bookkeeping as one, for the loop: each member's in turn, writing to its own train.log. A member
    that diverges ends as its solo run would (metrics.json: diverged, its last good checkpoint kept); the others go
    on."""

    def __init__(self, population: Population, books: list, stats: Stats, handlers: List[list], lost: type,
                 interrupted: type):
        self.population, self.books, self.stats, self.handlers = population, books, stats, handlers
        self.lost, self.interrupted = lost, interrupted  # the loop's Diverged and Interrupted
        self.live, self.views = list(range(len(books))), [MemberStats(stats, i) for i in range(len(books))]
        for book, view in zip(books, self.views):
            book.stats, book.members = view, len(books)
        self.schedule = SimpleNamespace(apply=population.schedule)  # what the loop calls each iteration
        one = books[0]
        self.steps, self.log_every, self.every = one.steps, one.log_every, one.every
        self.results: Dict[int, Dict[str, float]] = {}
        self.progress = Progress(one.run_dir.name, one.steps, one.state.step)
        self.console = [WarningsTo(h) for h in split_handlers(logging.getLogger().handlers)[1]]

    def _each(self, do, console: bool = True) -> None:
        for i in list(self.live):
            # its log lines into its train.log; its warnings and errors to the console as well
            with logging_to([*self.handlers[i], *(self.console if console else ())]):
                try:
                    do(self.books[i])
                except self.lost as err:
                    log.error("gan-train: %s", err)
                    self.live.remove(i)
                    self.population.silence(i)
        if not self.live:
            raise UserError("every member of the population diverged")

    def _read(self, flush: bool) -> None:
        for view, row in zip(self.views, self.stats.read(flush)):
            view.row = row

    @property
    def monitor(self) -> ExitStack:
        return _entered([*(book.monitor for book in self.books), closing(self.progress)])

    def failing(self) -> ExitStack:
        return _entered(book.failing() for book in self.books)

    def start(self) -> None:
        for book in self.books:  # each member's clock starts with the population's training, as a run's does
            book.monitor.t_start = book.monitor.t_window = time.perf_counter()
        self._aside(lambda book: book.start())
        self.progress.begin(len(self.live))

    def after(self, it: int) -> None:
        last = it == self.steps
        window = it % self.log_every == 0 or last
        if window:
            self._read(flush=it % self.log_every == 0)
        due = last or any(it % every == 0 for every in self.every)  # samples, an evaluation or a checkpoint: aside
        (self._aside if due else self._each)(lambda book: book.after(it))
        if window:
            self.progress.window(it, len(self.live))

    def _aside(self, do) -> None:
        """``do`` for each member after an export: every member's samples, evaluation and checkpoints are time that
        none of them trains, left out of each one's perf/steps_per_s as its own is."""
        before, start = [book.monitor.aside_s for book in self.books], time.perf_counter()
        self.population.export(self.live)
        self._each(do)
        spent = time.perf_counter() - start
        self.progress.aside += spent
        for book, own in zip(self.books, before):
            others = max(spent - (book.monitor.aside_s - own), 0.0)
            book.monitor.aside_s += others
            book.monitor.aside_window += others

    def finish(self) -> Dict[int, Dict[str, float]]:
        self._each(lambda book: self.results.update({self.books.index(book): book.finish()}))
        return self.results

    def interrupt(self, it: int, signum: int, handoff=None):
        if self.stats.n_g:
            self._read(flush=False)
        self.population.export(self.live)
        sweep_dir = self.books[0].run_dir.parent

        def stop(book) -> None:  # in its own train.log, as a run's stop is (the console has the population's line)
            log.warning("gan-train: %s; or its whole population: the same command with hydra.sweep.dir=%s",
                        book.interrupt(it, signum, handoff), sweep_dir)
        self._each(stop, console=False)
        return self.interrupted(signum, it, sweep_dir, handoff)


def _entered(contexts: Iterable) -> ExitStack:
    """The contexts, entered in turn, as one (left in the reverse order)."""
    stack = ExitStack()
    for context in contexts:
        stack.enter_context(context)
    return stack


class PopulationState:
    """The members' checkpoint states, counted together."""

    def __init__(self, states: list):
        self.states = states

    @property
    def step(self) -> int:
        return self.states[0].step

    def count(self, d_updates: int) -> None:
        for state in self.states:
            state.count(d_updates)
