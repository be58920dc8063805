"""theory/ and eval/ during training, the table of metric facts, and the Dirac game."""

import math

import pytest
import torch
from torch import nn

from gan_cli import data as datasets
from gan_cli.cli.train import train
from gan_cli.config import UserError
from gan_cli.evaluation import evaluate
from gan_cli.game import losses
from gan_cli.game.models import Nets
from gan_cli.game.updates import GAN

from .conftest import EVAL_FAST, events


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
    cfg = make_cfg(f"dataset={dataset}", f"loss={loss}", "eval.theory_samples=20000", "prior=normal", "z_dim=2")
    data = datasets.load(cfg.dataset, torch.device("cpu"))
    return evaluate.Evaluator(cfg, data, torch.device("cpu")), data


def test_theory_at_the_global_optimum(make_cfg):
    # p_g = p_data and D = 1/2: V = -log 4 exactly, D* = 1/2 so (D - D*)^2 ~ 0, JSD ~ its floor
    ev, data = evaluator(make_cfg, "mixture1d")
    torch.manual_seed(0)
    scalars, curves = ev.theory(Nets(DataSampler(data), ConstantD(0.0))), ev.curves
    assert scalars["eval/value"] == pytest.approx(-math.log(4), abs=1e-6)
    assert "theory/optimum" not in scalars  # a constant, -log 4: not a figure
    assert scalars["eval/jsd"] < 2.5e-3  # the floor (the estimator's bias at this size) is subtracted
    assert scalars["eval/d_star_mse"] < 0.01
    assert set(curves) == {"x", "p_data", "p_g", "D", "D_star"}


def test_theory_far_from_the_optimum(make_cfg):
    # a generator stuck at one point: JSD near log 2, V-hat below C(G) = -log 4 + 2 JSD
    ev, data = evaluator(make_cfg, "mixture1d")
    stuck = nn.Sequential(nn.Linear(2, 1))
    nn.init.zeros_(stuck[0].weight)
    nn.init.constant_(stuck[0].bias, 7.0)
    scalars = ev.theory(Nets(stuck, ConstantD(0.0)))
    assert scalars["eval/jsd"] == pytest.approx(math.log(2), abs=0.01)
    assert scalars["eval/value"] <= scalars["theory/c_of_g"] + 1e-6


def test_mode_metrics_of_a_perfect_ring_generator(make_cfg):
    ev, data = evaluator(make_cfg, "ring")
    torch.manual_seed(0)
    modes = ev.modes(Nets(DataSampler(data), ConstantD()))
    assert modes["eval/modes_covered"] == 8 and modes["eval/hq_fraction"] > 0.98
    assert modes["eval/reverse_kl"] < 0.01 and modes["eval/mode_samples"] == 2500


def test_training_logs_theory_and_keeps_best(make_cfg, tmp_path):
    metrics = train(make_cfg(*EVAL_FAST, "dataset=ring"), tmp_path)
    for tag in ("eval/jsd", "eval/jsd_floor", "eval/value", "eval/d_star_mse", "eval/modes_covered",
                "eval/hq_fraction", "eval/reverse_kl"):
        assert tag in metrics and math.isfinite(metrics[tag]), tag
    assert (tmp_path / "checkpoints" / "best.pt").exists()
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert best["best_value"] <= metrics["eval/jsd"] + 1e-12


def test_best_by_must_be_measured(make_cfg, tmp_path):
    with pytest.raises(UserError, match="eval.best_by=eval/fid is not measured on dataset=ring"):
        train(make_cfg(*EVAL_FAST, "dataset=ring", "eval.best_by=eval/fid"), tmp_path)


def test_image_metrics_during_training(make_cfg, tmp_path):
    metrics = train(make_cfg(*EVAL_FAST, f"eval.cache_dir={tmp_path / 'cache'}"), tmp_path / "run")
    for tag in ("eval/parzen_ll", "spread/parzen_se", "spread/parzen_sigma", "eval/fid", "eval/kid", "eval/precision",
                "eval/recall", "eval/fid_floor", "eval/classifier_accuracy"):
        assert tag in metrics and math.isfinite(metrics[tag]), tag
    assert min(abs(metrics["spread/parzen_sigma"] - s) for s in torch.logspace(-1, 0, 10).tolist()) < 1e-6
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
    assert sim["eval/distance"] == pytest.approx(math.sqrt(2) * (1 + 0.1**2) ** (300 / 2), rel=1e-3)
    assert 0.5 < alt["eval/distance"] < 2.5
    tags = events(tmp_path / "sim").Tags()
    assert "game/trajectory" in tags["images"] and "eval/distance" in tags["scalars"]


def test_a_diverged_generator_skips_evaluation(make_cfg):
    ev, data = evaluator(make_cfg, "ring")
    nan_g = nn.Sequential(nn.Linear(2, 2))
    nn.init.constant_(nan_g[0].bias, float("nan"))
    assert ev.run(Nets(nan_g, ConstantD())) == ({}, None)



def test_every_figure_an_evaluation_writes_is_in_the_table_of_facts(make_cfg, tmp_path):
    known = {tag for m in evaluate.METRICS for tag in m.tags}
    for name, extra in (("ring", ("dataset=ring",)), ("digits", ()), ("dirac", ("experiment=dirac", "steps=4"))):
        metrics = train(make_cfg(*EVAL_FAST, *extra, f"eval.cache_dir={tmp_path / 'cache'}"), tmp_path / name)
        written = {k for k in metrics if k.startswith(("eval/", "theory/"))}
        assert written and written <= known, (name, written - known)


@pytest.mark.parametrize("overrides,auto", [
    ((), "eval/fid"), (("dataset=ring",), "eval/jsd"), (("experiment=figure1",), "eval/jsd"),
    (("experiment=dirac",), "eval/distance"), (("dataset=mixture1d", "arch=dirac"), "eval/jsd"),
    (("dataset=dirac",), None),  # a point mass with an ordinary G: nothing to rank by
])
def test_best_by_auto_follows_the_table(make_cfg, overrides, auto):
    cfg = make_cfg(*overrides)
    assert evaluate.best_metric("auto", evaluate.families(cfg)) == auto
    assert evaluate.best_metric("eval/recall", evaluate.families(cfg)) == "eval/recall"


def test_what_can_rank_runs_depends_on_the_data_and_the_loss(make_cfg):
    assert evaluate.rankable(evaluate.families(make_cfg()), True) == (
        "eval/parzen_ll", "eval/fid", "eval/kid", "eval/precision", "eval/recall")
    ring = evaluate.families(make_cfg("dataset=ring"))
    assert "eval/value" in evaluate.rankable(ring, True) and "eval/value" not in evaluate.rankable(ring, False)
    evaluate.check(make_cfg("dataset=ring", "eval.best_by=eval/modes_covered"))
    with pytest.raises(UserError,
                       match="eval.best_by=eval/d_star_mse is not measured on dataset=ring with loss=hinge"):
        evaluate.check(make_cfg("dataset=ring", "loss=hinge", "eval.best_by=eval/d_star_mse"))


def test_better_goes_the_way_the_table_says():
    assert evaluate.is_better("eval/parzen_ll", 2.0, 1.0) and not evaluate.is_better("eval/fid", 2.0, 1.0)
    assert evaluate.is_better("eval/modes_covered", 8, 7) and evaluate.is_better("eval/jsd", 0.1, 0.2)
    assert evaluate.is_better("eval/fid", 5.0, None) and not evaluate.is_better("eval/fid", math.nan, None)


def test_protocol_texts_name_how_each_family_was_measured(make_cfg):
    cfg = make_cfg("dataset=ring")
    ev = evaluate.Evaluator(cfg, datasets.load(cfg.dataset, torch.device("cpu")), torch.device("cpu"))
    assert set(ev.protocol()) == {"theory", "modes"} and "2500 samples" in ev.protocol()["modes"]
    cfg = make_cfg()
    ev = evaluate.Evaluator(cfg, datasets.load(cfg.dataset, torch.device("cpu")), torch.device("cpu"))
    assert set(ev.protocol()) == {"parzen", "features"}
    assert ev.protocol()["parzen"].endswith("(digits: the 297 held-out images are both)")


@pytest.mark.parametrize("dataset", ["mixture1d", "ring", "grid"])
def test_d_star_is_one_half_for_a_perfect_generator(make_cfg, dataset):
    ev, data = evaluator(make_cfg, dataset)
    torch.manual_seed(0)
    scalars = ev.theory(Nets(DataSampler(data), ConstantD(0.0)))
    assert scalars["eval/d_star_mse"] < 1e-3 and scalars["eval/jsd"] < 0.01
    assert scalars["theory/d_gap"] == pytest.approx(2 * scalars["eval/jsd"], abs=1e-6)  # D = 1/2 gives V = -log 4


class HalfStd(nn.Module):
    """A fixed generator: the data's modes with half their std."""

    def __init__(self, data):
        super().__init__()
        self.data = data

    def forward(self, z):
        mode = torch.multinomial(self.data.weights, z.shape[0], replacement=True)
        return self.data.centres[mode] + self.data.std / 2 * torch.randn(z.shape[0], self.data.centres.shape[1])


@pytest.mark.slow
def test_a_d_trained_against_a_fixed_g_stays_below_c_of_g(make_cfg):
    """V(D, G) <= max_D V(D, G) = C(G) (Theorem 1): the gap d_gap = C(G) - V-hat is >= 0 and
    shrinks as D learns; D* - MSE shrinks with it."""
    cfg = make_cfg("dataset=mixture1d", "device=cpu", "arch.d_dropout_input=0", "arch.d_dropout_hidden=0",
                   "optimizer=adam", "optimizer.lr=0.002", "eval.theory_samples=20000")
    data = datasets.load(cfg.dataset, torch.device("cpu"))
    torch.manual_seed(0)
    gan = GAN(cfg, data, torch.device("cpu"))
    G = HalfStd(data)
    ev = evaluate.Evaluator(cfg, data, torch.device("cpu"))
    before = ev.theory(Nets(G, gan.D))
    for _ in range(500):
        x, fake = data.sample(256), G(torch.zeros(256, 1))
        loss = losses.d_cross_entropy(gan.D(x), gan.D(fake))
        gan.opt_D.zero_grad()
        loss.backward()
        gan.opt_D.step()
    after = ev.theory(Nets(G, gan.D))
    assert after["eval/jsd"] == pytest.approx(0.0927, rel=0.1)  # quadrature: JSD of N(m, s²) and N(m, s²/4)
    for s in (before, after):
        assert s["eval/value"] <= s["theory/c_of_g"] + 0.01 and s["theory/d_gap"] >= -0.01
    assert after["theory/d_gap"] < before["theory/d_gap"] and after["eval/d_star_mse"] < before["eval/d_star_mse"]


class Replay(nn.Module):
    """A generator that replays the given images in order, whatever z is."""

    def __init__(self, images):
        super().__init__()
        self.images, self.i = images, 0

    def forward(self, z):
        idx = (self.i + torch.arange(z.shape[0])) % len(self.images)
        self.i += z.shape[0]
        return self.images[idx]


def test_the_floors_and_the_run_compare_the_same_sample_sizes(make_cfg, tmp_path):
    """digits has 297 held-out images: the run's 1,000 samples are compared with the 1,000-image
    reference as 3 sets of 297 (the floor's size), averaged; replaying the held-out images reads the floor."""
    cfg = make_cfg("eval.n_samples=1000", "eval.classifier_steps=30", f"eval.cache_dir={tmp_path}", "device=cpu")
    data = datasets.load(cfg.dataset, torch.device("cpu"))
    ev = evaluate.Evaluator(cfg, data, torch.device("cpu"))
    scalars = ev.features(Nets(Replay(data.test), ConstantD()))
    assert scalars["eval/reference_samples"] == 1000 and scalars["eval/feature_samples"] == len(data.test) == 297
    for key in ("fid", "precision", "recall"):
        assert scalars[f"eval/{key}"] == pytest.approx(scalars[f"eval/{key}_floor"], rel=1e-9), key
    assert abs(scalars["eval/kid"] - scalars["eval/kid_floor"]) < 3 * scalars["spread/kid_std"]
    assert "1000 training images" in ev.protocol()["features"] and "3 disjoint sets of 297" in ev.protocol()["features"]
    # MNIST-sized splits: 10,000 samples against 10,000 held-out images, one set
    assert evaluate.feature_sizes(10000, 50000, 10000) == (10000, 10000, 1)
    assert evaluate.feature_sizes(20000, 50000, 10000) == (20000, 10000, 2)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["mixture1d", "ring"])
def test_theory_keeps_what_depends_on_the_real_samples_alone(make_cfg, monkeypatch, dataset):
    """The JSD floor and p_data's k-NN density at the real points are computed at the first evaluation
    and reused; every figure equals a fresh evaluator's, for the same G and after G changes."""
    from gan_cli.evaluation import metrics

    cfg = make_cfg(f"dataset={dataset}", "eval.theory_samples=20000", "eval.mode_samples=500")
    data = datasets.load(cfg.dataset, torch.device("cpu"))
    torch.manual_seed(0)
    nets = GAN(cfg, data, torch.device("cpu")).nets
    trees = []
    tree = metrics.NeighbourTree

    def counted(samples):
        trees.append(len(samples))
        return tree(samples)

    monkeypatch.setattr(metrics, "NeighbourTree", counted)
    ev = evaluate.Evaluator(cfg, data, torch.device("cpu"))
    first, _ = ev.run(nets)
    assert len(trees) == 2  # G's samples' k-d tree and the second real sample's (the floor, p_data for D*)
    again, _ = ev.run(nets)
    assert len(trees) == 3 and again == first  # the floor and the real samples' tree kept
    with torch.no_grad():
        for p in nets.G.parameters():
            p.mul_(0.5)
    moved, _ = ev.run(nets)
    fresh, _ = evaluate.Evaluator(cfg, data, torch.device("cpu")).run(nets)
    assert moved == fresh and moved["eval/value"] != first["eval/value"]
    # other real samples (another seed): the kept values are not used for them
    ev.seed = 1
    reseeded, _ = ev.run(nets)
    ev1 = evaluate.Evaluator(cfg, data, torch.device("cpu"))
    ev1.seed = 1
    assert reseeded == ev1.run(nets)[0] and reseeded["eval/jsd_floor"] != first["eval/jsd_floor"]


@pytest.mark.slow
@pytest.mark.parametrize("dataset, n", [("mixture1d", 20000), ("ring", 20000), ("grid", 6000)])
def test_theory_is_the_estimators_of_metrics(make_cfg, dataset, n):
    """Evaluator.theory shares neighbour searches between the JSD (k) and D* (k*) and keeps the real
    samples' tree; its figures are exactly those of metrics' functions (the ones tested against
    quadrature), for a G near p_data (the JSD not clamped) and more or fewer than 10,000 samples."""
    from gan_cli.evaluation import metrics

    cfg = make_cfg(f"dataset={dataset}", f"eval.theory_samples={n}")
    data = datasets.load(cfg.dataset, torch.device("cpu"))
    torch.manual_seed(0)
    nets = GAN(cfg, data, torch.device("cpu")).nets

    class Wider(torch.nn.Module):  # p_data's modes, each twice as wide (its mode chosen by z's first coordinate)
        def forward(self, z):
            pick = (z[:, 0].abs() * 1000).long() % len(data.centres)
            return data.centres[pick] + 2 * data.std * z[:, 1:1 + data.dim]

    nets = nets.with_G(Wider())
    ev = evaluate.Evaluator(cfg, data, torch.device("cpu"))
    for _ in range(2):  # the first evaluation and one with the kept values
        ev.generator.manual_seed(ev.seed)
        fake = ev.generate(nets.G, n)
        real, other = data.sample(n, generator=ev.generator), data.sample(n, generator=ev.generator)
        ev.generator.manual_seed(ev.seed)
        got = ev.theory(nets)
        k, K, m = cfg.eval.knn, cfg.eval.knn_d_star, min(n, 10000)
        def knn(x, samples, neighbours, exclude_self=False):
            return metrics.NeighbourTree(samples).log_density(x, [neighbours], exclude_self)[0]
        log_p = data.log_prob
        floor = metrics.jsd_from_log_densities(log_p(real).double(), knn(real, other, k),
                                               log_p(other).double(), knn(other, other, k, exclude_self=True))
        jsd = metrics.jsd_corrected(log_p(real).double(), knn(real, fake, k),
                                    log_p(fake).double(), knn(fake, fake, k, exclude_self=True), floor)
        assert 0.01 < got["eval/jsd"] < 0.6
        assert got["eval/jsd"] == jsd.item() and got["eval/jsd_floor"] == floor.item()
        with torch.no_grad():
            d_real, d_fake = torch.sigmoid(nets.D(real[:m])), torch.sigmoid(nets.D(fake[:m]))
        d_star = metrics.d_star_mse_samples(d_real, d_fake, knn(real[:m], other, K), knn(real[:m], fake, K),
                                            knn(fake[:m], other, K), knn(fake[:m], fake, K, exclude_self=True))
        assert got["eval/d_star_mse"] == pytest.approx(d_star.item(), rel=1e-12)
