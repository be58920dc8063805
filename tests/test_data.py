"""Datasets: the paper's splits, the toy mixtures, the noise priors, and the registry of choices."""

import math

import pytest
import torch

from gan_cli import data as datasets
from gan_cli.config import UserError

from .conftest import choices_in_conf


def test_mnist_split_follows_the_paper(make_cfg, tiny_mnist):
    data = datasets.load(make_cfg("dataset=mnist", f"dataset.root={tiny_mnist}").dataset, torch.device("cpu"))
    # 120 training images: the last sixth (20) validates, as train[50000:60000] does for real MNIST
    assert data.train.shape == (100, 1, 28, 28) and data.val.shape == (20, 1, 28, 28)
    assert data.test.shape == (30, 1, 28, 28)
    assert 0.0 <= data.train.min() and data.train.max() <= 1.0


def test_ring_has_eight_distinct_modes():
    centres = datasets.ring_centres(8, 1.0)
    assert torch.cdist(centres, centres).add(torch.eye(8) * 10).min() > 0.7
    assert torch.allclose(centres.norm(dim=1), torch.ones(8))
    assert datasets.grid_centres(2.0).shape == (25, 2)


def test_noise_priors_have_unit_variance():
    torch.manual_seed(0)
    u = datasets.noise("uniform", 20000, 10, "cpu")
    assert u.abs().max() <= math.sqrt(3) and u.var().item() == pytest.approx(1.0, abs=0.03)
    assert datasets.noise("normal", 20000, 10, "cpu").var().item() == pytest.approx(1.0, abs=0.03)

