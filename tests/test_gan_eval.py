"""gan-eval, the real command: a saved run measured offline, and its bad input."""

import json

import pytest

from gan_cli.cli.train import train
from gan_cli.runs import rundir

from .conftest import EVAL_FAST, events, run_cli, run_eval


def test_cli_theory_tags_and_gan_eval(tmp_path):
    run = tmp_path / "run"
    proc = run_cli(["experiment=figure1", "steps=40", "log_every=20", "eval_every=20", "sample_every=40",
                    "eval.theory_samples=5000", f"hydra.run.dir={run}"])
    assert proc.returncode == 0, proc.stderr
    tags = events(run).Tags()
    assert {"eval/value", "eval/jsd", "eval/d_star_mse"} <= set(tags["scalars"])
    assert "eval/jsd_floor" not in tags["scalars"] and "constants/text_summary" in tags["tensors"]  # a text card
    assert "game/figure1" in tags["images"]
    proc = run_eval([str(run), "--samples", "200", "eval.theory_samples=5000"])
    assert proc.returncode == 0, proc.stderr
    report = json.loads((run / "checkpoints" / "last.eval.json").read_text())
    assert report["step"] == 40 and "eval/jsd" in report["metrics"] and "theory" in report["protocol"]
    assert (run / "checkpoints" / "last.samples.png").stat().st_size > 0
    assert "eval/jsd" in proc.stdout


@pytest.mark.parametrize("case", ["no-checkpoint", "other-arch", "bad-override"])
def test_gan_eval_bad_input(tmp_path, make_cfg, case):
    if case == "no-checkpoint":
        args, named = [str(tmp_path)], str(tmp_path)
    else:
        train(make_cfg(*EVAL_FAST), tmp_path / "run")
        bad = "arch=maxout" if case == "other-arch" else "eval.nonsense=1"
        args, named = ([str(tmp_path / "run"), bad.replace("arch=maxout", "arch.name=maxout")],
                       "checkpoint" if case == "other-arch" else "eval.nonsense")
    proc = run_eval(args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and named in proc.stderr


def test_gan_eval_keeps_the_groups_the_run_was_trained_with(tmp_path, make_cfg):
    """A group given a value (dataset=grid, loss=minimax: a ValidationError's words, naming no group or choice) or a
    table of settings given one: one line saying what gan-eval keeps and how to set what it reads."""
    cfg = make_cfg(*EVAL_FAST)
    train(cfg, tmp_path / "run")
    for bad, named in ((f"dataset={'grid' if cfg.dataset.name != 'grid' else 'ring'}",
                        f"gan-eval keeps the run's dataset={cfg.dataset.name} as trained; set settings one by one"),
                       ("loss=minimax", f"loss=minimax: gan-eval keeps the run's loss={cfg.loss.name} as trained"),
                       ("eval=1", "eval=1: eval holds settings; set settings one by one (e.g. eval.n_samples=2000)"),
                       ("=1", "=1: not a setting of the saved config")):
        proc = run_eval([str(tmp_path / "run"), bad])
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and named in proc.stderr, proc.stderr


@pytest.mark.slow
def test_gan_eval_never_touches_what_the_run_logged(tmp_path):
    run = tmp_path / "run"
    proc = run_cli(["dataset=ring", "steps=6", "log_every=1", "eval_every=2", "eval.theory_samples=2000",
                    "eval.mode_samples=500", f"hydra.run.dir={run}"])
    assert proc.returncode == 0, proc.stderr

    def history():
        acc = events(run)
        return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}

    before = history()
    assert run_eval([str(run), "--best", "eval.theory_samples=3000"]).returncode == 0
    assert run_eval([str(run), "eval.theory_samples=1000"]).returncode == 0
    assert history() == before  # nothing replaced, nothing hidden: TensorBoard shows the run as it was
    evaluations = sorted((run / "gan-eval").iterdir())
    assert [p.name.split("_")[0] for p in evaluations] == ["best", "last"]
    steps = {p.name.split("_")[0]: [e.step for e in events(p).Scalars("eval/jsd")] for p in evaluations}
    assert steps["last"] == [6] and steps["best"][0] <= 6


def test_gan_eval_writes_nothing_into_a_run_directory_another_process_holds(tmp_path, make_cfg):
    # it wrote eval.json and a TensorBoard run into a directory a live gan-train held; now it prints the figures alone
    run = tmp_path / "run"
    train(make_cfg(*EVAL_FAST), run)
    rundir.hold(run)  # as the running gan-train holds it
    try:
        before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
        proc = run_eval([str(run)])
        assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before
    finally:
        rundir.release(run)
    assert proc.returncode == 0 and "eval/" in proc.stdout and "Wrote" not in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == (f"gan-eval: {run} is held by another process (a running gan-train "
                                                    "or gan-eval), so nothing was written there; evaluate it again "
                                                    "when that ends, or evaluate a copy of the checkpoint")
    # once it is free: written, and the lock gan-eval took while writing is gone with it
    proc = run_eval([str(run)])
    assert proc.returncode == 0 and (run / "checkpoints" / "last.eval.json").exists() and "Wrote" in proc.stdout
    assert not (run / rundir.LOCK_NAME).exists()
