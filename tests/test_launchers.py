"""Sweeps under each launcher the README offers (basic, joblib, submitit_local), run as a user runs them: a job that
fails among jobs that run, and Ctrl-C from the terminal (SIGINT to the whole process group) mid-sweep. The command
ends (no hang on idle workers), with the right status, every job recorded, and no process left behind."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
LAUNCHERS = ["basic", "joblib", "submitit_local"]
SMALL = ("dataset=ring", "eval.theory_samples=2000", "eval.mode_samples=500", "n_samples=4")


def start(args, cwd) -> subprocess.Popen:
    exe = str(Path(sys.executable).with_name("gan-train"))
    return subprocess.Popen([exe, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # a process group of its own, as a terminal gives a command


def left_behind(group: int, grace: float = 10.0) -> list:
    """The command's processes still there ``grace`` seconds after it ended (its pools' resource trackers end when
    they read the end of the command's pipe, a moment after it)."""
    deadline = time.time() + grace
    while True:
        found = subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True).stdout.split()
        if not found or time.time() > deadline:
            return found
        time.sleep(0.2)


def rows(sweep: Path) -> dict:
    with (sweep / "summary.csv").open() as fh:
        return {r["job"]: r for r in csv.DictReader(fh)}


def our_tracebacks(stderr: str) -> list:
    """Tracebacks of gan-cli's own processes (submitit's local controller reports its own Ctrl-C itself)."""
    blocks = stderr.split("Traceback (most recent call last):")[1:]
    return [b for b in blocks if "submitit/local/" not in b]


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_sweep_with_a_failing_job_ends_and_records_it(tmp_path, launcher):
    sweep = tmp_path / "sweep"
    proc = start(["-m", f"hydra/launcher={launcher}", *SMALL, "steps=4", "optimizer.lr=0.1,1e6",
                  f"hydra.sweep.dir={sweep}"], tmp_path)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in err and "optimizer.lr=1000000.0 is not allowed" in err.splitlines()[-1]
    table = rows(sweep)
    assert table["0"]["status"] == "ok" and table["1"]["status"] == "invalid"
    assert not left_behind(proc.pid)


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_ctrl_c_stops_a_sweep_with_every_running_job_checkpointed_and_the_same_command_continues_it(tmp_path, launcher):
    sweep = tmp_path / "sweep"
    # three jobs where they run one or two at a time (some have not begun at Ctrl-C); submitit_local starts every job
    # at once, each a fresh process: two. Small networks: a job trains its 600 iterations in a few seconds
    seeds = "seed=0,1" if launcher == "submitit_local" else "seed=0,1,2"
    args = ["-m", f"hydra/launcher={launcher}", *SMALL, "arch.g_hidden=16", "arch.d_hidden=16", "steps=600",
            "log_every=10", "eval_every=600", "ckpt_every=600", seeds, f"hydra.sweep.dir={sweep}"]
    proc = start(args, tmp_path)
    deadline = time.time() + 180
    while time.time() < deadline and not any("step " in p.read_text() for p in sweep.rglob("train.log")):
        time.sleep(0.05)
    time.sleep(0.5)  # the jobs that run by now are into training
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert not our_tracebacks(err), err[-3000:]
    assert f"run the same command with hydra.sweep.dir={sweep} to continue it" in err
    table = rows(sweep)
    assert table and table["0"]["status"] == "interrupted"
    for job in table.values():  # each job that began stopped with a checkpoint; the others did not begin
        assert job["status"] == "interrupted", job
        began = (sweep / job["dir"] / "checkpoints" / "last.pt").is_file()
        assert began or "not run" in job["error"], job
    stopped = [job["dir"] for job in table.values() if (sweep / job["dir"] / "checkpoints" / "last.pt").is_file()]
    assert not left_behind(proc.pid)

    # the same command continues each stopped job from its checkpoint and runs those that had not begun
    again = start(args, tmp_path)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    table = rows(sweep)
    assert len(table) == len(seeds.split(",")) and all(j["status"] == "ok" and j["steps"] == "600"
                                                        for j in table.values()), table
    for name in stopped:
        last = sweep / name / "checkpoints" / "last.pt"
        assert f"continuing the run from {last}" in (sweep / name / "train.log").read_text()
        assert len(list((sweep / name / ".hydra").glob("again-*"))) == 1
    assert not list(sweep.glob("*.refused.json")) and not left_behind(again.pid)
