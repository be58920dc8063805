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



def test_every_optimizer_choice_has_a_builder_and_a_yaml():
    assert set(optim.OPTIMIZERS) == choices_in_conf("optimizer")


def test_an_unknown_optimizer_names_the_choices(make_cfg):
    cfg = make_cfg("optimizer.name=rmsprop").optimizer
    with pytest.raises(UserError, match="optimizer=rmsprop is not an optimizer; choose one of: sgd, adam"):
        optim.check(cfg)
    with pytest.raises(UserError, match="optimizer=rmsprop"):
        optim.build(cfg, [torch.nn.Parameter(torch.zeros(1))])


def test_schedule_sets_and_reports_the_iterations_values(make_cfg):
    params = [torch.nn.Parameter(torch.zeros(1))]
    plain = optim.Schedule(make_cfg().optimizer)
    opt = optim.build(make_cfg().optimizer, params)
    plain.apply(500, opt)
    assert not plain.active and plain.values(500) == {} and opt.param_groups[0]["lr"] == 0.1
    cfg = make_cfg("experiment=paper_mnist").optimizer
    paper, opt = optim.Schedule(cfg), optim.build(cfg, params)
    paper.apply(62500, opt)
    assert paper.active and opt.param_groups[0]["lr"] == pytest.approx(0.1 / 1.000004**62500)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.6)
    assert paper.values(62500) == {"optim/lr": opt.param_groups[0]["lr"], "optim/momentum": opt.param_groups[0]["momentum"]}
