"""The training loop in-process: Algorithm 1's update order, every combination, determinism, resume."""

import json
import math

import pytest
import torch

from gan_cli import checkpoint, data as datasets
from gan_cli.config import UserError
from gan_cli.train import GAN, DStep, Stats, train

from .conftest import FAST, QUICK_EVAL


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_d_updates_leave_g_unchanged_and_vice_versa(make_cfg):
    cfg = make_cfg("device=cpu", "batch_size=16")
    torch.manual_seed(0)
    data = datasets.load(cfg.dataset, torch.device("cpu"))
    gan = GAN(cfg, data, torch.device("cpu"))
    g0, d0 = snapshot(gan.G), snapshot(gan.D)
    gan.d_step(16)
    assert same(g0, snapshot(gan.G)), "a D update changed G"
    assert not same(d0, snapshot(gan.D)), "a D update left D unchanged"
    assert all(p.grad is None for p in gan.G.parameters()), "the D step built a graph through G"
    d1 = snapshot(gan.D)
    gan.g_step(16)
    assert same(d1, snapshot(gan.D)), "a G update changed D"
    assert not same(g0, snapshot(gan.G)), "a G update left G unchanged"
    assert all(p.requires_grad for p in gan.D.parameters()), "D was left frozen after the G step"


def test_each_d_step_draws_a_fresh_minibatch(make_cfg, monkeypatch):
    cfg = make_cfg("device=cpu")
    data = datasets.load(cfg.dataset, torch.device("cpu"))
    gan = GAN(cfg, data, torch.device("cpu"))
    drawn = []
    real_sample = data.sample
    monkeypatch.setattr(data, "sample", lambda m: drawn.append(real_sample(m)) or drawn[-1])
    gan.d_step(8)
    gan.d_step(8)
    assert len(drawn) == 2 and not torch.equal(drawn[0], drawn[1])


def test_k_steps_count_updates(make_cfg, tmp_path):
    metrics = train(make_cfg(*FAST, "k=3"), tmp_path)
    assert (metrics["steps"], metrics["d_updates"], metrics["g_updates"]) == (4, 12, 4)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["d_updates"] == 12 and saved["perf/steps_per_s"] > 0


def test_simultaneous_updates_both_nets_from_the_same_parameters(make_cfg, tmp_path):
    cfg = make_cfg("device=cpu", "updates=simultaneous")
    data = datasets.load(cfg.dataset, torch.device("cpu"))
    gan = GAN(cfg, data, torch.device("cpu"))
    g0, d0 = snapshot(gan.G), snapshot(gan.D)
    gan.simultaneous_step(8)
    assert not same(g0, snapshot(gan.G)) and not same(d0, snapshot(gan.D))
    metrics = train(make_cfg(*FAST, "updates=simultaneous"), tmp_path)
    assert metrics["d_updates"] == metrics["g_updates"] == 4
    with pytest.raises(UserError, match="k=2"):
        train(make_cfg(*FAST, "updates=simultaneous", "k=2"), tmp_path / "x")


@pytest.mark.parametrize("loss", ["minimax", "nonsaturating", "maximum_likelihood", "least_squares", "hinge", "wasserstein_gp"])
@pytest.mark.parametrize("arch", ["mlp", "maxout", "dcgan"])
def test_every_loss_and_arch_on_digits(make_cfg, tmp_path, loss, arch):
    extra = ("arch.g_hidden=32", "arch.d_hidden=16") if arch != "dcgan" else ("arch.g_hidden=8", "arch.d_hidden=8")
    if loss == "wasserstein_gp":  # WGAN-GP is trained with Adam; SGD at lr 0.1 can diverge in a few steps
        extra += ("optimizer=adam",)
    metrics = train(make_cfg(*FAST, f"loss={loss}", f"arch={arch}", *extra), tmp_path)
    assert all(math.isfinite(v) for v in metrics.values())
    assert (tmp_path / "checkpoints" / "last.pt").exists()


@pytest.mark.parametrize("dataset", ["ring", "grid", "mixture1d"])
@pytest.mark.parametrize("arch", ["mlp", "maxout"])
def test_toy_datasets(make_cfg, tmp_path, dataset, arch):
    metrics = train(make_cfg(*FAST, f"dataset={dataset}", f"arch={arch}", "arch.g_hidden=16",
                             "arch.d_hidden=8", "prior=normal", "optimizer=adam"), tmp_path)
    assert metrics["g_updates"] == 4 and math.isfinite(metrics["loss/D"])


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("arch", ["maxout", "dcgan"])
def test_image_datasets_from_tiny_files(make_cfg, tmp_path, tiny_mnist, dataset, arch):
    metrics = train(make_cfg(*FAST, f"dataset={dataset}", f"dataset.root={tiny_mnist}", f"arch={arch}",
                             "arch.g_hidden=16", "arch.d_hidden=8"), tmp_path)
    assert math.isfinite(metrics["loss/G"])


def test_same_seed_gives_identical_losses(make_cfg, tmp_path):
    a = train(make_cfg(*FAST, "seed=3"), tmp_path / "a")
    b = train(make_cfg(*FAST, "seed=3"), tmp_path / "b")
    c = train(make_cfg(*FAST, "seed=4"), tmp_path / "c")
    assert a["loss/D"] == b["loss/D"] and a["loss/G"] == b["loss/G"]
    assert a["loss/D"] != c["loss/D"]


@pytest.mark.parametrize("extra", [(), ("arch=maxout", "arch.g_hidden=32", "arch.d_hidden=16", "experiment=paper_mnist",
                                        "dataset=digits", "steps=20", "optimizer.momentum_ramp_steps=20")])
def test_resumed_run_matches_uninterrupted(make_cfg, tmp_path, extra):
    base = ("device=cpu", "batch_size=8", "log_every=5", "sample_every=100", "ckpt_every=10", *QUICK_EVAL, *extra)
    full = train(make_cfg(*base, "steps=20"), tmp_path / "full")
    train(make_cfg(*base, "steps=10"), tmp_path / "half")
    ckpt = tmp_path / "half" / "checkpoints" / "last.pt"
    resumed = train(make_cfg("resume=" + str(ckpt), "steps=20"), tmp_path / "resumed", overrides=["resume=" + str(ckpt), "steps=20"])
    for key in ("loss/D", "loss/G", "D/real_mean", "D/fake_mean", "grad/D", "grad/G"):
        assert resumed[key] == full[key], key
    g_full = checkpoint.load(str(tmp_path / "full" / "checkpoints" / "last.pt"))["G"]
    g_res = checkpoint.load(str(tmp_path / "resumed" / "checkpoints" / "last.pt"))["G"]
    assert all(torch.equal(g_full[k], g_res[k]) for k in g_full)


@pytest.mark.parametrize("name", ["paper_mnist", "ring", "figure1"])
def test_every_experiment_preset_runs(make_cfg, tmp_path, tiny_mnist, name):
    cfg = make_cfg(f"experiment={name}", *FAST, f"dataset.root={tiny_mnist}", "arch.g_hidden=16", "arch.d_hidden=8")
    if name == "paper_mnist":  # the preset's own knobs win over the primary config's
        assert (cfg.batch_size, cfg.optimizer.lr, cfg.optimizer.lr_decay) == (8, 0.1, 1.000004)
        assert make_cfg("experiment=paper_mnist").batch_size == 100
    assert train(cfg, tmp_path)["g_updates"] == 4


def test_d_scale_scales_what_d_minimizes(make_cfg):
    x, fake = torch.rand(8, 1, 8, 8), torch.rand(8, 1, 8, 8)
    a_real, a_fake = torch.randn(8), torch.randn(8)
    values = []
    for scale in ("1.0", "0.5"):
        cfg = make_cfg("device=cpu", f"loss.d_scale={scale}")
        gan = GAN(cfg, datasets.load(cfg.dataset, torch.device("cpu")), torch.device("cpu"))
        values.append(gan._d_loss(x, fake, a_real, a_fake).item())
    assert values[1] == pytest.approx(values[0] / 2)
    assert make_cfg("experiment=paper_mnist").loss.d_scale == 0.5



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



def test_stats_average_each_window_and_start_over(make_cfg):
    cfg = make_cfg("device=cpu")
    gan = GAN(cfg, datasets.load(cfg.dataset, torch.device("cpu")), torch.device("cpu"))
    stats = Stats(gan.nets, torch.device("cpu"), iterations=10)
    scores = torch.tensor([0.5, 0.25])
    for i in range(1, 4):
        stats.add_d(DStep(torch.full((6,), float(i)), scores, 1 - scores))
        stats.add_g(torch.tensor([10.0 * i, 1.0]))
        stats.end_iteration()
    window = stats.read()
    assert list(window) == list(Stats.D_TAGS + Stats.G_TAGS)
    assert window["loss/D"] == 2.0 and window["grad/D"] == 2.0 and window["loss/G"] == 20.0
    assert torch.equal(stats.histograms()["D/fake"], 1 - scores) and stats.path() is None
    stats.add(DStep(torch.zeros(6), scores, scores), torch.zeros(2))
    assert stats.read()["loss/D"] == 0.0  # a new window: the earlier sums are gone


def test_stats_keep_the_path_of_a_game_with_a_point(make_cfg):
    cfg = make_cfg("experiment=dirac", "device=cpu")
    gan = GAN(cfg, datasets.load(cfg.dataset, torch.device("cpu")), torch.device("cpu"))
    stats = Stats(gan.nets, torch.device("cpu"), iterations=5)
    for _ in range(5):
        stats.add_d(gan.d_step(8))
        stats.add_g(gan.g_step(8))
        stats.end_iteration()
    path = stats.path()
    assert path.shape == (6, 2) and path[0].tolist() == [1.0, 1.0]
    assert torch.equal(path[-1], gan.nets.point())
    assert stats.read()["theory/distance"] == pytest.approx(gan.nets.point().norm().item())
