"""Memory: refuse a run that cannot fit before allocating it; name the setting to lower when an allocation fails.
G and D are built on the ``meta`` device (shapes only); activations are bounded by the layers' widths (measured on
the meta device before a refusal). A training step needs, in float32: parameters x 5 (weights, gradients, two
optimizer moments, G's moving average) + activations x 2 (and their gradients: G on m x pack noise vectors, D on as
many real and generated examples) + the evaluation's generated samples (the most one of the run's metrics holds)."""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional

import torch

from gan_cli import data as datasets
from gan_cli.config import UserError, first_line
from gan_cli.data import base
from gan_cli.evaluation import evaluate
from gan_cli.game import models
from gan_cli.runs import rundir

GIB = 2**30


class _Shapes(torch.overrides.TorchFunctionMode):
    """Networks built for their shapes alone: an in-place operation on a ``meta`` tensor's values (the builders'
    initialisations: normal_, trunc_normal_'s erfinv_ and clamp_, ...) is skipped. It would change nothing there, and
    several such operations run torch's Python reference code, whose first use imports SymPy and more (~1.4 s)."""

    KEEP = {"requires_grad_", "detach_", "resize_", "resize_as_", "set_", "as_strided_", "squeeze_", "unsqueeze_",
            "transpose_", "t_", "swapdims_", "swapaxes_", "rename_", "share_memory_"}  # what changes more than values

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs, name = kwargs or {}, getattr(func, "__name__", "")
        target = args[0] if args else kwargs.get("tensor")  # torch.nn.init passes it by name
        if (name.endswith("_") and not name.startswith("_") and name not in self.KEEP
                and isinstance(target, torch.Tensor) and target.is_meta):
            return target
        return func(*args, **kwargs)


@dataclasses.dataclass
class Estimate:
    parameters: int  # bytes
    activations: int
    evaluation: int

    @property
    def total(self) -> int:
        return self.parameters + self.activations + self.evaluation

    def largest(self) -> str:
        """The settings to lower for the largest part."""
        parts = {"arch.g_hidden / arch.d_hidden (or z_dim)": self.parameters,
                 "batch_size (or pack, arch.g_hidden / arch.d_hidden)": self.activations,
                 "eval.n_samples": self.evaluation}
        return max(parts, key=parts.get)


def _bound(net: torch.nn.Module, spatial: int) -> int:
    """A bound of one sample's activations in ``net``: each leaf's output is its width (out_features, or out_channels
    x the image's pixels: no map is larger) or, element-wise, the previous width."""
    total, last = 0, 0
    for mod in (m for m in net.modules() if not list(m.children())):  # the leaves
        if hasattr(mod, "out_features"):
            last = mod.out_features
        elif hasattr(mod, "out_channels"):
            last = mod.out_channels * spatial
        total += last
    return total


def estimate(cfg, data: datasets.Data, exact: bool = False) -> Estimate:
    """Bytes a training step and the evaluation need; ``exact``: activations measured by a forward pass on the meta
    device instead of bounded (torch then imports its compiler stack: seconds)."""
    m = cfg.batch_size * cfg.pack
    probe = datasets.Data(data.name, torch.empty(2, *data.shape, device="meta") if data.is_image else None, data.shape)
    with torch.device("meta"), _Shapes():
        nets = models.build(cfg.arch, probe, cfg.z_dim, cfg.pack)
    params = sum(p.numel() for p in nets.G.parameters()) + sum(p.numel() for p in nets.D.parameters())
    spatial = math.prod(data.shape[1:]) if data.is_image else 1
    per_g, per_d = _bound(nets.G, spatial), _bound(nets.D, spatial) / cfg.pack
    if exact:  # the output sizes of the leaf modules; a hook that returns None keeps the output
        sizes: Dict[str, List[int]] = {"G": [], "D": []}
        hooks = [mod.register_forward_hook(lambda mod, inputs, out, seen=sizes[name]: seen.append(
                     out.numel() if isinstance(out, torch.Tensor) else 0))
                 for name, net in (("G", nets.G), ("D", nets.D)) for mod in net.modules() if not list(mod.children())]
        with torch.device("meta"):
            nets.D(nets.G(torch.empty(m, cfg.z_dim)))
        for hook in hooks:
            hook.remove()
        per_g, per_d = sum(sizes["G"]) / m, sum(sizes["D"]) / m
    # G on m x pack noise vectors, D on as many real and generated examples, and the noise itself
    activations = int(m * (per_g + 2 * per_d + cfg.z_dim))
    n_eval = max((m.samples(cfg.eval) for m in evaluate.applicable(evaluate.families(cfg)) if m.enabled(cfg.eval)),
                 default=0)
    # samples (and D's statistics, the density's arrays: 4 x for points); noise for one chunk of 5,000
    # samples and the fixed noise of the sample grids, with G's activations for that chunk
    chunk = min(5000, n_eval)
    fixed = cfg.n_samples * (1 if data.is_image else 16)
    evaluation = n_eval * data.dim * (1 if data.is_image else 4) + (chunk + fixed) * cfg.z_dim + int(per_g * chunk)
    return Estimate(parameters=4 * 5 * params, activations=4 * 2 * activations, evaluation=4 * 2 * evaluation)


def check(cfg, data: datasets.Data, device: torch.device) -> None:
    """Refuse (UserError) a config whose estimate does not fit in the memory free on ``device``."""
    need = estimate(cfg, data)
    free = base.free_memory(device)
    if need.total > free:  # the bound says no: measure before refusing
        need = estimate(cfg, data, exact=True)
    if need.total > free:
        raise UserError(f"this run needs about {need.total / GIB:,.1f} GiB for a training step and the evaluation but "
                        f"{free / GIB:,.1f} GiB is free on {device.type}: lower {need.largest()}")


def members_that_fit(cfg, data: datasets.Data, device: torch.device) -> int:
    """How many members of a population fit in the memory free on ``device`` now (at least one): each needs its
    slice of the stacked training step (parameters and activations) beside its own networks; one member evaluates
    at a time."""
    need = estimate(cfg, data)
    return max(1, (base.free_memory(device) - need.evaluation) // (2 * need.parameters + need.activations))


def as_user_error(err: BaseException) -> Optional[UserError]:
    """The one line for a failed write (full disk, read-only) or allocation (CPU or CUDA); None for anything else."""
    if isinstance(err, OSError) and err.errno in rundir.REASONS:
        return rundir.write_error(err, err.filename)
    text = str(err)
    if isinstance(err, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in text \
            or "out of memory" in text.lower():
        return UserError(f"out of memory ({first_line(err)[:160]}): "
                         "lower batch_size, arch.g_hidden / arch.d_hidden, z_dim or eval.n_samples")
    return None
