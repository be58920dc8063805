"""Datasets as tensors on the training device, and minibatch sampling there.

Image sets are held whole on the device as float pixels in [0, 1], shape (N, C, H, W); a minibatch
is ``x[torch.randint(...)]`` (uniform sampling with replacement, no Python per sample). Toy sets have
a known density: minibatches are drawn fresh from the mixture, and ``log_prob`` gives log p_data.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Tuple

import torch

from .config import UserError, choose


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

    def to(self, device) -> "Data":
        """The same dataset with every tensor on ``device`` (a tensor shared by two splits stays shared)."""
        tensors = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if isinstance(getattr(self, f.name), torch.Tensor)}
        moved: dict = {}
        for t in tensors.values():
            if id(t) not in moved:
                moved[id(t)] = t.to(device)
        return dataclasses.replace(self, **{name: moved[id(t)] for name, t in tensors.items()})

    @property
    def is_image(self) -> bool:
        return self.train is not None

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    def sample(self, m: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """A fresh minibatch of m real examples, drawn on the device."""
        if self.is_image:
            return self.train[torch.randint(self.train.shape[0], (m,), device=self.train.device, generator=generator)]
        comp = torch.multinomial(self.weights, m, replacement=True, generator=generator)
        eps = torch.randn(m, self.centres.shape[1], device=self.centres.device, generator=generator)
        return self.centres[comp] + self.std * eps

    @property
    def has_density(self) -> bool:
        """A toy set with a density (dirac's delta(0) has none)."""
        return not self.is_image and self.std > 0

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p_data(x) of a toy set (isotropic Gaussian mixture), shape (n,)."""
        d = self.centres.shape[1]
        sq = torch.cdist(x, self.centres).pow(2)  # (n, modes)
        log_comp = -sq / (2 * self.std**2) - d * math.log(self.std * math.sqrt(2 * math.pi))
        return torch.logsumexp(log_comp + self.weights.log(), dim=1)


def ring_centres(n_modes: int, radius: float) -> torch.Tensor:
    """Centres at angles 2*pi*i/n, i = 0..n-1 (not linspace(0, 2*pi, n), which repeats a mode)."""
    angle = 2 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
    return (radius * torch.stack([angle.cos(), angle.sin()], dim=1)).float()


def grid_centres(spacing: float) -> torch.Tensor:
    """The 25 centres {-2s, -s, 0, s, 2s}^2 (PacGAN: s = 2)."""
    axis = spacing * torch.arange(-2, 3, dtype=torch.float32)
    return torch.cartesian_prod(axis, axis)


# -- point sets with a known law ---------------------------------------------------------------


def _mixture(name: str, centres: torch.Tensor, weights: torch.Tensor, std: float) -> Data:
    """An isotropic Gaussian mixture (std 0: point masses at the centres)."""
    return Data(name=name, train=None, shape=(centres.shape[1],), centres=centres, weights=weights / weights.sum(), std=std)


def _ring(cfg) -> Data:
    return _mixture(cfg.name, ring_centres(cfg.n_modes, cfg.radius), torch.ones(cfg.n_modes), float(cfg.std))


def _grid(cfg) -> Data:
    centres = grid_centres(cfg.spacing)
    return _mixture(cfg.name, centres, torch.ones(len(centres)), float(cfg.std))


def _mixture1d(cfg) -> Data:
    centres = torch.tensor(list(cfg.means), dtype=torch.float32).unsqueeze(1)
    return _mixture(cfg.name, centres, torch.tensor(list(cfg.weights), dtype=torch.float32), float(cfg.std))


def _dirac(cfg) -> Data:
    """p_data = delta(0): the Dirac-GAN of Mescheder et al. (2018)."""
    return _mixture(cfg.name, torch.zeros(1, 1), torch.ones(1), 0.0)


# -- image sets ---------------------------------------------------------------------------------


def _split(x: torch.Tensor, y: torch.Tensor, hold_out: int, seed: int = 0):
    """Last ``hold_out`` examples of a fixed permutation become the validation split."""
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    return x[:-hold_out], y[:-hold_out], x[-hold_out:], y[-hold_out:]


def _images(name: str, x, y, x_val, x_test, y_test) -> Data:
    return Data(name=name, train=x, shape=tuple(x.shape[1:]), val=x_val, test=x_test, train_labels=y,
                test_labels=y_test)


def _digits(cfg) -> Data:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target)
    # 1,500 to train; the other 297 are both the validation and the test split
    x_train, y_train, x_test, y_test = _split(x, y, 297)
    return _images(cfg.name, x_train, y_train, x_test, x_test, y_test)


class Files(NamedTuple):
    """A torchvision dataset: its class, its folder under ``dataset.root``, the files that must be there."""

    cls: str
    folder: str
    needed: Tuple[str, ...]
    hold_out: int  # the last training examples that validate instead


def _torchvision(files: Files, cfg) -> Data:
    import torchvision.datasets as tvd

    cls = getattr(tvd, files.cls)
    root = str(Path(cfg.root).expanduser())
    try:
        train = cls(root, train=True, download=cfg.download)
        test = cls(root, train=False, download=cfg.download)
    except (RuntimeError, OSError) as err:
        raise UserError(f"dataset={cfg.name} could not be read from dataset.root={cfg.root}: {err}") from None

    def pixels(ds):
        x = torch.as_tensor(ds.data)
        x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)  # CIFAR is (N, H, W, C)
        return x.float() / 255.0, torch.as_tensor(ds.targets)

    x, y = pixels(train)
    x_test, y_test = pixels(test)
    hold = min(files.hold_out, x.shape[0] // 6)
    # MNIST as the paper: train[0:50000] trains, train[50000:60000] validates (no shuffling)
    return _images(cfg.name, x[:-hold], y[:-hold], x[-hold:], x_test, y_test)


# -- the choices of dataset= --------------------------------------------------------------------


class Dataset(NamedTuple):
    """A choice of ``dataset=``: how to load it and what it is (a new dataset: a loader, an entry, a YAML)."""

    load: Callable[[Any], Data]  # the dataset config node -> Data on the CPU
    families: Tuple[str, ...]  # metric families that fit it: image, density (known p_data), modes (ring, grid)
    dim: Optional[int] = None  # point sets: the dimension of a sample (None: images)
    files: Optional[Files] = None  # torchvision sets: what must be under dataset.root


_MNIST_FILES = ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")
_MNIST = Files("MNIST", "MNIST/raw", _MNIST_FILES, 10000)
_FASHION = Files("FashionMNIST", "FashionMNIST/raw", _MNIST_FILES, 10000)
_CIFAR10 = Files("CIFAR10", "cifar-10-batches-py", ("data_batch_1", "test_batch"), 5000)

DATASETS = {
    "digits": Dataset(_digits, ("image",)),
    "mnist": Dataset(partial(_torchvision, _MNIST), ("image",), files=_MNIST),
    "fashion_mnist": Dataset(partial(_torchvision, _FASHION), ("image",), files=_FASHION),
    "cifar10": Dataset(partial(_torchvision, _CIFAR10), ("image",), files=_CIFAR10),
    "ring": Dataset(_ring, ("density", "modes"), dim=2),
    "grid": Dataset(_grid, ("density", "modes"), dim=2),
    "mixture1d": Dataset(_mixture1d, ("density",), dim=1),
    "dirac": Dataset(_dirac, (), dim=1),
}


def spec(name: str) -> Dataset:
    """The entry of ``dataset=name``; an unknown name is a UserError that lists the choices."""
    return choose(DATASETS, name, "dataset", "a dataset")


def check_available(cfg) -> None:
    """Fail early, naming the folder, when an image set's files are not where cfg says."""
    files = spec(cfg.name).files
    if files is None or cfg.download:
        return
    where = Path(cfg.root).expanduser() / files.folder
    missing = [f for f in files.needed if not (where / f).exists()]
    if missing:
        raise UserError(
            f"dataset.root={cfg.root} holds no {cfg.name}: looked for {where / missing[0]}; "
            f"pass dataset.root=<folder that contains {files.folder.split('/')[0]}/> or dataset.download=true to fetch it"
        )


def load(cfg, device: torch.device) -> Data:
    """Build the dataset named by ``cfg`` (the dataset config node) on ``device``."""
    check_available(cfg)
    return spec(cfg.name).load(cfg).to(device)


def noise(kind: str, m: int, z_dim: int, device, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """z ~ p_z: uniform on (-sqrt 3, sqrt 3) (unit variance, the paper's choice) or standard normal."""
    if kind == "uniform":
        return (torch.rand(m, z_dim, device=device, generator=generator) * 2 - 1) * math.sqrt(3.0)
    return torch.randn(m, z_dim, device=device, generator=generator)

