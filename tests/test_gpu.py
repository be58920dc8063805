"""GPU checks: skipped on machines without CUDA."""

import math

import pytest
import torch

from gan_cli import checkpoint
from gan_cli.train import train

from .conftest import QUICK_EVAL

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("extra", [("dataset=digits",), ("dataset=ring",), ("arch=dcgan", "optimizer=adam"),
                                   ("loss=wasserstein_gp", "optimizer=adam")])
def test_training_on_the_gpu(make_cfg, tmp_path, extra):
    metrics = train(make_cfg("device=cuda", "steps=20", "log_every=10", "eval_every=20", *QUICK_EVAL, *extra), tmp_path)
    assert metrics["status"] == "ok" and all(math.isfinite(v) for k, v in metrics.items() if k != "status")
    state = checkpoint.load(str(tmp_path / "checkpoints" / "last.pt"))
    assert state["rng"]["cuda"], "the CUDA RNG state must be saved for resume"


def test_gpu_resume_matches(make_cfg, tmp_path):
    base = ("device=cuda", "log_every=5", "ckpt_every=10", "sample_every=100", *QUICK_EVAL)
    full = train(make_cfg(*base, "steps=20"), tmp_path / "full")
    train(make_cfg(*base, "steps=10"), tmp_path / "half")
    ckpt = str(tmp_path / "half" / "checkpoints" / "last.pt")
    resumed = train(make_cfg(f"resume={ckpt}", "steps=20"), tmp_path / "r", overrides=[f"resume={ckpt}", "steps=20"])
    assert resumed["loss/D"] == pytest.approx(full["loss/D"], rel=1e-4)
