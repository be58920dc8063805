"""Each experiment preset shows the claim it is named after, at its own settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gan_cli import data as datasets
from gan_cli.cli.train import train
from gan_cli.config import UserError
from gan_cli.game import models

from .conftest import FAST, QUICK_EVAL, choices_in_conf, events, run_cli


def _scalars(run_dir, tag):
    return {e.step: e.value for e in events(run_dir).Scalars(tag)}


@pytest.mark.slow
@pytest.mark.longest
def test_figure1_ends_converged_at_its_default_length(make_cfg, tmp_path):
    """The paper's Figure 1 (d): p_g = p_data, D = 1/2: JSD < 0.05, |V-hat + log 4| < 0.1, D*-MSE < 0.01, met by 63 of
    64 seeds trained as a population at its 3,000 iterations (docs/results.md); this is seed 0 trained alone."""
    cfg = make_cfg("experiment=figure1", "device=cpu", "sample_every=100000", "ckpt_every=100000")
    assert cfg.arch.d_dropout_input == 0 and cfg.arch.d_dropout_hidden == 0 and cfg.k == 5
    final = train(cfg, tmp_path)
    assert final["eval/jsd"] < 0.05, final
    assert abs(final["eval/value"] + math.log(4)) < 0.1, final
    assert final["eval/d_star_mse"] < 0.01, final
    assert 0 <= final["theory/d_gap"] < 0.1, final


@pytest.mark.parametrize("loss", ["minimax", "nonsaturating"])
def test_saturation_preset_names_one_optimizer_for_both_losses(make_cfg, loss):
    cfg = make_cfg("experiment=saturation", f"loss={loss}")
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.k) == ("sgd", 0.05, 5)  # no recipe changed them


@pytest.mark.slow
def test_saturation_minimax_gradient_far_below_nonsaturating_early(make_cfg, tmp_path):
    """Sec. 3 of the paper: D rejects a poor G's samples, so log(1 - D(G(z))) saturates."""
    grad, fake = {}, {}
    for loss in ("minimax", "nonsaturating"):
        cfg = make_cfg("experiment=saturation", f"loss={loss}", "device=cpu", "steps=100", "log_every=5",
                       "eval_every=100000", "sample_every=100000", "ckpt_every=100000", *QUICK_EVAL)
        train(cfg, tmp_path / loss)
        grad[loss], fake[loss] = _scalars(tmp_path / loss, "grad/G"), _scalars(tmp_path / loss, "game/D_fake")
    steps = sorted(grad["minimax"])
    assert len(steps) == 20
    ratio = np.mean([grad["minimax"][s] for s in steps]) / np.mean([grad["nonsaturating"][s] for s in steps])
    assert ratio < 0.5, ratio
    assert fake["minimax"][steps[-1]] < 0.05  # D rejects minimax's samples: the saturated regime


def _distances(run_dir):
    d = _scalars(run_dir, "eval/distance")
    return np.array([d[s] for s in sorted(d)])


def test_dirac_default_spirals_out_and_alternating_stays_bounded(make_cfg, tmp_path):
    """The xy game of the reading: simultaneous gradient steps multiply |(theta, psi)| by sqrt(1 + lr^2)
    each step; alternating steps keep it on a bounded orbit."""
    cfg = make_cfg("experiment=dirac", "device=cpu", "steps=200")
    assert (cfg.loss.name, cfg.loss.gp_weight, cfg.updates) == ("wasserstein_gp", 0.0, "simultaneous")
    train(cfg, tmp_path / "sim")
    sim = _distances(tmp_path / "sim")
    assert sim[-1] == pytest.approx(math.sqrt(2) * (1 + 0.1 ** 2) ** (200 / 2), rel=1e-3)
    assert np.all(np.diff(sim) > 0)
    train(make_cfg("experiment=dirac", "device=cpu", "steps=200", "updates=alternating"), tmp_path / "alt")
    alt = _distances(tmp_path / "alt")
    assert alt.max() < 1.1 * math.sqrt(2) and alt.min() > 0.9 * math.sqrt(2) / 1.1


def test_dirac_preset_sweeps_both_update_orders(tmp_path):
    out = run_cli(["-m", "experiment=dirac", "steps=20", "device=cpu", f"hydra.sweep.dir={tmp_path}"])
    assert out.returncode == 0, out.stderr[-2000:]
    jobs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert len(jobs) == 2 and jobs[0].startswith("0_") and jobs[0].endswith("updates=simultaneous")
    assert jobs[1].startswith("1_") and jobs[1].endswith("updates=alternating")


@pytest.mark.parametrize("name, dataset, pack", [("ring", "ring", 1), ("grid", "grid", 1),
                                                 ("ring_pack2", "ring", 2), ("grid_pack2", "grid", 2)])
def test_mode_collapse_presets_follow_the_pacgan_protocol(make_cfg, tmp_path, name, dataset, pack):
    cfg = make_cfg(f"experiment={name}")
    assert ((cfg.dataset.name, cfg.arch.name, cfg.pack, cfg.batch_size, cfg.updates)
            == (dataset, "pacgan", pack, 100, "simultaneous"))
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.beta1, cfg.steps) == ("adam", 1e-4, 0.8, 400000)
    assert (cfg.z_dim, cfg.prior, cfg.eval.mode_samples) == (2, "normal", 2500)
    final = train(make_cfg(f"experiment={name}", *FAST, "eval_every=4"), tmp_path)
    assert 0 <= final["eval/modes_covered"] <= cfg.dataset.n_modes if dataset == "ring" else 25


def test_pack_reads_samples_side_by_side(make_cfg):
    cfg = make_cfg("experiment=ring_pack2", "device=cpu")
    data = datasets.load(cfg.dataset, torch.device("cpu"))
    G, D = models.build(cfg.arch, data, cfg.z_dim, pack=2)
    D.eval()
    x = torch.randn(6, 2)
    a = D(x)
    assert a.shape == (3,)  # one logit per pair
    x2 = x.clone()
    x2[3] += 1.0  # the second sample of the second pair
    b = D(x2)
    assert a[0] == b[0] and a[2] == b[2] and a[1] != b[1]
    # the first layer reads both samples of a pair
    assert D.body[1].linear.in_features == 4


def test_pack_draws_pack_times_the_batch(make_cfg, tmp_path):
    from gan_cli.game.updates import GAN
    cfg = make_cfg("experiment=ring_pack2", "device=cpu", "batch_size=8")
    gan = GAN(cfg, datasets.load(cfg.dataset, torch.device("cpu")), torch.device("cpu"))
    step = gan.d_step(cfg.batch_size)
    assert step.real.shape == (8,) and step.fake.shape == (8,)  # 8 packed examples per side: 16 points each


@pytest.mark.parametrize("override, message", [("pack=0", "pack=0 is not allowed"),
                                               ("arch=dcgan", "pack=2 needs a D that reads flat vectors")])
def test_pack_bad_values_are_one_line_errors(make_cfg, override, message):
    from gan_cli.cli.checks import check
    extra = ("dataset=digits",) if override == "arch=dcgan" else ()
    with pytest.raises(UserError, match=message):
        check(make_cfg("experiment=ring_pack2", *extra, override))


def test_every_preset_is_tested_here():
    assert choices_in_conf("experiment") == {"figure1", "figure1_two_modes", "saturation", "dirac", "ring", "grid",
                                             "ring_pack2", "grid_pack2", "paper_mnist"}


def test_figure1_is_one_gaussian_and_its_two_mode_variant_is_the_same_game(make_cfg):
    """The paper's Figure 1 has one Gaussian p_data; figure1_two_modes builds on figure1 (every setting but the
    data, the prior and the length, over which the learning rate still decays 10x), and a loss's recipe does not
    override what either preset sets (loss=minimax keeps Adam at 3e-4)."""
    one, two = make_cfg("experiment=figure1"), make_cfg("experiment=figure1_two_modes")
    assert list(one.dataset.means) == [0.0] and list(two.dataset.means) == [-2.0, 2.0]
    for cfg in (one, two):
        assert cfg.optimizer.lr_decay ** cfg.steps == pytest.approx(10, rel=0.01)
    one.dataset.means, one.dataset.weights = two.dataset.means, two.dataset.weights
    one.steps, one.optimizer.lr_decay, one.prior = two.steps, two.optimizer.lr_decay, two.prior
    assert one == two
    minimax = make_cfg("experiment=figure1_two_modes", "loss=minimax")
    assert (minimax.optimizer.name, minimax.optimizer.lr, minimax.k) == ("adam", 0.0003, 5)


@pytest.mark.slow
def test_dirac_spiralling_past_what_histograms_bin_keeps_training(make_cfg, tmp_path, caplog):
    """One job of the README's Dirac sweep (alternating, momentum 0.5, linear loss) grows past 1e20,
    where TensorBoard cannot bin a histogram: the run goes on, warns once, logs its scalars."""
    cfg = make_cfg("experiment=dirac", "device=cpu", "updates=alternating", "optimizer.momentum=0.5")
    final = train(cfg, tmp_path)
    assert final["eval/distance"] > 1e13 and final["steps"] == 1000
    # once, for spread/D_fake (spread/D_real = psi * 0 stays 0)
    warned = [r.message.split()[0] for r in caplog.records if "TensorBoard's histograms bin" in r.message]
    assert warned == ["spread/D_fake"]
    assert max(e.step for e in events(tmp_path).Histograms("spread/D_fake")) < 1000
