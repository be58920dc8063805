"""An exponential moving average of G's weights and buffers, W_ema <- decay * W_ema + (1 - decay) * W_G after every
iteration past ``ema.start``, by torch's AveragedModel's EMA step, called directly with its count on the host
(update_parameters reads it on the device: a sync per iteration). Until the first update (a copy) G stands in."""

from __future__ import annotations

import itertools
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def _tensors(module: nn.Module) -> List[torch.Tensor]:
    return [t.detach() for t in itertools.chain(module.parameters(), module.buffers())]


class EMA:
    """The moving average of ``G``: :meth:`update` after each iteration; :attr:`model` is checkpointed."""

    def __init__(self, G: nn.Module, decay: float, start: int = 0):
        self.decay, self.start, self.source = float(decay), int(start), G
        self.model = AveragedModel(G, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)
        self.model.n_averaged = self.model.n_averaged.cpu()  # counted on the host: no device read per update
        self.model.requires_grad_(False)
        pairs = list(zip(_tensors(self.model.module), _tensors(G)))
        # (averaged, current) float tensors, grouped by device and dtype as the EMA step expects
        groups: Dict[tuple, Tuple[List[torch.Tensor], List[torch.Tensor]]] = {}
        for mine, theirs in pairs:
            if mine.is_floating_point():
                group = groups.setdefault((mine.device, mine.dtype), ([], []))
                group[0].append(mine)
                group[1].append(theirs)
        self.groups = list(groups.values())
        # integer buffers (batch norm's num_batches_tracked) are counts, not weights: copied
        self.counts = [(mine, theirs) for mine, theirs in pairs if not mine.is_floating_point()]

    @property
    def started(self) -> bool:
        return int(self.model.n_averaged) > 0

    @torch.no_grad()
    def update(self, it: int) -> None:
        """After iteration ``it``: average G in (the first time past ``start``: copy it)."""
        if it <= self.start:
            return
        for mine, theirs in self.groups:
            if not self.started:  # the first update (the count changes after the loop)
                torch._foreach_copy_(mine, theirs)
            else:
                self.model.multi_avg_fn(mine, theirs, self.model.n_averaged)
        for mine, theirs in self.counts:
            mine.copy_(theirs)
        self.model.n_averaged += 1

    def generator(self) -> nn.Module:
        return self.model.module if self.started else self.source


def build(cfg, G: nn.Module) -> Optional[EMA]:
    """The EMA of ``G`` that the ``ema`` config node asks for (None: ema.decay is null, off)."""
    return None if cfg.decay is None else EMA(G, cfg.decay, cfg.start)
