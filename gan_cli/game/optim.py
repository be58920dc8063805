"""One optimizer per network, and the paper's schedules (lr decay, momentum ramp). ``optimizer.d_lr`` / ``g_lr``
give each network its own learning rate (TTUR, Heusel et al. 2017); unset, both take ``optimizer.lr``. Schedules
are pure functions of the iteration: a resumed run sets exactly the values an uninterrupted one would have."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional

import torch
from omegaconf import OmegaConf

from gan_cli.config import MAX_ITERATIONS, Knob, UserError, entry, flag, integer, real, register, share


def eager(cls: type) -> type:
    """``cls`` (a torch optimizer) minus torch's compiler guards, which import torch._dynamo (about 2 s in every
    process); ``step`` runs under torch.no_grad as the guard runs it: the same updates and state (test_optim.py)."""
    step = torch.no_grad()(inspect.unwrap(cls.step))
    methods = {name: inspect.unwrap(getattr(cls, name))
               for name in ("zero_grad", "add_param_group", "state_dict", "load_state_dict")}
    return type(cls.__name__, (cls,), {**methods, "step": step, "__module__": __name__, "__doc__": cls.__doc__})


SGD, Adam = eager(torch.optim.SGD), eager(torch.optim.Adam)


class Optimizer(NamedTuple):
    """A choice of ``optimizer=``: its builder and the knobs it reads beyond the shared ones."""

    build: Callable[..., torch.optim.Optimizer]  # (optimizer config node, parameters, fused, lr) -> optimizer
    about: str = ""
    knobs: Mapping[str, Knob] = {}
    check: Optional[Callable[[Any], None]] = None  # the run config -> UserError where its knobs do not fit together


share("optimizer", {
    "lr": real(0.1, 0, 10, "the learning rate of both networks", lo_open=True),
    "d_lr": real(None, 0, 10, "D's own learning rate", lo_open=True, null="optimizer.lr"),
    "g_lr": real(None, 0, 10, "G's own learning rate", lo_open=True, null="optimizer.lr"),
    "lr_decay": real(1.0, 1, 2, "lr is divided by this every iteration (the paper: 1.000004)"),
    "min_lr": real(1e-6, 0, 10, "floor of the decayed lr"),
    "weight_decay": real(0.0, 0, 10, "L2 weight decay"),
})


def _nesterov_needs_momentum(cfg) -> None:
    if cfg.optimizer.nesterov and cfg.optimizer.momentum == 0:
        raise UserError("optimizer.nesterov=true is not allowed with optimizer.momentum=0: Nesterov's method needs a "
                        "momentum > 0")


# The choices of optimizer=: a builder and one register(...) each (and a YAML file in conf/optimizer/).
OPTIMIZERS = {name: register("optimizer", name, o) for name, o in {
    "sgd": Optimizer(lambda cfg, params, fused, lr: SGD(params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                                        weight_decay=cfg.weight_decay, fused=fused),
                     "SGD with momentum (the paper's)", {
        "momentum": real(0.5, 0, 1, "initial momentum", hi_open=True),
        "final_momentum": real(None, 0, 1, "ramp momentum linearly to this value ...", hi_open=True, null="no ramp"),
        "momentum_ramp_steps": integer(0, 0, MAX_ITERATIONS, "... over this many iterations (0: no ramp)"),
        "nesterov": flag(False, "Nesterov's momentum")}, check=_nesterov_needs_momentum),
    "adam": Optimizer(lambda cfg, params, fused, lr: Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2),
                                                          weight_decay=cfg.weight_decay, fused=fused),
                      "Adam (Kingma & Ba 2015)", {
        "beta1": real(0.5, 0, 1, "Adam's beta1", hi_open=True),
        "beta2": real(0.999, 0, 1, "Adam's beta2", hi_open=True)}),
}.items()}


def base_lr(cfg, net: str) -> float:
    """The learning rate of network ``net`` ("D" or "G"): optimizer.d_lr / g_lr, or optimizer.lr when unset."""
    own = cfg.d_lr if net == "D" else cfg.g_lr
    return cfg.lr if own is None else own


def build(cfg, params, device: torch.device = torch.device("cpu"), net: str = "D") -> torch.optim.Optimizer:
    """The optimizer of network ``net`` from the optimizer config node; fused on a GPU and on the CPU (one pass over
    each state per step; on the CPU torch's single-tensor numbers to float rounding, test_optim.py)."""
    fused = True if device.type in ("cuda", "cpu") else None
    return entry("optimizer", cfg.name).build(cfg, params, fused, base_lr(cfg, net))


def lr_at(cfg, step: int, net: str = "D") -> float:
    """The lr of network ``net`` / decay^step, at least min_lr (the paper: 0.1 / 1.000004^t, floor 1e-6)."""
    lr = base_lr(cfg, net)
    return lr if cfg.lr_decay == 1.0 else max(lr / cfg.lr_decay**step, cfg.min_lr)


def momentum_at(cfg, step: int) -> float:
    """Momentum ramped linearly from ``momentum`` to ``final_momentum`` over momentum_ramp_steps."""
    if cfg.final_momentum is None or cfg.momentum_ramp_steps == 0:
        return cfg.momentum
    return cfg.momentum + min(step / cfg.momentum_ramp_steps, 1.0) * (cfg.final_momentum - cfg.momentum)


class Schedule:
    """The schedule of one run, read every iteration from plain values (OmegaConf access is slow)."""

    def __init__(self, cfg):
        self.cfg = c = SimpleNamespace(**OmegaConf.to_container(cfg))
        self.decays = c.lr_decay != 1.0
        self.ramps = c.name == "sgd" and c.final_momentum is not None and c.momentum_ramp_steps > 0
        self.active = self.decays or self.ramps

    def apply(self, step: int, opt_G: torch.optim.Optimizer, opt_D: torch.optim.Optimizer) -> None:
        """Set the lr (and SGD momentum) that iteration ``step`` uses; host-side floats, no sync."""
        if not self.active:
            return
        momentum = momentum_at(self.cfg, step) if self.cfg.name == "sgd" else None
        for net, opt in (("G", opt_G), ("D", opt_D)):
            lr = lr_at(self.cfg, step, net)
            for group in opt.param_groups:
                group["lr"] = lr
                if momentum is not None:
                    group["momentum"] = momentum

    def values(self, step: int) -> Dict[str, float]:
        """The optim/ tags at iteration ``step``: optim/lr (optim/lr_D and optim/lr_G when they differ: TTUR) while lr
        decays; optim/momentum while SGD's ramps."""
        momentum = {"optim/momentum": momentum_at(self.cfg, step)} if self.ramps else {}
        if self.decays and base_lr(self.cfg, "D") != base_lr(self.cfg, "G"):
            return {**{f"optim/lr_{net}": lr_at(self.cfg, step, net) for net in ("D", "G")}, **momentum}
        return {**({"optim/lr": lr_at(self.cfg, step)} if self.decays else {}), **momentum}
