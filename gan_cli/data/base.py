"""What the loop and the monitor know of a dataset (:class:`Data`), the noise prior, the memory free on a device.

Image sets are held whole on the device as float pixels in [0, 1], shape (N, C, H, W); a minibatch is
``x[torch.randint(...)]`` (uniform sampling with replacement); a folder too large for that streams from disk
(gan_cli.data.folder). Toy sets have a known density: fresh draws from the mixture, ``log_prob`` = log p_data.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Optional

import torch


@dataclass
class Data:
    """What the loop and the monitor need to know about a dataset."""

    name: str
    train: Optional[torch.Tensor]  # image sets: (N, C, H, W) on the device; toy sets: None
    shape: tuple  # shape of one sample: (C, H, W) or (d,)
    val: Optional[torch.Tensor] = None  # held-out split (image sets)
    test: Optional[torch.Tensor] = None
    train_labels: Optional[torch.Tensor] = None
    test_labels: Optional[torch.Tensor] = None
    centres: Optional[torch.Tensor] = None  # toy sets: (modes, d)
    weights: Optional[torch.Tensor] = None  # toy sets: mixing weights (modes,)
    std: float = 0.0  # toy sets: std of every component
    stream: Optional[Any] = None  # a folder streamed from disk (train is None then)

    def to(self, device) -> "Data":
        """The same dataset with every tensor on ``device`` (a tensor shared by two splits stays shared)."""
        tensors = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if isinstance(getattr(self, f.name), torch.Tensor)}
        moved = {i: t.to(device) for i, t in {id(t): t for t in tensors.values()}.items()}
        return dataclasses.replace(self, **{name: moved[id(t)] for name, t in tensors.items()})

    @property
    def is_image(self) -> bool:
        return self.train is not None or self.stream is not None

    def reference(self, n: int) -> torch.Tensor:
        """``n`` real training images (a fixed choice, the same every call), float pixels on the device."""
        if self.stream is not None:
            return self.stream.reference(n)
        pick = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(0))[:n]
        return self.train[pick.to(self.train.device)]

    def pixel_mean(self) -> torch.Tensor:
        """Each pixel's mean over the training images (a streamed set: over up to 10,000 of them)."""
        return (self.train if self.stream is None else self.stream.reference(10000)).flatten(1).double().mean(0)

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    def sample(self, m: int, generator=None) -> torch.Tensor:
        """A fresh minibatch of m real examples, drawn on the device. ``generator``: a torch.Generator, or a list of
        them (a population's members): then (P, m, ...), the minibatch each would draw, the arithmetic done once."""
        if self.stream is not None:
            return self.stream.batch(m)
        gens, join = _each(generator)
        if self.is_image:
            return self.train[join([torch.randint(self.train.shape[0], (m,), device=self.train.device, generator=g)
                                    for g in gens])]
        draws = [(torch.multinomial(self.weights, m, replacement=True, generator=g),
                  torch.randn(m, self.centres.shape[1], device=self.centres.device, generator=g)) for g in gens]
        comp, eps = (join(t) for t in zip(*draws))
        return self.centres[comp] + self.std * eps

    @property
    def has_density(self) -> bool:
        """A toy set with a density (dirac's delta(0) has none)."""
        return not self.is_image and self.std > 0

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p_data(x) of a toy set (isotropic Gaussian mixture), shape (n,)."""
        sq = torch.cdist(x, self.centres).pow(2)  # (n, modes)
        log_comp = -sq / (2 * self.std**2) - self.centres.shape[1] * math.log(self.std * math.sqrt(2 * math.pi))
        return torch.logsumexp(log_comp + self.weights.log(), dim=1)


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device`` now (the GPU's free memory; the system's MemAvailable for the CPU)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _each(generator) -> tuple:
    """(the generators to draw from, how their draws join): a list of them (a population's members) stacked along a
    new first dimension; one generator (or None) its draw as it is."""
    return (generator, torch.stack) if isinstance(generator, list) else ([generator], lambda drawn: drawn[0])


def noise(kind: str, m: int, z_dim: int, device, generator=None) -> torch.Tensor:
    """z ~ p_z: uniform on (-sqrt 3, sqrt 3) (unit variance, the paper's choice) or standard normal. ``generator``:
    as :meth:`Data.sample`'s (a list: each one's draw, stacked)."""
    gens, join = _each(generator)
    draw = torch.rand if kind == "uniform" else torch.randn
    z = join([draw(m, z_dim, device=device, generator=g) for g in gens])
    return (z * 2 - 1) * math.sqrt(3.0) if kind == "uniform" else z
