"""One run on several processes (``torchrun --nproc_per_node=N -m gan_cli ...``), data-parallel: each rank draws its
own minibatches; one DistributedDataParallel per network averages the gradients (G's step runs D's own module: no
DDP), the simultaneous step's autograd.grad ones are averaged here. Rank 0 alone writes; the log window's figures are
averaged over the ranks, so all stop at the same iteration on divergence or at a stop signal."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Iterable, Optional

import torch
import torch.distributed as dist


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main() -> bool:
    return not active() or dist.get_rank() == 0


def init(argv: Iterable[str]) -> None:
    """Join torchrun's process group (NCCL on GPUs, gloo on CPUs); agree on the start time (the run dir's name)."""
    if world_size() <= 1 or active():
        return
    gpu = torch.cuda.is_available() and "device=cpu" not in argv
    if gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if gpu else "gloo")
    stamp = [datetime.now().timestamp()]
    dist.broadcast_object_list(stamp, src=0)
    os.environ["GAN_CLI_START"] = repr(stamp[0])


def device(name: str) -> Optional[torch.device]:
    """This rank's GPU under torchrun with CUDA (None: the usual choice applies)."""
    if active() and name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return None


def wrap(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if not active() or not any(p.requires_grad for p in module.parameters()):
        return module
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """Average ``.grad`` over the ranks (one flat all-reduce) where DDP does not."""
    grads = [p.grad for p in params if p.grad is not None] if active() else []
    if not grads:
        return
    flat = mean(torch.cat([g.reshape(-1) for g in grads]))
    for g, part in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(part.view_as(g))


def mean(values: torch.Tensor) -> torch.Tensor:
    if active():
        values = values.clone()
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any (one all-reduce)."""
    if not active():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def in_sync(modules: Iterable[torch.nn.Module], device: torch.device) -> bool:
    """Every rank holds the same parameters (compared as float64 sums, gathered once)."""
    if not active():
        return True
    total = torch.stack([p.detach().double().sum() for m in modules for p in m.parameters()]).to(device)
    gathered = [torch.empty_like(total) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, total)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def close() -> None:
    if active():
        dist.destroy_process_group()
