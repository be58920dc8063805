"""One optimizer per network, and the paper's schedules (lr decay, momentum ramp).

Schedules are pure functions of the iteration, so a resumed run sets exactly the values an
uninterrupted one would have had.
"""

from __future__ import annotations

import torch


def build(cfg, params) -> torch.optim.Optimizer:
    """SGD with momentum (the paper) or Adam, from the optimizer config node."""
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)


def lr_at(cfg, step: int) -> float:
    """lr / decay^step, floored at min_lr (the paper: 0.1 / 1.000004^t, floor 1e-6)."""
    if cfg.lr_decay == 1.0:
        return cfg.lr
    return max(cfg.lr / cfg.lr_decay**step, cfg.min_lr)


def momentum_at(cfg, step: int) -> float:
    """Momentum ramped linearly from ``momentum`` to ``final_momentum`` over momentum_ramp_steps."""
    if cfg.final_momentum is None or cfg.momentum_ramp_steps == 0:
        return cfg.momentum
    frac = min(step / cfg.momentum_ramp_steps, 1.0)
    return cfg.momentum + frac * (cfg.final_momentum - cfg.momentum)


def apply_schedule(cfg, step: int, *optimizers: torch.optim.Optimizer) -> None:
    """Set the lr (and SGD momentum) that iteration ``step`` uses; host-side floats, no sync."""
    lr = lr_at(cfg, step)
    momentum = momentum_at(cfg, step) if cfg.name == "sgd" else None
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr
            if momentum is not None:
                group["momentum"] = momentum


def has_schedule(cfg) -> bool:
    return cfg.lr_decay != 1.0 or (cfg.name == "sgd" and cfg.final_momentum is not None and cfg.momentum_ramp_steps > 0)
