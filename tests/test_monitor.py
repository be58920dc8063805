"""The monitor: the clock, metrics.json and the tables of both commands, gan-eval's report files."""

import io
import json
import time

import pytest
import torch
from rich.console import Console

from gan_cli import data as datasets
from gan_cli.runs import figures, monitor
from gan_cli.runs.monitor import Monitor

from .conftest import events


def test_time_aside_is_left_out_of_the_training_rate(tmp_path):
    with Monitor(tmp_path, total=20, start=0, console=Console(file=io.StringIO())) as mon:
        with mon.aside():
            time.sleep(0.5)
        window = mon.log_window(10, {"game/loss_D": 1.0}, {"spread/D_real": torch.rand(8)})
        assert mon.aside_s >= 0.5
        assert window["perf/steps_per_s"] > 10 / 0.25, "the half second aside was counted as training"
    assert [e.step for e in events(tmp_path).Scalars("perf/steps_per_s")] == [10]


def test_finish_writes_metrics_json_and_the_table(tmp_path):
    out = io.StringIO()
    with Monitor(tmp_path, total=8, start=4, console=Console(file=out, width=120)) as mon:
        mon.start_session({"loss": "minimax", "k": 2})
        window = mon.log_window(8, {"game/loss_D": 1.25, "game/loss_G": 0.5}, {})
        metrics = mon.finish({"steps": 8, "d_updates": 16, "g_updates": 8}, window, {"eval/fid": 3.5})
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == metrics
    assert list(saved)[:7] == ["status", "steps", "d_updates", "g_updates", "game/loss_D", "game/loss_G", "eval/fid"]
    assert saved["status"] == "ok"
    assert saved["perf/steps_per_s"] > 0 and saved["wall_s"] >= saved["perf/aside_s"] >= 0
    assert "gan-train: final figures" in out.getvalue() and f"tensorboard --logdir {tmp_path}" in out.getvalue()
    # no experiment declaration: TensorBoard derives the columns from every run it reads
    assert set(events(tmp_path).PluginTagToContent("hparams")) == {
        "_hparams_/session_start_info", "_hparams_/session_end_info"}
    assert not [t for t in events(tmp_path).Tags()["scalars"] if t.startswith("hparam/")]


def test_gan_eval_report_writes_json_events_and_a_table(tmp_path):
    ckpt = tmp_path / "checkpoints" / "last.pt"
    ckpt.parent.mkdir()
    report = {"checkpoint": str(ckpt), "step": 7, "dataset": "ring", "metrics": {"eval/jsd": 0.125},
              "protocol": {"theory": "how it was measured"}}
    out = io.StringIO()
    first = monitor.report_eval(ckpt, report, None, console=Console(file=out, width=120))
    second = monitor.report_eval(ckpt, {**report, "metrics": {"eval/jsd": 0.5}}, None,
                                 console=Console(file=io.StringIO()))
    assert json.loads((ckpt.parent / "last.eval.json").read_text())["metrics"] == {"eval/jsd": 0.5}
    # another checkpoint's evaluation is named by it and leaves last.pt's in place
    best = ckpt.with_name("best.pt")
    monitor.report_eval(best, {**report, "checkpoint": str(best)}, None, console=Console(file=io.StringIO()))
    assert json.loads((ckpt.parent / "last.eval.json").read_text())["metrics"] == {"eval/jsd": 0.5}
    assert json.loads((ckpt.parent / "best.eval.json").read_text())["metrics"] == {"eval/jsd": 0.125}
    assert monitor.eval_files(best) == (best.with_name("best.eval.json"), best.with_name("best.samples.png"))
    # each evaluation is a TensorBoard run of its own under <run>/gan-eval/: none replaces another
    assert first.parent == second.parent == tmp_path / "gan-eval" and first != second
    assert [(e.step, e.value) for e in events(first).Scalars("eval/jsd")] == [(7, 0.125)]
    assert [(e.step, e.value) for e in events(second).Scalars("eval/jsd")] == [(7, 0.5)]
    assert not list(tmp_path.glob("events.out.tfevents.*"))  # nothing written into the run's own event files
    assert "eval/jsd" in out.getvalue() and "how it was measured" in out.getvalue()


def test_sample_files_for_images_and_points(make_cfg, tmp_path):
    digits = datasets.load(make_cfg().dataset, torch.device("cpu"))
    monitor.save_samples(tmp_path / "grid.png", torch.rand(16, 1, 8, 8), digits)
    ring = datasets.load(make_cfg("dataset=ring").dataset, torch.device("cpu"))
    monitor.save_samples(tmp_path / "ring.png", ring.sample(200), ring)
    for name in ("grid.png", "ring.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the grid's pixels are torchvision's save_image's
    import numpy as np
    from PIL import Image
    from torchvision.utils import save_image

    for shape in [(16, 1, 8, 8), (10, 3, 32, 32), (1, 1, 28, 28)]:
        x = torch.rand(shape)
        monitor.save_samples(tmp_path / "ours.png", x, digits)
        save_image(x, tmp_path / "torchvision.png", nrow=max(1, int(shape[0] ** 0.5)), padding=2, pad_value=0.5)
        ours, theirs = (np.asarray(Image.open(tmp_path / f)) for f in ("ours.png", "torchvision.png"))
        assert ours.shape == theirs.shape and np.array_equal(ours, theirs), shape


def test_a_run_that_did_not_finish_says_so_without_the_table(tmp_path):
    out = io.StringIO()
    with Monitor(tmp_path, total=8, start=0, console=Console(file=out)) as mon:
        mon.finish({"steps": 3, "d_updates": 3, "g_updates": 3}, {}, {}, status="interrupted")
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "interrupted"
    assert "final figures" not in out.getvalue()


def test_a_resumed_run_supersedes_what_was_logged_after_its_checkpoint(tmp_path):
    with Monitor(tmp_path, total=10, start=0, console=Console(file=io.StringIO())) as mon:
        for step in (2, 4, 6, 8):
            mon.log_window(step, {"game/loss_D": float(step)}, {})
    # the first run's file as an earlier process leaves it: TensorBoard reads a directory's files in name order
    # (events.out.tfevents.<second>.<host>.<pid>.<writer count>), and within one second and one process the
    # count's digits would decide it ("10" before "9")
    [first] = tmp_path.glob("events.out.tfevents.*")
    stamp = first.name.split(".")[3]
    first.rename(first.with_name(first.name.replace(f".{stamp}.", f".{int(stamp) - 1:010d}.", 1)))
    with Monitor(tmp_path, total=10, start=4, console=Console(file=io.StringIO())) as mon:  # resumed from 4
        for step in (6, 8, 10):
            mon.log_window(step, {"game/loss_D": -float(step)}, {})
    assert [(e.step, e.value) for e in events(tmp_path).Scalars("game/loss_D")] == [(2, 2), (4, 4), (6, -6), (8, -8),
                                                                               (10, -10)]


def test_image_grid_is_torchvisions_make_grid():
    from torchvision.utils import make_grid

    torch.manual_seed(0)
    for shape in [(1, 1, 8, 8), (1, 3, 5, 7), (2, 1, 8, 8), (7, 1, 28, 28), (64, 3, 32, 32), (10, 3, 4, 6),
                  (5, 2, 3, 3)]:
        x = torch.rand(shape)
        for nrow in (1, 3, 8, 20):
            for padding in (0, 2, 3):
                expected = make_grid(x, nrow=nrow, padding=padding, pad_value=0.5)
                got = figures.image_grid(x, nrow=nrow, padding=padding, pad_value=0.5)
                assert got.shape == expected.shape and torch.equal(got, expected), (shape, nrow, padding)


def test_figure_1_keeps_its_axes_and_draws_d_star_where_it_is_defined():
    """The film's density axis is the same in every frame (1.6 x p_data's peak, whatever p_g does), D* is left
    out where p_data + p_g holds no mass (the tails: 0/0, or p_data/p_data = 1 of an empty histogram), and the
    legend sits below the axes, not over the curves."""
    from gan_cli.runs.figures import figure_1

    x = torch.linspace(-6, 6, 200, dtype=torch.float64)
    p_data = torch.exp(-0.5 * x**2) / (2 * torch.pi) ** 0.5
    frames = []
    for p_g in (torch.where(x.abs() < 1, 0.5, 0.0).double(), 3 * p_data):  # a wide G, then one that overshoots
        d_star = torch.where(p_data + p_g > 0, p_data / (p_data + p_g), 0.5)
        frames.append(figure_1({"x": x, "p_data": p_data, "p_g": p_g, "D": torch.full_like(x, 0.5),
                                "D_star": d_star}, "iteration 0"))
    (first, second) = frames
    assert first.axes[0].get_ylim() == second.axes[0].get_ylim() == pytest.approx((0, 1.6 * float(p_data.max())))
    assert first.axes[0].get_xlabel() == "x" and first.axes[1].get_ylim() == pytest.approx((-0.02, 1.02))
    d_star_line = next(line for line in first.axes[1].lines if line.get_label() == "D*(x)")
    drawn = torch.as_tensor(d_star_line.get_ydata())
    assert torch.isnan(drawn[x.abs() > 5]).all() and not torch.isnan(drawn[x.abs() < 2]).any()
    legend = first.legends[0]
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(first)
    canvas.draw()
    renderer = canvas.get_renderer()
    assert legend.get_window_extent(renderer).y1 <= first.axes[0].get_window_extent(renderer).y0 + 1
    assert min(t.get_fontsize() for t in legend.get_texts()) >= 10


def test_a_frame_laid_out_before_renders_as_tight_layout_renders_it(make_cfg, monkeypatch):
    """Each kind of figure, drawn a second time from the margins kept for it, is the same image pixel for pixel as
    when tight_layout lays it out afresh; a frame with a longer title is laid out again."""
    import matplotlib.figure
    import numpy as np
    from torch.utils.tensorboard._utils import figure_to_image

    x = torch.linspace(-6, 6, 400)
    curves = {"x": x, "p_data": torch.exp(-x ** 2 / 2) / 2.5, "p_g": torch.exp(-(x - 0.5) ** 2 / 2) / 2.5,
              "D_star": torch.sigmoid(x), "D": torch.sigmoid(0.8 * x)}
    ring = datasets.load(make_cfg("dataset=ring").dataset, torch.device("cpu"))
    line = datasets.load(make_cfg("dataset=mixture1d").dataset, torch.device("cpu"))
    wide = datasets.load(make_cfg("dataset=mixture1d", "dataset.means=[0,4000]").dataset, torch.device("cpu"))
    kinds = {"figure 1": lambda title: figures.figure_1(curves, title),
             "ring": lambda title: figures.figure_toy(ring.sample(300), ring, title),
             "line": lambda title: figures.figure_toy(line.sample(300) * 3, line, title),
             "wide line": lambda title: figures.figure_toy(wide.sample(300), wide, title),
             "path": lambda title: figures.figure_trajectory(torch.randn(50, 2).cumsum(0), 0, 50)}
    laid = []
    tight = matplotlib.figure.Figure.tight_layout
    monkeypatch.setattr(matplotlib.figure.Figure, "tight_layout", lambda fig, **kw: laid.append(1) or tight(fig, **kw))

    def image(draw, fresh: bool):
        if fresh:
            figures._LAYOUTS.clear()
        torch.manual_seed(1)  # the same samples each time
        return figure_to_image(draw("iteration 2000"))

    for name, draw in kinds.items():
        if name != "wide line":  # laid out after "line", whose frame has other limits: laid out afresh
            image(draw, fresh=True)
        before = len(laid)
        kept = image(draw, fresh=False)
        assert len(laid) == before + (name == "wide line"), f"{name}: laid out again, or not laid out"
        assert np.array_equal(kept, image(draw, fresh=True)), f"{name}: the kept margins draw another image"
    before = len(laid)
    figures.figure_1(curves, "iteration 100000")  # a longer title: laid out afresh
    assert len(laid) == before + 1


@pytest.mark.slow
def test_a_frame_of_a_film_is_the_whole_figure_s_image(make_cfg):
    """Figure 1 and the toy sets' sample figures are drawn into TensorBoard as frames of a film (the axes, ticks and
    legend drawn once, the data and title on them): each frame, the first of a film and later ones, with other data,
    other titles and other data sets, is the whole figure's image pixel for pixel; one film serves them all."""
    import numpy as np
    from torch.utils.tensorboard._utils import figure_to_image

    x = torch.linspace(-6, 6, 400)
    p_data = torch.exp(-x ** 2 / 2) / 2.5

    def curves(shift):
        return {"x": x, "p_data": p_data, "p_g": torch.exp(-(x - shift) ** 2 / 2) / 2.5, "D": torch.sigmoid(shift * x),
                "D_star": p_data / (p_data + torch.exp(-(x - shift) ** 2 / 2) / 2.5)}
    sets = {name: datasets.load(make_cfg(*settings).dataset, torch.device("cpu")) for name, settings in
            {"ring": ["dataset=ring"], "grid": ["dataset=grid"], "line": ["dataset=mixture1d"],
             "two modes": ["dataset=mixture1d", "dataset.means=[-2,3]", "dataset.weights=[1,3]"],
             "point mass": ["dataset=dirac"]}.items()}
    figures._FILMS.clear()
    for shift, title in ((0.5, "iteration 0"), (1.5, "iteration 500"), (-2.0, "iteration 900"), (3, "iteration 10000")):
        whole = figure_to_image(figures.figure_1(curves(shift), title))
        assert np.array_equal(whole, figures.figure_1_image(curves(shift), title)), ("figure 1", title)
        for name, data in sets.items():
            samples = data.sample(512, torch.Generator().manual_seed(int(shift * 10) + 100)) * (1 + shift / 4)
            torch.manual_seed(7)  # the data's points behind a 2-D set's samples (a film keeps its first)
            whole = figure_to_image(figures.figure_toy(samples, data, title))
            torch.manual_seed(7)
            frame = figures.toy_image(samples, data, title)
            assert np.array_equal(whole, frame), (name, title)
    assert len(figures._FILMS) == 6 * 3, "a film for each kind, data set and length of title"
    with pytest.raises(ValueError):  # a frame that fails half drawn (p_g plotted, then D of the wrong length)
        figures.figure_1_image({**curves(1.0), "D": torch.ones(3)}, "iteration 500")
    assert np.array_equal(figure_to_image(figures.figure_1(curves(1.0), "iteration 500")),
                          figures.figure_1_image(curves(1.0), "iteration 500")), "the failed frame left its p_g"


def test_the_histogram_of_a_line_draws_as_matplotlib_s_hist(make_cfg):
    """figure_toy draws p_g's histogram as one artist (ax.stairs); its image is ax.hist's (100 bars) pixel for pixel."""
    import numpy as np
    from matplotlib.patches import StepPatch
    from torch.utils.tensorboard._utils import figure_to_image

    line = datasets.load(make_cfg("dataset=mixture1d").dataset, torch.device("cpu"))
    samples = torch.randn(512, 1, generator=torch.Generator().manual_seed(0)) * 2 + 1
    ours = figures.figure_toy(samples, line, "iteration 10")
    fig = figures.figure_toy(samples, line, "iteration 10")
    ax = fig.axes[0]
    (stairs,) = [a for a in ax.patches if isinstance(a, StepPatch)]
    edges = stairs.get_data().edges
    stairs.remove()
    ax.hist(samples.squeeze(1).clamp(edges[0], edges[-1]), bins=100, range=(edges[0], edges[-1]), density=True,
            color="tab:green", alpha=0.5, label="p_g (histogram)")
    assert np.array_equal(figure_to_image(ours), figure_to_image(fig))


def test_a_run_in_a_terminal_shows_its_bar(tmp_path):
    """In a terminal a run's bar shows its iterations, it/s and D's two averages (a population's bar, with
    member-it/s, is checked on a real terminal in test_population.py)."""
    import re

    buf = io.StringIO()
    with Monitor(tmp_path, total=20, start=0, console=Console(file=buf, force_terminal=True, width=120)) as mon:
        mon.log_window(10, {"game/loss_D": 1.0, "game/D_real": 0.625, "game/D_fake": 0.375}, {})
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue())
    assert re.search(r"train .*10/20 +\d+ it/s .*D\(x\) 0\.625  D\(G\(z\)\) 0\.375", text), text
