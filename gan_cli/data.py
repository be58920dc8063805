"""Datasets as tensors on the training device, and minibatch sampling there.

Image sets are held whole on the device as float pixels in [0, 1], shape (N, C, H, W); a minibatch
is ``x[torch.randint(...)]`` (uniform sampling with replacement, no Python per sample). Toy sets have
a known density: minibatches are drawn fresh from the mixture, and ``log_prob`` gives log p_data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .config import UserError

# torchvision class, folder under root, and the files that must be there
_TORCHVISION = {
    "mnist": ("MNIST", "MNIST/raw", ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw", ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", ("data_batch_1", "test_batch")),
}
_HOLD_OUT = {"digits": 297, "mnist": 10000, "fashion_mnist": 10000, "cifar10": 5000}


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


def check_available(cfg) -> None:
    """Fail early, naming the folder, when an image set's files are not where cfg says."""
    if cfg.name not in _TORCHVISION or cfg.download:
        return
    _, folder, files = _TORCHVISION[cfg.name]
    where = Path(cfg.root).expanduser() / folder
    missing = [f for f in files if not (where / f).exists()]
    if missing:
        raise UserError(
            f"dataset.root={cfg.root} holds no {cfg.name}: looked for {where / missing[0]}; "
            f"pass dataset.root=<folder that contains {folder.split('/')[0]}/> or dataset.download=true to fetch it"
        )


def _split(x: torch.Tensor, y: torch.Tensor, hold_out: int, seed: int = 0):
    """Last ``hold_out`` examples of a fixed permutation become the validation split."""
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    return x[:-hold_out], y[:-hold_out], x[-hold_out:], y[-hold_out:]


def _load_digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(bunch.target)
    # 1,500 to train; the other 297 are both the validation and the test split
    x_train, y_train, x_test, y_test = _split(x, y, _HOLD_OUT["digits"])
    return x_train, y_train, x_test, x_test, y_test


def _load_torchvision(cfg):
    import torchvision.datasets as tvd

    cls_name, _, _ = _TORCHVISION[cfg.name]
    cls = getattr(tvd, cls_name)
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
    hold = min(_HOLD_OUT[cfg.name], x.shape[0] // 6)
    # MNIST as the paper: train[0:50000] trains, train[50000:60000] validates (no shuffling)
    return x[:-hold], y[:-hold], x[-hold:], x_test, y_test


def load(cfg, device: torch.device) -> Data:
    """Build the dataset named by ``cfg`` (the dataset config node) on ``device``."""
    if cfg.name in ("ring", "grid", "mixture1d", "dirac"):
        std = 0.0 if cfg.name == "dirac" else float(cfg.std)
        if cfg.name == "dirac":  # p_data = delta(0): the Dirac-GAN of Mescheder et al. (2018)
            centres, weights = torch.zeros(1, 1), torch.ones(1)
        elif cfg.name == "ring":
            centres, weights = ring_centres(cfg.n_modes, cfg.radius), torch.ones(cfg.n_modes)
        elif cfg.name == "grid":
            centres = grid_centres(cfg.spacing)
            weights = torch.ones(len(centres))
        else:
            centres = torch.tensor(list(cfg.means), dtype=torch.float32).unsqueeze(1)
            weights = torch.tensor(list(cfg.weights), dtype=torch.float32)
        return Data(
            name=cfg.name, train=None, shape=(centres.shape[1],), centres=centres.to(device),
            weights=(weights / weights.sum()).to(device), std=std,
        )
    check_available(cfg)
    x, y, x_val, x_test, y_test = _load_digits() if cfg.name == "digits" else _load_torchvision(cfg)
    return Data(
        name=cfg.name, train=x.to(device), shape=tuple(x.shape[1:]), val=x_val.to(device),
        test=x_test.to(device), train_labels=y.to(device), test_labels=y_test.to(device),
    )


def noise(kind: str, m: int, z_dim: int, device, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """z ~ p_z: uniform on (-sqrt 3, sqrt 3) (unit variance, the paper's choice) or standard normal."""
    if kind == "uniform":
        return (torch.rand(m, z_dim, device=device, generator=generator) * 2 - 1) * math.sqrt(3.0)
    return torch.randn(m, z_dim, device=device, generator=generator)

