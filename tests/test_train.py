"""The training loop in-process: Algorithm 1's update order, every combination, determinism, resume."""

import json
import math
import os
import signal
import subprocess
import sys

import pytest
import torch

from gan_cli import data as datasets
from gan_cli.cli.train import Bookkeeping, Diverged, Interrupted, StopRequest, train
from gan_cli.config import UserError
from gan_cli.game import losses, optim
from gan_cli.game.updates import GAN, DStep, Stats
from gan_cli.runs import checkpoint

from .conftest import FAST, QUICK_EVAL, events


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
    monkeypatch.setattr(data, "sample", lambda m, g=None: drawn.append(real_sample(m, g)) or drawn[-1])
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


@pytest.mark.parametrize("loss", ["minimax", "nonsaturating", "maximum_likelihood", "least_squares", "hinge",
                                  "wasserstein_gp"])
@pytest.mark.parametrize("arch", ["mlp", "maxout", "dcgan"])
def test_every_loss_and_arch_on_digits(make_cfg, tmp_path, loss, arch):
    extra = ("arch.g_hidden=32", "arch.d_hidden=16") if arch != "dcgan" else ("arch.g_hidden=8", "arch.d_hidden=8")
    if loss == "wasserstein_gp":  # WGAN-GP is trained with Adam; SGD at lr 0.1 can diverge in a few steps
        extra += ("optimizer=adam",)
    metrics = train(make_cfg(*FAST, f"loss={loss}", f"arch={arch}", *extra), tmp_path)
    assert metrics["status"] == "ok" and all(math.isfinite(v) for k, v in metrics.items() if k != "status")
    assert (tmp_path / "checkpoints" / "last.pt").exists()


@pytest.mark.parametrize("dataset", ["ring", "grid", "mixture1d"])
@pytest.mark.parametrize("arch", ["mlp", "maxout"])
def test_toy_datasets(make_cfg, tmp_path, dataset, arch):
    metrics = train(make_cfg(*FAST, f"dataset={dataset}", f"arch={arch}", "arch.g_hidden=16",
                             "arch.d_hidden=8", "prior=normal", "optimizer=adam"), tmp_path)
    assert metrics["g_updates"] == 4 and math.isfinite(metrics["game/loss_D"])


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("arch", ["maxout", "dcgan"])
def test_image_datasets_from_tiny_files(make_cfg, tmp_path, tiny_mnist, dataset, arch):
    metrics = train(make_cfg(*FAST, f"dataset={dataset}", f"dataset.root={tiny_mnist}", f"arch={arch}",
                             "arch.g_hidden=16", "arch.d_hidden=8"), tmp_path)
    assert math.isfinite(metrics["game/loss_G"])


def test_same_seed_gives_identical_losses(make_cfg, tmp_path):
    a = train(make_cfg(*FAST, "seed=3"), tmp_path / "a")
    b = train(make_cfg(*FAST, "seed=3"), tmp_path / "b")
    c = train(make_cfg(*FAST, "seed=4"), tmp_path / "c")
    assert a["game/loss_D"] == b["game/loss_D"] and a["game/loss_G"] == b["game/loss_G"]
    assert a["game/loss_D"] != c["game/loss_D"]


@pytest.mark.parametrize("extra", [(), ("arch=maxout", "arch.g_hidden=32", "arch.d_hidden=16", "experiment=paper_mnist",
                                        "dataset=digits", "steps=20", "optimizer.momentum_ramp_steps=20")])
def test_resumed_run_matches_uninterrupted(make_cfg, tmp_path, extra):
    base = ("device=cpu", "batch_size=8", "log_every=5", "sample_every=100", "ckpt_every=10", *QUICK_EVAL, *extra)
    full = train(make_cfg(*base, "steps=20"), tmp_path / "full")
    train(make_cfg(*base, "steps=10"), tmp_path / "half")
    ckpt = tmp_path / "half" / "checkpoints" / "last.pt"
    resumed = train(make_cfg("resume=" + str(ckpt), "steps=20"), tmp_path / "resumed",
                    overrides=["resume=" + str(ckpt), "steps=20"])
    for key in ("game/loss_D", "game/loss_G", "game/D_real", "game/D_fake", "grad/D", "grad/G"):
        assert resumed[key] == full[key], key
    g_full = checkpoint.load(str(tmp_path / "full" / "checkpoints" / "last.pt"))["G"]
    g_res = checkpoint.load(str(tmp_path / "resumed" / "checkpoints" / "last.pt"))["G"]
    assert all(torch.equal(g_full[k], g_res[k]) for k in g_full)


@pytest.mark.parametrize("name", ["paper_mnist", "ring", "figure1"])
def test_every_experiment_preset_runs(make_cfg, tmp_path, tiny_mnist, name):
    cfg = make_cfg(f"experiment={name}", *FAST, f"dataset.root={tiny_mnist}", "arch.g_hidden=16", "arch.d_hidden=8")
    if name == "paper_mnist":  # the preset's own knobs win over the primary config's
        assert (cfg.batch_size, cfg.optimizer.lr, cfg.optimizer.lr_decay) == (8, 0.1, 1.000004)
        paper = make_cfg("experiment=paper_mnist")
        assert (paper.batch_size, paper.updates, paper.k) == (100, "simultaneous", 1)  # the authors' code's update
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
    assert window["game/loss_D"] == 2.0 and window["grad/D"] == 2.0 and window["game/loss_G"] == 20.0
    assert torch.equal(stats.histograms()["spread/D_fake"], 1 - scores) and stats.path() is None
    stats.add(DStep(torch.zeros(6), scores, scores), torch.zeros(2))
    assert stats.read()["game/loss_D"] == 0.0  # a new window: the earlier sums are gone


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
    assert stats.read()["eval/distance"] == pytest.approx(gan.nets.point().norm().item())


RESUMED_TAGS = ("game/loss_D", "game/loss_G", "game/D_real", "spread/D_real_std", "game/D_fake", "spread/D_fake_std",
                "grad/D", "grad/G")


def logged_after(run_dir, step):
    acc = events(run_dir)
    return {t: [(e.step, e.value) for e in acc.Scalars(t) if e.step > step] for t in RESUMED_TAGS}


def stop_at(monkeypatch, iteration, signum=signal.SIGUSR1):
    """Send the process a real signal during ``iteration``, as a cluster or Ctrl-C would."""
    after = Bookkeeping.after

    def patched(self, it):
        if it == iteration:
            os.kill(os.getpid(), signum)
        after(self, it)

    monkeypatch.setattr(Bookkeeping, "after", patched)


@pytest.mark.slow
@pytest.mark.parametrize("extra,stop", [
    (("dataset=ring", "sample_every=3"), "final"),  # the finished run drew samples and evaluated at its end
    (("updates=simultaneous", "optimizer=adam"), "final"),
    (("dataset=mixture1d", "k=3", "optimizer=adam"), "final"),
    (("experiment=dirac",), "final"),
    (("dataset=grid", "optimizer=adam", "eval_every=4"), "interrupt"),
    (("k=2",), "interrupt"),
    # the moving average of G (batch norm's statistics too), begun after iteration 3, G evaluated beside it
    (("dataset=ring", "arch=pacgan", "arch.g_hidden=16", "arch.d_hidden=8", "ema.decay=0.9", "ema.start=3",
      "ema.also_raw=true", "eval_every=3", "sample_every=3"), "interrupt"),
    (("ema.decay=0.5", "eval_every=6"), "final"),
])
def test_resume_is_exact_from_any_checkpoint(make_cfg, tmp_path, monkeypatch, extra, stop):
    """Every logged statistic after the checkpoint's iteration is bit-identical to an uninterrupted
    run; windows (log_every=5) that the stop cut in two are continued, not restarted."""
    base = ("device=cpu", "batch_size=8", "log_every=5", "seed=7", "eval.theory_samples=2000", "eval.mode_samples=500",
            "eval.n_samples=300", "eval.classifier_steps=30", *extra)
    full = train(make_cfg(*base, "steps=12"), tmp_path / "full")
    if stop == "final":
        train(make_cfg(*base, "steps=6"), tmp_path / "first")
    else:
        stop_at(monkeypatch, 6)
        with pytest.raises(Interrupted,
                           match="interrupted \\(SIGUSR1\\) at iteration 6; continue with: gan-train resume="):
            train(make_cfg(*base, "steps=12"), tmp_path / "first")
        monkeypatch.undo()
        assert json.loads((tmp_path / "first" / "metrics.json").read_text())["status"] == "interrupted"
    resume = [f"resume={tmp_path / 'first'}", "steps=12"]
    resumed = train(make_cfg(*resume), tmp_path / "resumed", overrides=resume)
    assert logged_after(tmp_path / "resumed", 6) == logged_after(tmp_path / "full", 6)
    assert [s for s, _ in logged_after(tmp_path / "full", 6)["game/loss_D"]] == [10, 12]
    for key in ("game/loss_D", "game/loss_G", "d_updates", "g_updates"):
        assert resumed[key] == full[key], key
    for net in ("G", "G_ema"):
        g_full = checkpoint.load(tmp_path / "full" / "checkpoints" / "last.pt").get(net, {})
        g_res = checkpoint.load(tmp_path / "resumed" / "checkpoints" / "last.pt").get(net, {})
        assert g_full.keys() == g_res.keys() and all(torch.equal(g_full[k], g_res[k]) for k in g_full), net


def test_a_stop_request_waits_for_the_iteration_and_a_second_ctrl_c_aborts():
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background job ignores it)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM  # recorded, nothing raised
        stop.signum = signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    signal.signal(signal.SIGINT, before)


def test_divergence_is_caught_before_anything_of_the_window_is_written(make_cfg, tmp_path):
    cfg = make_cfg(*FAST, "dataset=mixture1d", "loss=least_squares", "optimizer=sgd", "optimizer.lr=10", "steps=200",
                   "log_every=50", "ckpt_every=1")
    with pytest.raises(Diverged,
                       match=r"^training diverged at iteration \d+: .* not finite; the last good checkpoint is "):
        train(cfg, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "diverged"
    saved = checkpoint.load(tmp_path / "checkpoints" / "last.pt")
    assert 0 < saved["step"] <= metrics["steps"]
    assert all(torch.isfinite(v).all() for net in ("G", "D") for v in saved[net].values())
    assert "game/loss_D" not in events(tmp_path).Tags()["scalars"] or all(
        math.isfinite(e.value) for e in events(tmp_path).Scalars("game/loss_D"))


def test_a_minibatch_of_one_is_not_a_divergence(make_cfg, tmp_path):
    metrics = train(make_cfg(*FAST, "batch_size=1", "optimizer=adam"), tmp_path)
    assert metrics["status"] == "ok" and metrics["spread/D_real_std"] == 0.0


def test_the_gradient_penalty_sees_d_without_dropout(make_cfg, monkeypatch):
    cfg = make_cfg("device=cpu", "loss=wasserstein_gp")
    gan = GAN(cfg, datasets.load(cfg.dataset, torch.device("cpu")), torch.device("cpu"))
    assert any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in gan.D.modules())
    modes = []
    penalty = losses.gradient_penalty
    monkeypatch.setattr(losses, "gradient_penalty",
                        lambda D, x, f, *g: modes.append(D.training) or penalty(D, x, f, *g))
    gan.d_step(8)
    assert modes == [False] and gan.D.training


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["mixture1d", "ring", "grid", "digits"])
@pytest.mark.parametrize("loss", sorted(losses.LOSSES))
def test_every_loss_trains_with_its_defaults(make_cfg, tmp_path, loss, dataset):
    """As a user types it (`gan-train loss=X dataset=Y`): 300 iterations, no divergence.
    scripts/check_defaults.py runs the same matrix for longer."""
    metrics = train(make_cfg(f"loss={loss}", f"dataset={dataset}", "steps=300", "log_every=100", "eval_every=300",
                             "sample_every=300", "ckpt_every=300", "device=cpu", *QUICK_EVAL), tmp_path)
    assert metrics["status"] == "ok" and all(math.isfinite(v) for k, v in metrics.items() if k != "status")


class _Window:
    """A log window whose means are given (the stand-in for Stats in Bookkeeping.log)."""

    def __init__(self, values):
        self.values = values

    def read(self, flush=True):
        return dict(self.values)

    def histograms(self):
        return {}


class _Monitor:
    def __init__(self):
        self.warnings = []

    def log_window(self, it, scalars, hists):
        return scalars

    def warn(self, message):
        self.warnings.append(message)


# (game/D_real, game/D_fake, game/loss_D) of a window where D has won, and of one where it has not (see test_losses.WON)
DEAD_D = {
    "minimax": ((0.995, 0.004, 5.9), (0.9, 0.1, 0.2)),
    "nonsaturating": ((0.995, 0.004, 5.9), (0.995, 0.02, 0.03)),
    "maximum_likelihood": ((0.999, 0.001, 7.0), (0.98, 0.004, 0.03)),
    "least_squares": ((0.98, 0.03, 0.008), (1.0, 0.0, 0.02)),
    "hinge": ((1.6, -1.7, 0.0), (1.6, -1.7, 0.01)),
    # a critic has no such state: the warning never fires, however far apart its scores are
    "wasserstein_gp": (None, (50.0, -50.0, -100.0)),
}


@pytest.mark.parametrize("loss", sorted(DEAD_D))
def test_the_d_has_won_warning_fires_by_each_losss_criterion(make_cfg, tmp_path, loss):
    cfg = make_cfg("device=cpu", f"loss={loss}", "loss.d_scale=0.5")
    gan = GAN(cfg, datasets.load(cfg.dataset, torch.device("cpu")), torch.device("cpu"))
    dead, alive = DEAD_D[loss]

    def warnings_after(*windows):
        monitor = _Monitor()
        book = Bookkeeping(cfg, gan, checkpoint.State(gan.G, gan.D), None, optim.Schedule(cfg.optimizer),
                           type("Ev", (), {"families": ("image",)})(), monitor, tmp_path)
        for it, (real, fake, loss_d) in enumerate(windows, 1):
            # game/loss_D is what D minimised: d_scale (0.5 here) times the pair's loss
            book.stats = _Window({"game/loss_D": 0.5 * loss_d, "game/D_real": real, "game/D_fake": fake,
                                  "game/loss_G": 1.0})
            book.log(it * 100)
        return monitor.warnings

    assert warnings_after(alive, alive) == []
    if dead is not None:
        warned = warnings_after(alive, dead, dead)
        assert len(warned) == 1 and warned[0].startswith("iteration 200: ") and f"loss={loss}" in warned[0]


@pytest.mark.slow
@pytest.mark.parametrize("run, unneeded", [
    ("experiment=ring", ("torch._dynamo", "torch._inductor", "torchvision", "sklearn", "sympy",
                         "torch.distributed.tensor")),
    ("dataset=digits", ("torch._dynamo", "torch._inductor", "torchvision", "sklearn", "scipy", "matplotlib", "sympy",
                        "torch.distributed.tensor")),
])
def test_a_short_run_loads_only_what_it_needs(tmp_path, run, unneeded):
    # start-up: torch's compiler stack (imported by torch.optim's guards and by torchvision.ops, ~2 s),
    # torchvision (its grid is monitor.image_grid) and scikit-learn (its digits file is read directly)
    # are not needed by a ring run or by the default run (digits, with every metric); SciPy's k-d tree
    # and matplotlib's figures only by toy data. SymPy and torch.distributed.tensor come with the first normal_ on
    # the meta device (~1.3 s), where the memory estimate builds the networks: no init is run there.
    # The checkpoint, metrics and samples are still written (ring: a small evaluation, the same searches)
    code = ("import sys; from gan_cli.cli.train import cli; sys.argv = ['gan-train'] + sys.argv[1:]\n"
            "import atexit; atexit.register(lambda: print('LOADED', sorted(m for m in "
            f"{unneeded!r} if m in sys.modules)))\n"
            "cli()")
    small = ["eval.theory_samples=2000"] if run == "experiment=ring" else []
    proc = subprocess.run([sys.executable, "-c", code, run, "steps=2", *small, f"hydra.run.dir={tmp_path}/run"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout
    report = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert report["steps"] == 2
    if run == "dataset=digits":
        assert math.isfinite(report["eval/fid"]) and math.isfinite(report["eval/parzen_ll"])
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    assert "game/samples" in events(tmp_path / "run").Tags()["images"]
