"""Sweeps as users run them: a failing job does not end the sweep, summary.csv, HPARAMS that compare."""

import csv
import json
import math
import sys

import pytest
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

import gan_cli.cli.train as train_module
from gan_cli.cli.train import Interrupted, main

from .conftest import QUICK_EVAL, events, run_cli


def rows(sweep):
    with (sweep / "summary.csv").open() as fh:
        return list(csv.DictReader(fh))


def hparams_entry(run_dir):
    """(experiment, session start, session end) as the HPARAMS plugin reads them from a run."""
    content = events(run_dir).PluginTagToContent("hparams")
    parsed = {tag: HParamsPluginData.FromString(blob) for tag, blob in content.items()}
    experiment = parsed.get("_hparams_/experiment")
    return (experiment and experiment.experiment, parsed["_hparams_/session_start_info"].session_start_info,
            parsed.get("_hparams_/session_end_info"))


@pytest.mark.slow
def test_a_sweep_runs_every_valid_job_and_records_the_others(tmp_path):
    """lr=10 diverges, k=0 is invalid: the ok job still runs, the sweep ends with exit 1 naming both."""
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", "dataset=mixture1d", "loss=least_squares", "optimizer=sgd", "optimizer.lr=10,0.01", "k=1,0",
                    "steps=300", "log_every=50", "eval_every=300", *QUICK_EVAL, f"hydra.sweep.dir={sweep}"])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    table = rows(sweep)
    status = {(r["optimizer.lr"], r["k"]): r["status"] for r in table}
    assert status == {("10", "1"): "diverged", ("0.01", "1"): "ok", ("10", "0"): "invalid", ("0.01", "0"): "invalid"}
    assert table[0]["status"] == "ok"  # the main metric's best (the only finished job) comes first
    assert float(table[0]["steps"]) == 300 and table[0]["eval/jsd"] != ""
    invalid = next(r for r in table if r["status"] == "invalid")
    assert "k=0" in invalid["error"] and float(invalid["wall_s"]) == 0
    assert "3 of the 4 jobs of the sweep did not finish" in proc.stderr and "#" in proc.stderr
    assert "are recorded with status invalid; the others run" in proc.stderr
    assert f"tensorboard --logdir {sweep}" in proc.stdout
    assert proc.stdout.count("Inspect this run") == 0  # one summary for the sweep, not a table per job
    for job in sweep.iterdir():
        if job.is_dir() and not job.name.startswith("."):
            assert json.loads((job / "metrics.json").read_text())["status"] in ("ok", "diverged", "invalid")


@pytest.mark.slow
def test_an_exception_in_one_job_is_recorded_and_a_ctrl_c_stops_the_sweep(tmp_path, monkeypatch, capsys):
    real = train_module.train

    def faulty(cfg, run_dir, **kwargs):
        if cfg.k == 2:
            raise RuntimeError("a fault in one job")
        return real(cfg, run_dir, **kwargs)

    sweep = tmp_path / "sweep"
    monkeypatch.setattr(train_module, "train", faulty)
    monkeypatch.setattr(sys, "argv", ["gan-train", "-m", "dataset=ring", "k=2,1", "steps=2", "log_every=1", *QUICK_EVAL,
                                      f"hydra.sweep.dir={sweep}"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    status = {r["k"]: (r["status"], r["error"]) for r in rows(sweep)}
    assert status["1"] == ("ok", "") and status["2"] == ("failed", "RuntimeError: a fault in one job")
    failed_dir = next(p for p in sweep.iterdir() if p.name.startswith("0_"))
    assert "RuntimeError: a fault in one job" in (failed_dir / "train.log").read_text()  # its traceback, for a report
    assert hparams_entry(failed_dir)[2].session_end_info.status == 2  # STATUS_FAILURE

    def interrupted(cfg, run_dir, **kwargs):
        (run_dir / "metrics.json").write_text(json.dumps({"status": "interrupted", "wall_s": 1.0}))
        raise Interrupted(2, 1, run_dir)

    second = tmp_path / "second"
    monkeypatch.setattr(train_module, "train", interrupted)
    monkeypatch.setattr(sys, "argv", ["gan-train", "-m", "dataset=ring", "k=2,1", "steps=2",
                                      f"hydra.sweep.dir={second}"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 130
    assert [r["status"] for r in rows(second)] == ["interrupted"]  # the second job never started


@pytest.mark.slow
def test_every_job_gives_its_hyperparameters_and_no_experiment_of_its_own(tmp_path):
    """Each job (failed ones included) writes its session: its hyperparameters at the values in force, and no
    experiment declaration, so TensorBoard derives the columns from every run it reads (tests/test_tensorboard.py).
    The job directories are named by what varies in the sweep alone."""
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", "dataset=ring", "optimizer.momentum=0,0.5", "k=1,0", "steps=3", "log_every=3", *QUICK_EVAL,
                    f"hydra.sweep.dir={sweep}"])
    assert proc.returncode == 1  # the k=0 jobs are invalid
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [j.name for j in jobs] == ["0_k=1,optimizer.momentum=0", "1_k=0,optimizer.momentum=0",
                                      "2_k=1,optimizer.momentum=0.5", "3_k=0,optimizer.momentum=0.5"]
    assert "dataset=ring" in (jobs[0] / ".hydra" / "overrides.yaml").read_text()  # every override is kept there
    for job in jobs:
        exp, start, end = hparams_entry(job)
        assert exp is None
        assert {"dataset", "arch", "loss", "optimizer", "optimizer.lr", "optimizer.momentum", "k", "seed"} \
            <= set(start.hparams)
        momentum = start.hparams["optimizer.momentum"].number_value
        assert momentum == (0.5 if "optimizer.momentum=0.5" in job.name else 0.0)
        ok = json.loads((job / "metrics.json").read_text())["status"] == "ok"
        assert end.session_end_info.status == (1 if ok else 2)  # STATUS_SUCCESS / STATUS_FAILURE
        scalars = events(job).Tags()["scalars"]
        assert not [t for t in scalars if t.startswith("hparam/")]  # no duplicates of final values
        if ok:
            assert {"eval/jsd", "eval/modes_covered", "game/loss_D"} <= set(scalars)


def test_hyperparameters_name_own_rates_only_where_a_run_gives_one(make_cfg):
    from gan_cli.cli.sweep import job_hparams

    plain = job_hparams(make_cfg("loss=minimax"), {}, ["k"])
    assert plain["optimizer.lr"] == 0.02 and "optimizer.d_lr" not in plain  # the recipe's lr, the value in force
    ttur = job_hparams(make_cfg("optimizer.d_lr=0.3"), {}, [])
    assert (ttur["optimizer.d_lr"], ttur["optimizer.g_lr"]) == (0.3, 0.1)  # G's: the rate in use


def test_spread_over_seeds_against_a_known_answer():
    from gan_cli.cli.sweep import Spread

    s = Spread.of([1.0, 2.0, 3.0, 4.0, 5.0, float("nan")])  # a figure a job did not reach is left out
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4) from the tables
    assert (s.n, s.mean, s.sd) == (5, 3.0, pytest.approx(math.sqrt(2.5)))
    assert (s.low, s.high) == (pytest.approx(3 - half), pytest.approx(3 + half))
    one = Spread.of([0.25])
    assert one.n == 1 and one.mean == 0.25 and math.isnan(one.sd) and math.isnan(one.low) and str(one) == "0.25"
    assert Spread.of([]).n == 0 and str(Spread.of([])) == ""


def test_the_sweep_table_counts_its_jobs_in_words(tmp_path, capsys):
    from gan_cli.cli.sweep import Job, Summary, print_summary

    for n, words in ((1, "sweep of 1 job"), (2, "sweep of 2 jobs")):
        print_summary(Summary(tmp_path, [Job(i, tmp_path / str(i), {}, "ok", 1.0) for i in range(n)], [], None))
        title = capsys.readouterr().out.splitlines()[0].strip()
        assert title == f"gan-train: {words}", title


@pytest.mark.slow
def test_a_sweep_over_seeds_reports_each_setting_over_its_seeds(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", "dataset=ring", "seed=0,1,2", "k=1,2", "steps=2", "log_every=1", *QUICK_EVAL,
                    f"hydra.sweep.dir={sweep}"])
    assert proc.returncode == 0, proc.stderr
    assert "over seeds" in proc.stdout and "3 / 3" in proc.stdout
    with (sweep / "seeds.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [(r["k"], r["jobs"], r["ok"]) for r in table] == [("1", "3", "3"), ("2", "3", "3")]
    jobs = rows(sweep)
    for row in table:
        values = [float(j["eval/jsd"]) for j in jobs if j["k"] == row["k"]]
        assert float(row["eval/jsd_mean"]) == pytest.approx(sum(values) / 3, rel=1e-5)
        assert float(row["eval/jsd_low95"]) <= float(row["eval/jsd_mean"]) <= float(row["eval/jsd_high95"])


def test_the_summary_after_each_job_reads_a_job_s_hydra_files_again_only_when_they_change(tmp_path, monkeypatch):
    """A sweep rewrites summary.csv after every job: with the jobs' .hydra/ files parsed once, not once per job
    that ends (64 jobs: 2,080 readings of two files each, about 55 s here, before), and again where a job's files
    changed."""
    import os

    from omegaconf import OmegaConf

    from gan_cli.cli import sweep as sweep_module

    for i in range(3):
        hydra_dir = tmp_path / str(i) / ".hydra"
        hydra_dir.mkdir(parents=True)
        OmegaConf.save({"hydra": {"job": {"num": i}}}, hydra_dir / "hydra.yaml")
        OmegaConf.save([f"seed={i}", "k=1"], hydra_dir / "overrides.yaml")
        (tmp_path / str(i) / "metrics.json").write_text(json.dumps({"status": "ok", "wall_s": 1.0, "eval/jsd": i}))
    parsed = []
    load = OmegaConf.load
    monkeypatch.setattr(OmegaConf, "load", lambda path: parsed.append(path) or load(path))
    first = sweep_module.summarize(tmp_path)
    assert [(j.num, j.overrides, j.metrics["eval/jsd"]) for j in first.jobs] == [
        (i, {"seed": str(i), "k": "1"}, i) for i in range(3)]
    assert len(parsed) == 6, "\n".join(str(p)[-30:] for p in parsed)
    (tmp_path / "2" / "metrics.json").write_text(json.dumps({"status": "ok", "wall_s": 1.0, "eval/jsd": 7}))
    changed = tmp_path / "1" / ".hydra" / "overrides.yaml"
    OmegaConf.save(["seed=1", "k=5"], changed)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    again = sweep_module.summarize(tmp_path)
    assert parsed[6:] == [tmp_path / "1" / ".hydra" / "hydra.yaml", changed]  # the changed job's alone
    assert again.jobs[1].overrides == {"seed": "1", "k": "5"} and again.jobs[2].metrics["eval/jsd"] == 7


def _job(sweep_dir, i, overrides, metrics=None):
    from omegaconf import OmegaConf

    hydra_dir = sweep_dir / str(i) / ".hydra"
    hydra_dir.mkdir(parents=True)
    OmegaConf.save({"hydra": {"job": {"num": i}}}, hydra_dir / "hydra.yaml")
    OmegaConf.save(overrides, hydra_dir / "overrides.yaml")
    if metrics is not None:
        (sweep_dir / str(i) / "metrics.json").write_text(json.dumps(metrics))
    return sweep_dir / str(i)


@pytest.mark.slow
def test_a_job_still_running_is_running_in_the_summary_until_the_sweep_ends(tmp_path):
    """A job directory without metrics.json reads ``running`` while a live gan-train holds it (this process, or
    another one on this host) and ``failed`` once its holder is gone (killed: its lock file left behind), or in the
    sweep's final summary. Before, a sweep's summary said ``failed`` for the jobs still running beside the one
    that ended (hydra/launcher=joblib; every member of a population)."""
    import socket
    import subprocess
    import sys

    from gan_cli.cli import sweep as sweep_module
    from gan_cli.runs import rundir

    _job(tmp_path, 0, ["seed=0"], {"status": "ok", "wall_s": 1.0})
    mine = _job(tmp_path, 1, ["seed=1"])
    theirs = _job(tmp_path, 2, ["seed=2"])
    dead = _job(tmp_path, 3, ["seed=3"])
    _job(tmp_path, 4, ["seed=4"])
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (dead / rundir.LOCK_NAME).write_text(json.dumps({"pid": int(gone.stdout), "host": socket.gethostname()}))
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from gan_cli.runs import rundir; "
                               f"rundir.hold({str(theirs)!r}); print('held', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        rundir.hold(mine)
        during = sweep_module.summarize(tmp_path)
        final = sweep_module.summarize(tmp_path, final=True)
    finally:
        rundir.release(mine)
        holder.communicate("")
    assert [j.status for j in during.jobs] == ["ok", "running", "running", "failed", "failed"]
    assert [j.status for j in final.jobs] == ["ok", "failed", "failed", "failed", "failed"]
    after = sweep_module.summarize(tmp_path)  # both holders gone
    assert [j.status for j in after.jobs] == ["ok", "failed", "failed", "failed", "failed"]


def test_a_sweep_over_steps_has_one_column_for_the_steps_asked_and_one_for_the_steps_done(tmp_path, capsys):
    """``-m steps=30,4000``: the swept setting and the run's own count of iterations were both headed ``steps``
    (summary.csv and the table), so a CSV reader kept one of them."""
    from gan_cli.cli import sweep as sweep_module

    _job(tmp_path, 0, ["steps=30"], {"status": "ok", "wall_s": 1.0, "steps": 30})
    _job(tmp_path, 1, ["steps=4000"], {"status": "interrupted", "wall_s": 9.0, "steps": 773})
    summary = sweep_module.summarize(tmp_path, final=True)
    with (tmp_path / "summary.csv").open() as fh:
        header = next(csv.reader(fh))
    assert len(header) == len(set(header)), header
    assert [(r["steps"], r["steps done"]) for r in rows(tmp_path)] == [("30", "30"), ("4000", "773")]
    sweep_module.print_summary(summary)
    head = next(line for line in capsys.readouterr().out.splitlines() if "status" in line)
    assert [c.strip() for c in head.strip("┃ ").split("┃")][:5] == ["job", "steps", "status", "wall s", "steps done"]


def test_a_sweep_counts_its_own_jobs_beside_the_earlier_runs_in_their_directories(tmp_path, capsys):
    """A sweep into the directory of another that finished (the jobs' settings differ): each job is refused its
    directory (it holds the earlier run), and the summary said "2 of the 4 jobs did not finish", counting the earlier
    runs as the sweep's. The earlier runs
    (begun before this sweep's multirun.yaml) are shown as such and not counted; a run this sweep made in a
    directory that a later job of it was refused (two jobs given one directory) is its own."""
    import os

    from omegaconf import OmegaConf

    from gan_cli.cli import sweep as sweep_module

    earlier = [_job(tmp_path, i, [f"k={i + 1}"], {"status": "ok", "wall_s": 1.0, "eval/jsd": 0.1 * i}) for i in (0, 1)]
    OmegaConf.save({"hydra": {"overrides": {"task": ["k=1,2,3,4"]}}}, tmp_path / "multirun.yaml")
    later = tmp_path / "multirun.yaml"
    for run in earlier:  # begun before this sweep
        stamp = later.stat().st_mtime_ns - 10**9
        for p in (run / ".hydra").iterdir():
            os.utime(p, ns=(stamp, stamp))
    own = _job(tmp_path, 2, ["k=3"], {"status": "ok", "wall_s": 1.0, "eval/jsd": 0.3})
    for num, run in ((0, earlier[0]), (1, earlier[1]), (3, own)):
        record = {"num": num, "overrides": [f"k={num + 1}"], "status": "invalid", "error": "already holds a run",
                  "dir": run.name, "held": False}
        (tmp_path / f".{run.name}.job{num}{sweep_module.REFUSED}").write_text(json.dumps(record))
    summary = sweep_module.summarize(tmp_path, final=True)
    assert sorted((j.num, j.shown) for j in summary.jobs) == [
        (0, "invalid"), (0, "ok (earlier run)"), (1, "invalid"), (1, "ok (earlier run)"), (2, "ok"), (3, "invalid")]
    assert [j.num for j in summary.own] == [0, 1, 2, 3] and len(summary.failed) == 3
    assert summary.describe_failures().startswith("3 of the 4 jobs of the sweep did not finish: #0 k=1 (invalid")
    with (tmp_path / "summary.csv").open() as fh:
        assert sorted(r["status"] for r in csv.DictReader(fh)) == [
            "invalid", "invalid", "invalid", "ok", "ok (earlier run)", "ok (earlier run)"]
    sweep_module.print_summary(summary)
    title = " ".join(line.strip() for line in capsys.readouterr().out.splitlines()[:2])  # (wrapped to the table)
    assert title.startswith("gan-train: sweep of 4 jobs and 2 earlier runs in their directories"), title
