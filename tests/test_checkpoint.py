"""Checkpoints: what they hold, the format check, where a run keeps them, resume's rules."""

import pytest
import torch

from gan_cli import checkpoint, data as datasets
from gan_cli.config import UserError
from gan_cli.train import GAN, train

from .conftest import FAST


def test_resume_refuses_a_different_experiment(make_cfg, tmp_path):
    train(make_cfg(*FAST), tmp_path / "a")
    ckpt = str(tmp_path / "a" / "checkpoints" / "last.pt")
    with pytest.raises(UserError, match="loss=hinge differs"):
        train(make_cfg(f"resume={ckpt}", "loss=hinge"), tmp_path / "b", overrides=[f"resume={ckpt}", "loss=hinge"])


def test_a_run_never_overwrites_another_runs_checkpoint(make_cfg, tmp_path):
    train(make_cfg(*FAST), tmp_path)
    before = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(UserError, match="already holds a run"):
        train(make_cfg(*FAST, "seed=9"), tmp_path)
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == before


def test_checkpoint_holds_everything_and_loads_weights_only(make_cfg, tmp_path):
    train(make_cfg(*FAST), tmp_path)
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert {"G", "D", "opt_G", "opt_D", "step", "rng", "config", "fixed_noise"} <= state.keys()
    assert state["step"] == 4 and state["config"]["loss"]["name"] == "nonsaturating"


def test_checkpoint_of_other_networks_is_a_user_error(make_cfg, tmp_path):
    train(make_cfg(*FAST), tmp_path / "a")
    state = checkpoint.load(str(tmp_path / "a" / "checkpoints" / "last.pt"))
    cfg = make_cfg("device=cpu", "arch.g_hidden=8")
    gan = GAN(cfg, datasets.load(cfg.dataset, torch.device("cpu")), torch.device("cpu"))
    with pytest.raises(UserError, match="does not fit"):
        checkpoint.restore(state, gan.state(cfg), path="x.pt")

