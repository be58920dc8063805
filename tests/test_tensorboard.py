"""What a person sees in TensorBoard, read from TensorBoard's own server (its HTTP API, as the UI reads it) on one
log directory holding a Figure-1 run, a 2-job ring sweep and a digits run, as `tensorboard --logdir outputs` would."""

from __future__ import annotations

import urllib.parse

import pytest

from gan_cli.evaluation import evaluate
from scripts.tensorboard_view import get, groups, hparams, serve, tags

from .conftest import QUICK_EVAL, built_once, run_cli

pytestmark = pytest.mark.slow
SHORT = ("steps=10", "log_every=2", "sample_every=5", "ckpt_every=10", "device=cpu", *QUICK_EVAL)


def _runs(logdir):
    for args in (["experiment=figure1", f"hydra.run.dir={logdir / 'figure1'}"],
                 ["-m", "dataset=ring", "loss=minimax,nonsaturating", "k=1", f"hydra.sweep.dir={logdir / 'sweep'}"],
                 ["dataset=digits", "batch_size=16", f"hydra.run.dir={logdir / 'digits'}"]):
        proc = run_cli([*args, *SHORT])
        assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    with serve(built_once(tmp_path_factory, "tensorboard-outputs", _runs)) as url:
        yield url


def test_the_first_two_groups_are_the_figures_of_merit_and_the_game(served):
    shown = groups(served)
    assert shown[:2] == ["eval", "game"], shown  # TIME SERIES opens these two
    scalars, images = tags(served, "scalars"), tags(served, "images")
    for run in scalars:
        assert {"game/loss_D", "game/loss_G", "game/D_real", "game/D_fake"} <= set(scalars[run]), run
        assert "game/samples" in images[run], run
    figure1 = next(run for run in scalars if run.startswith("figure1"))
    assert {"eval/jsd", "eval/value", "eval/d_star_mse"} <= set(scalars[figure1])
    assert "game/figure1" in images[figure1]


def test_constants_are_not_curves(served):
    fixed = {tag for m in evaluate.METRICS for tag, kind in m.tags.items() if kind == evaluate.FIXED}
    assert {"eval/fid_floor", "eval/jsd_floor", "eval/mode_samples", "eval/classifier_accuracy"} <= fixed
    for run, found in tags(served, "scalars").items():
        assert not fixed & set(found), run
        assert "theory/optimum" not in found and "theory/jsd_floor" not in found
        if run.startswith("figure1"):  # Adam, no schedule on momentum
            assert "optim/momentum" not in found
    texts = get(served, "/data/plugin/text/tags")
    digits = next(run for run in texts if run.startswith("digits"))
    assert texts[digits] == ["constants/text_summary"]  # torch writes a text card as <tag>/text_summary


def test_a_short_run_has_an_evaluation_curve(served):
    """steps=10 with eval_every unset: iteration 0, then every 2 iterations."""
    run = next(r for r in tags(served, "scalars") if r.startswith("figure1"))
    query = urllib.parse.urlencode({"run": run, "tag": "eval/jsd"})
    points = get(served, f"/data/plugin/scalars/scalars?{query}")
    assert [p[1] for p in points] == [0, 2, 4, 6, 8, 10]


def test_sweep_runs_are_named_by_what_varies(served):
    runs = [r for r in get(served, "/data/runs") if r.startswith("sweep/")]
    assert sorted(runs) == ["sweep/0_loss=minimax", "sweep/1_loss=nonsaturating"]


def test_hparams_compares_every_run_differing_columns_first(served):
    shown = hparams(served)
    params = [(h["name"], h.get("differs", False)) for h in shown["hparamInfos"]]
    differ = [name for name, d in params if d]
    assert params[:len(differ)] == [(n, True) for n in differ]  # the tab shows those first
    # the loss varies; the minimax recipe's lr (0.02) differs from the others' (0.1, Adam's 3e-4)
    assert {"loss", "optimizer.lr", "dataset"} <= set(differ)
    assert "seed" not in differ and ("arch", False) in params
    metrics = [m["name"]["tag"] for m in shown["metricInfos"] if not m["name"].get("group")]
    assert {"eval/fid", "eval/parzen_ll", "eval/modes_covered", "eval/jsd"} <= set(metrics)  # every run's
    assert all(tag.startswith("eval/") for tag in metrics[:5])  # the five the tab shows


def readme_tags() -> set:
    """The tags README's "Reading TensorBoard" table names (its first column, each in backticks)."""
    import re

    from .conftest import REPO

    text = (REPO / "README.md").read_text().split("## Reading TensorBoard")[1].split("\n## ")[0]
    rows = [line.split("|")[1] for line in text.splitlines() if line.startswith("| `")]
    return {tag for cell in rows for tag in re.findall(r"`([^`]+)`", cell) if "/" in tag and "…" not in tag}


def test_readmes_tag_table_names_every_tag_the_runs_log(served):
    named = readme_tags()
    for plugin in ("scalars", "images", "histograms"):
        for run, found in tags(served, plugin).items():
            assert not set(found) - named, (run, set(found) - named)
    # and every figure a metric registers as a curve (eval/, theory/, spread/) is in the table, no more
    curves = {tag for m in evaluate.METRICS for tag, kind in m.tags.items() if kind != evaluate.FIXED}
    assert curves <= named
    assert {t for t in named if t.split("/")[0] in ("eval", "theory")} <= curves
