"""Point sets with a known law: Gaussian mixtures (ring, grid, a line) and the Dirac point mass."""

from __future__ import annotations

import math

import torch

from gan_cli.data.base import Data


def ring_centres(n_modes: int, radius: float) -> torch.Tensor:
    """Centres at angles 2*pi*i/n, i = 0..n-1 (not linspace(0, 2*pi, n), which repeats a mode)."""
    angle = 2 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
    return (radius * torch.stack([angle.cos(), angle.sin()], dim=1)).float()


def grid_centres(spacing: float) -> torch.Tensor:
    """The 25 centres {-2s, -s, 0, s, 2s}^2 (PacGAN: s = 2)."""
    axis = spacing * torch.arange(-2, 3, dtype=torch.float32)
    return torch.cartesian_prod(axis, axis)


def _mixture(name: str, centres: torch.Tensor, weights: torch.Tensor, std: float) -> Data:
    """An isotropic Gaussian mixture (std 0: point masses at the centres)."""
    return Data(name=name, train=None, shape=(centres.shape[1],), centres=centres, weights=weights / weights.sum(),
                std=std)


def ring(cfg) -> Data:
    return _mixture(cfg.name, ring_centres(cfg.n_modes, cfg.radius), torch.ones(cfg.n_modes), float(cfg.std))


def grid(cfg) -> Data:
    return _mixture(cfg.name, grid_centres(cfg.spacing), torch.ones(25), float(cfg.std))


def mixture1d(cfg) -> Data:
    centres = torch.tensor(list(cfg.means), dtype=torch.float32).unsqueeze(1)
    return _mixture(cfg.name, centres, torch.tensor(list(cfg.weights), dtype=torch.float32), float(cfg.std))


def dirac(cfg) -> Data:
    """p_data = delta(0): the Dirac-GAN of Mescheder et al. (2018)."""
    return _mixture(cfg.name, torch.zeros(1, 1), torch.ones(1), 0.0)
