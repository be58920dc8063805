"""GPU checks: skipped on machines without CUDA."""

import math

import pytest
import torch

from gan_cli.cli.train import train
from gan_cli.runs import checkpoint

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
    assert resumed["game/loss_D"] == pytest.approx(full["game/loss_D"], rel=1e-4)


def _gpu_updates(make_cfg, *extra, steps=6):
    from gan_cli import data as datasets
    from gan_cli.game.updates import GAN

    cfg = make_cfg("device=cuda", "dataset=ring", *extra)
    device = torch.device("cuda")
    torch.manual_seed(0)
    gan = GAN(cfg, datasets.load(cfg.dataset, device), device)
    values = []
    for _ in range(steps):
        values.append(gan.d_step(cfg.batch_size).values.clone())
        values.append(gan.g_step(cfg.batch_size).clone())
    return gan, torch.cat(values).cpu()


def test_the_fast_path_matches_eager_fp32_on_the_gpu(make_cfg):
    # compile=true: torch.compile with CUDA graphs (mode reduce-overhead); fused optimizers on the GPU
    gan, eager = _gpu_updates(make_cfg)
    assert gan.opt_D.defaults["fused"] and gan.opt_G.defaults["fused"]
    graphs, compiled = _gpu_updates(make_cfg, "compile=true")
    assert graphs.graphs
    torch.testing.assert_close(compiled, eager, rtol=1e-3, atol=1e-4)
    _, bf16 = _gpu_updates(make_cfg, "precision=bf16")
    torch.testing.assert_close(bf16, eager, rtol=3e-2, atol=3e-2)


def test_dcgan_runs_channels_last_on_the_gpu(make_cfg, tmp_path):
    from gan_cli import data as datasets
    from gan_cli.game.updates import GAN

    cfg = make_cfg("device=cuda", "dataset=digits", "arch=dcgan", "optimizer=adam")
    gan = GAN(cfg, datasets.load(cfg.dataset, torch.device("cuda")), torch.device("cuda"))
    conv = next(m for m in gan.D.modules() if isinstance(m, torch.nn.Conv2d))
    assert gan.channels_last and conv.weight.is_contiguous(memory_format=torch.channels_last)
    metrics = train(make_cfg("device=cuda", "dataset=digits", "arch=dcgan", "optimizer=adam", "precision=bf16",
                             "compile=true", "steps=30", "log_every=10", *QUICK_EVAL), tmp_path)
    assert metrics["status"] == "ok" and math.isfinite(metrics["game/loss_D"])
