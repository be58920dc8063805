"""Optimizers and the paper's schedules."""

import pytest
import torch

from gan_cli import optim
from gan_cli.config import UserError

from .conftest import choices_in_conf


def test_paper_schedules(make_cfg):
    opt = make_cfg("experiment=paper_mnist").optimizer
    assert optim.lr_at(opt, 0) == pytest.approx(0.1)
    assert optim.lr_at(opt, 1000) == pytest.approx(0.1 / 1.000004**1000)
    assert optim.lr_at(opt, 10**8) == pytest.approx(1e-6)
    assert optim.momentum_at(opt, 0) == 0.5
    assert optim.momentum_at(opt, opt.momentum_ramp_steps // 2) == pytest.approx(0.6)
    assert optim.momentum_at(opt, 10**9) == pytest.approx(0.7)

