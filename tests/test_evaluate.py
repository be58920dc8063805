"""theory/ and eval/ during training, gan-eval, the Dirac game, and the minimax loss's saturation."""

import json
import math

import pytest
import torch
from torch import nn

from gan_cli import data as datasets, evaluate
from gan_cli.config import UserError
from gan_cli.train import GAN, train

from .conftest import QUICK_EVAL, run_cli
from .test_cli import events

FAST = ("steps=4", "log_every=2", "sample_every=4", "ckpt_every=4", "eval_every=2", "batch_size=8", "device=cpu",
        *QUICK_EVAL)


class DataSampler(nn.Module):
    """A 'perfect' generator: returns real samples, whatever z is."""

    def __init__(self, data):
        super().__init__()
        self.data = data

    def forward(self, z):
        return self.data.sample(z.shape[0])


class ConstantD(nn.Module):
    """D(x) = sigma(c) everywhere."""

    def __init__(self, logit=0.0):
        super().__init__()
        self.logit = logit

    def forward(self, x):
        return torch.full((x.shape[0],), self.logit)


def evaluator(make_cfg, dataset, loss="nonsaturating"):
    cfg = make_cfg(f"dataset={dataset}", f"loss={loss}", "eval.theory_samples=20000")
    data = datasets.load(cfg.dataset, torch.device("cpu"))
    return evaluate.Evaluator(cfg.eval, data, torch.device("cpu"), loss, "normal", 2), data


def test_theory_at_the_global_optimum(make_cfg):
    # p_g = p_data and D = 1/2: V = -log 4 exactly, D* = 1/2 so (D - D*)^2 ~ 0, JSD ~ its floor
    ev, data = evaluator(make_cfg, "mixture1d")
    torch.manual_seed(0)
    scalars, curves = ev.theory(DataSampler(data), ConstantD(0.0))
    assert scalars["theory/value"] == pytest.approx(-math.log(4), abs=1e-6)
    assert scalars["theory/optimum"] == pytest.approx(-1.3862944, abs=1e-6)
    assert scalars["theory/jsd"] < 3 * scalars["theory/jsd_floor"] + 1e-3
    assert scalars["theory/d_star_mse"] < 0.01
    assert set(curves) == {"x", "p_data", "p_g", "D", "D_star"}


def test_theory_far_from_the_optimum(make_cfg):
    # a generator stuck at one point: JSD near log 2, V-hat below C(G) = -log 4 + 2 JSD
    ev, data = evaluator(make_cfg, "mixture1d")
    stuck = nn.Sequential(nn.Linear(2, 1))
    nn.init.zeros_(stuck[0].weight)
    nn.init.constant_(stuck[0].bias, 7.0)
    scalars, _ = ev.theory(stuck, ConstantD(0.0))
    assert scalars["theory/jsd"] == pytest.approx(math.log(2), abs=0.01)
    assert scalars["theory/value"] <= scalars["theory/c_of_g"] + 1e-6


def test_mode_metrics_of_a_perfect_ring_generator(make_cfg):
    ev, data = evaluator(make_cfg, "ring")
    torch.manual_seed(0)
    modes = ev.modes(DataSampler(data))
    assert modes["eval/modes_covered"] == 8 and modes["eval/hq_fraction"] > 0.98
    assert modes["eval/reverse_kl"] < 0.01 and modes["eval/mode_samples"] == 2500


def test_minimax_saturates_where_nonsaturating_does_not(make_cfg):
    """Same seed, same deliberately strong D: minimax's G gradient is far smaller early on."""
    norms = {}
    for loss in ("minimax", "nonsaturating"):
        cfg = make_cfg("device=cpu", f"loss={loss}", "optimizer=adam", "optimizer.lr=0.001", "batch_size=64")
        torch.manual_seed(0)
        gan = GAN(cfg, datasets.load(cfg.dataset, torch.device("cpu")), torch.device("cpu"))
        for _ in range(200):  # train D alone: it learns to reject the untrained G's samples
            stats, _, fake = gan.d_step(64)
        assert fake.mean() < 0.05
        norms[loss] = gan.g_step(64)[1].item()
    assert norms["minimax"] < 0.05 * norms["nonsaturating"], norms


def test_training_logs_theory_and_keeps_best(make_cfg, tmp_path):
    metrics = train(make_cfg(*FAST, "dataset=ring"), tmp_path)
    for tag in ("theory/jsd", "theory/jsd_floor", "theory/value", "theory/d_star_mse", "eval/modes_covered",
                "eval/hq_fraction", "eval/reverse_kl"):
        assert tag in metrics and math.isfinite(metrics[tag]), tag
    assert (tmp_path / "checkpoints" / "best.pt").exists()
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert best["best_value"] <= metrics["theory/jsd"] + 1e-12


def test_best_by_must_be_measured(make_cfg, tmp_path):
    with pytest.raises(UserError, match="eval.best_by=eval/fid is not measured on dataset=ring"):
        train(make_cfg(*FAST, "dataset=ring", "eval.best_by=eval/fid"), tmp_path)


def test_image_metrics_during_training(make_cfg, tmp_path):
    metrics = train(make_cfg(*FAST, f"eval.cache_dir={tmp_path / 'cache'}"), tmp_path / "run")
    for tag in ("eval/parzen_ll", "eval/parzen_se", "eval/parzen_sigma", "eval/fid", "eval/kid", "eval/precision",
                "eval/recall", "eval/fid_floor", "eval/classifier_accuracy"):
        assert tag in metrics and math.isfinite(metrics[tag]), tag
    assert min(abs(metrics["eval/parzen_sigma"] - s) for s in torch.logspace(-1, 0, 10).tolist()) < 1e-6
    assert 0 <= metrics["eval/precision"] <= 1 and metrics["eval/fid"] > metrics["eval/fid_floor"]
    assert list((tmp_path / "cache").glob("digits-*.pt"))


def test_dirac_game_through_the_train_loop(make_cfg, tmp_path):
    """The bilinear game (WGAN without penalty): D loss psi*theta, G loss -psi*theta, from (1, 1).

    Simultaneous steps multiply the distance to (0, 0) by sqrt(1 + lr^2) every iteration (spiral
    out); alternating steps preserve an orbit's area (bounded cycle)."""
    base = ("experiment=dirac", "device=cpu", "loss=wasserstein_gp", "loss.gp_weight=0", "steps=300", "eval_every=300",
            "sample_every=300")
    sim = train(make_cfg(*base, "updates=simultaneous"), tmp_path / "sim")
    alt = train(make_cfg(*base, "updates=alternating"), tmp_path / "alt")
    assert sim["theory/distance"] == pytest.approx(math.sqrt(2) * (1 + 0.1**2) ** (300 / 2), rel=1e-3)
    assert 0.5 < alt["theory/distance"] < 2.5
    tags = events(tmp_path / "sim").Tags()
    assert "theory/trajectory" in tags["images"] and "theory/distance" in tags["scalars"]


def test_cli_theory_tags_and_gan_eval(tmp_path):
    run = tmp_path / "run"
    proc = run_cli(["experiment=figure1", "steps=40", "log_every=20", "eval_every=20", "sample_every=40",
                    "eval.theory_samples=5000", f"hydra.run.dir={run}"])
    assert proc.returncode == 0, proc.stderr
    tags = events(run).Tags()
    assert {"theory/value", "theory/jsd", "theory/d_star_mse", "theory/optimum"} <= set(tags["scalars"])
    assert "theory/figure1" in tags["images"]
    proc = run_cli_eval([str(run), "--samples", "200", "eval.theory_samples=5000"])
    assert proc.returncode == 0, proc.stderr
    report = json.loads((run / "checkpoints" / "eval.json").read_text())
    assert report["step"] == 40 and "theory/jsd" in report["metrics"] and "theory" in report["protocol"]
    assert (run / "checkpoints" / "samples.png").stat().st_size > 0
    assert "theory/jsd" in proc.stdout


def run_cli_eval(args):
    import subprocess
    import sys
    from pathlib import Path

    exe = str(Path(sys.executable).with_name("gan-eval"))
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", ["no-checkpoint", "other-arch", "bad-override"])
def test_gan_eval_bad_input(tmp_path, make_cfg, case):
    if case == "no-checkpoint":
        args, named = [str(tmp_path)], str(tmp_path)
    else:
        train(make_cfg(*FAST), tmp_path / "run")
        bad = "arch=maxout" if case == "other-arch" else "eval.nonsense=1"
        args, named = [str(tmp_path / "run"), bad.replace("arch=maxout", "arch.name=maxout")], "checkpoint" if case == "other-arch" else "eval.nonsense"
    proc = run_cli_eval(args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and named in proc.stderr


def test_a_diverged_generator_skips_evaluation(make_cfg):
    ev, data = evaluator(make_cfg, "ring")
    nan_g = nn.Sequential(nn.Linear(2, 2))
    nn.init.constant_(nan_g[0].bias, float("nan"))
    assert ev.run(nan_g, ConstantD()) == ({}, None)
