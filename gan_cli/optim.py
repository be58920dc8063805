"""One optimizer per network, and the paper's schedules (lr decay, momentum ramp).

Each network has its own learning rate when ``optimizer.d_lr`` / ``optimizer.g_lr`` are set (the
two time-scale update rule of Heusel et al. 2017, TTUR); unset, both take ``optimizer.lr``.

Schedules are pure functions of the iteration, so a resumed run sets exactly the values an
uninterrupted one would have had. A new optimizer is a builder here, one entry in OPTIMIZERS and a
YAML file in conf/optimizer/.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Dict

import torch
from omegaconf import OmegaConf

from .config import choose


def eager(cls: type) -> type:
    """``cls`` (a torch optimizer) with the same method bodies, minus torch's compiler guards.

    torch wraps step, zero_grad, add_param_group, state_dict and load_state_dict in guards that keep
    torch.compile from tracing them, and those import its compiler stack (torch._dynamo: about 2 s
    on first use, paid by every process). A run that compiles nothing needs none of it. The subclass
    calls the unwrapped bodies (``step`` under torch.no_grad, as the guard runs a non-differentiable
    optimizer); its updates, state and state_dict are the same (tests/test_optim.py checks).
    """
    raw_step = inspect.unwrap(cls.step)

    def step(self, closure=None):
        with torch.no_grad():
            return raw_step(self, closure)

    methods = {name: inspect.unwrap(getattr(cls, name))
               for name in ("zero_grad", "add_param_group", "state_dict", "load_state_dict")}
    return type(cls.__name__, (cls,), {**methods, "step": step, "__module__": __name__, "__doc__": cls.__doc__})


SGD, Adam = eager(torch.optim.SGD), eager(torch.optim.Adam)


def _sgd(cfg, params, fused, lr) -> torch.optim.Optimizer:
    return SGD(params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay,
               fused=fused)


def _adam(cfg, params, fused, lr) -> torch.optim.Optimizer:
    return Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay, fused=fused)


OPTIMIZERS = {"sgd": _sgd, "adam": _adam}  # the choices of optimizer=


def check(cfg) -> None:
    """The optimizer exists (an unknown name is a UserError that lists the choices)."""
    choose(OPTIMIZERS, cfg.name, "optimizer", "an optimizer")


def fused(device: torch.device) -> bool | None:
    """Whether the optimizers use torch's fused kernels: on a GPU (one kernel for every parameter's
    update); on the CPU torch's default (per-parameter loops measured as fast here)."""
    return True if device.type == "cuda" else None


NETS = ("D", "G")


def base_lr(cfg, net: str) -> float:
    """The learning rate of network ``net`` ("D" or "G"): optimizer.d_lr / g_lr, or optimizer.lr when unset."""
    own = cfg.d_lr if net == "D" else cfg.g_lr
    return cfg.lr if own is None else own


def two_rates(cfg) -> bool:
    """Whether D and G learn at different rates (TTUR)."""
    return base_lr(cfg, "D") != base_lr(cfg, "G")


def build(cfg, params, device: torch.device = torch.device("cpu"), net: str = "D") -> torch.optim.Optimizer:
    """SGD with momentum (the paper) or Adam for network ``net``, from the optimizer config node, fused on a GPU."""
    return choose(OPTIMIZERS, cfg.name, "optimizer", "an optimizer")(cfg, params, fused(device), base_lr(cfg, net))


def lr_at(cfg, step: int, net: str = "D") -> float:
    """The lr of network ``net`` / decay^step, floored at min_lr (the paper: 0.1 / 1.000004^t, floor 1e-6)."""
    lr = base_lr(cfg, net)
    if cfg.lr_decay == 1.0:
        return lr
    return max(lr / cfg.lr_decay**step, cfg.min_lr)


def momentum_at(cfg, step: int) -> float:
    """Momentum ramped linearly from ``momentum`` to ``final_momentum`` over momentum_ramp_steps."""
    if cfg.final_momentum is None or cfg.momentum_ramp_steps == 0:
        return cfg.momentum
    frac = min(step / cfg.momentum_ramp_steps, 1.0)
    return cfg.momentum + frac * (cfg.final_momentum - cfg.momentum)


def apply_schedule(cfg, step: int, opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer) -> None:
    """Set the lr (and SGD momentum) that iteration ``step`` uses; host-side floats, no sync."""
    momentum = momentum_at(cfg, step) if cfg.name == "sgd" else None
    for net, opt in (("G", opt_G), ("D", opt_D)):
        lr = lr_at(cfg, step, net)
        for group in opt.param_groups:
            group["lr"] = lr
            if momentum is not None:
                group["momentum"] = momentum


def has_schedule(cfg) -> bool:
    return cfg.lr_decay != 1.0 or (cfg.name == "sgd" and cfg.final_momentum is not None and cfg.momentum_ramp_steps > 0)


class Schedule:
    """The schedule of one run, read every iteration from plain values (OmegaConf access is slow)."""

    def __init__(self, cfg):
        self.cfg = SimpleNamespace(**OmegaConf.to_container(cfg))
        self.active = has_schedule(self.cfg)

    def apply(self, step: int, opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer) -> None:
        if self.active:
            apply_schedule(self.cfg, step, opt_G, opt_D)

    def values(self, step: int) -> Dict[str, float]:
        """The optim/ tags at iteration ``step`` (none when no schedule is on): optim/lr, or optim/lr_D and
        optim/lr_G when they differ (TTUR); optim/momentum."""
        if not self.active:
            return {}
        rates = ({f"optim/lr_{net}": lr_at(self.cfg, step, net) for net in NETS} if two_rates(self.cfg)
                 else {"optim/lr": lr_at(self.cfg, step)})
        return {**rates, "optim/momentum": momentum_at(self.cfg, step)}
