"""An exponential moving average of G's weights (``ema.decay``), kept by torch's AveragedModel.

    W_ema <- decay * W_ema + (1 - decay) * W_G      after every iteration past ``ema.start``

The average is ``torch.optim.swa_utils.AveragedModel`` (a copy of G, its buffers averaged too, so
batch norm's running statistics follow) updated by ``get_ema_multi_avg_fn(decay)``, torch's own EMA
step (one foreach lerp over the float tensors). Its update count ``n_averaged`` is kept on the host:
AveragedModel.update_parameters reads that count on the device every call (a host sync per
iteration on a GPU), so :meth:`EMA.update` calls the same EMA step on the tensors directly.
The first update copies G (as AveragedModel does); until then samples and evaluation use G itself.
Integer buffers (batch norm's num_batches_tracked) are counts, copied from G rather than averaged.
"""

from __future__ import annotations

import itertools
from typing import List, Optional, Tuple

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def _tensors(module: nn.Module) -> List[torch.Tensor]:
    return [t.detach() for t in itertools.chain(module.parameters(), module.buffers())]


class EMA:
    """The moving average of ``G``: :meth:`update` after each iteration, :attr:`model` to checkpoint,
    :meth:`generator` for what samples and evaluation read."""

    def __init__(self, G: nn.Module, decay: float, start: int = 0):
        self.decay, self.start = float(decay), int(start)
        self.model = AveragedModel(G, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)
        self.model.n_averaged = self.model.n_averaged.cpu()  # counted on the host: no device read per update
        self.model.requires_grad_(False)
        self.source = G
        mine, theirs = _tensors(self.model.module), _tensors(G)
        floats = [i for i, t in enumerate(mine) if t.is_floating_point()]
        # (averaged, current) float tensors, grouped by device and dtype as the EMA step expects
        groups: dict = {}
        for i in floats:
            groups.setdefault((mine[i].device, mine[i].dtype), ([], []))
            groups[(mine[i].device, mine[i].dtype)][0].append(mine[i])
            groups[(mine[i].device, mine[i].dtype)][1].append(theirs[i])
        self.groups: List[Tuple[List[torch.Tensor], List[torch.Tensor]]] = list(groups.values())
        # integer buffers (batch norm's num_batches_tracked) are counts, not weights: copied
        self.counts = [(mine[i], theirs[i]) for i in range(len(mine)) if i not in set(floats)]
        self.step = self.model.multi_avg_fn

    @property
    def started(self) -> bool:
        return int(self.model.n_averaged) > 0

    @torch.no_grad()
    def update(self, it: int) -> None:
        """After iteration ``it``: average G in (the first time past ``start``: copy it)."""
        if it <= self.start:
            return
        if not self.started:
            for mine, theirs in self.groups:
                torch._foreach_copy_(mine, theirs)
        else:
            for mine, theirs in self.groups:
                self.step(mine, theirs, self.model.n_averaged)
        for mine, theirs in self.counts:
            mine.copy_(theirs)
        self.model.n_averaged += 1

    def generator(self) -> nn.Module:
        """The generator that samples and evaluation read: the average once it has started, else G."""
        return self.model.module if self.started else self.source


def build(cfg, G: nn.Module) -> Optional[EMA]:
    """The EMA of ``G`` that the ``ema`` config node asks for (None: ema.decay is null, off)."""
    return None if cfg.decay is None else EMA(G, cfg.decay, cfg.start)
