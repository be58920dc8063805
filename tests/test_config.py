"""The schemas' range checks, the choice helper and the device knob."""

import re

import pytest
import torch

from gan_cli.config import UserError, choose, resolve_device, validate


def test_choose_names_the_choices():
    assert choose({"a": 1, "b": 2}, "b", "thing", "a thing") == 2
    with pytest.raises(UserError, match="^thing=c is not a thing; choose one of: a, b$"):
        choose({"a": 1, "b": 2}, "c", "thing", "a thing")


@pytest.mark.parametrize("override,message", [
    ("k=0", "k=0 is not allowed: k must be an integer in [1, 1,000]"),
    ("optimizer.momentum=1.0",
     "optimizer.momentum=1.0 is not allowed: optimizer.momentum must be a finite number in [0, 1)"),
    ("arch.d_dropout_hidden=1.0", "arch.d_dropout_hidden=1.0 is not allowed"),
    ("eval.theory_samples=0", "eval.theory_samples=0 is not allowed"),
    ("dataset.std=0", "dataset.std=0.0 is not allowed"),
    ("prior=cauchy", "prior=cauchy is not allowed: prior must be one of: uniform, normal"),
    ("precision=fp16", "precision=fp16 is not allowed: precision must be one of: fp32, bf16"),
])
def test_validate_names_the_value_and_the_range(make_cfg, override, message):
    with pytest.raises(UserError, match=re.escape(message)):
        validate(make_cfg(override))


def test_the_defaults_and_every_preset_validate(make_cfg):
    for overrides in ((), ("experiment=paper_mnist",), ("experiment=ring",), ("experiment=figure1",),
                      ("experiment=dirac",)):
        validate(make_cfg(*overrides))


def test_device_auto_is_the_gpu_when_there_is_one():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="device=cuda but no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.slow
def test_no_config_sets_hydra_mode():
    # gan-train tells a sweep from a run by -m on its command line (checks.resume_in_place, the run-directory
    # guard, sweep.job_names); that is right only while no config sets hydra.mode. Hydra's own probe, for every
    # experiment and search preset:
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from gan_cli.config import config_dir, register_configs

    from .conftest import choices_in_conf

    register_configs()
    GlobalHydra.instance().clear()
    hydra = Hydra.create_main_hydra2(task_name="train", config_search_path=create_config_search_path(config_dir()))
    try:
        presets = [[]] + [[f"{group}={choice}"] for group in ("experiment", "hparams_search")
                          for choice in sorted(choices_in_conf(group))]
        assert len(presets) > 5
        for overrides in presets:
            assert hydra.get_mode(config_name="config", overrides=overrides) is None, overrides
            # the probe composes these overrides (it answers None for any it cannot compose, too)
            assert (hydra.get_mode(config_name="config", overrides=[*overrides, "hydra.mode=MULTIRUN"])
                    == RunMode.MULTIRUN)
    finally:
        GlobalHydra.instance().clear()
