"""The cluster path through hydra-submitit-launcher's local executor: the same code as on SLURM."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import QUICK_EVAL, REPO, events, run_cli

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")

STEPS, WELL_INTO = 1200, 300  # the job is preempted once it has logged WELL_INTO iterations
RUN = ("dataset=ring", "arch=mlp", "arch.g_hidden=32", "arch.d_hidden=32", "batch_size=64", f"steps={STEPS}",
       "log_every=100", "ckpt_every=100000", "sample_every=100000", "eval_every=100000", *QUICK_EVAL)


def submitit_task(sweep: Path):
    """The pid of the process submitit runs the job in (what SLURM signals), or None."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in cmd and any(str(sweep).encode() in part for part in cmd):
            return int(proc.name)
    return None


def last_step(log: Path) -> int:
    lines = ([line for line in log.read_text().splitlines() if "step " in line and f"/{STEPS}" in line]
             if log.exists() else [])
    return int(lines[-1].split("step ")[1].split("/")[0]) if lines else 0


@pytest.mark.slow
def test_preempted_job_checkpoints_requeues_and_resumes_in_its_own_directory(tmp_path):
    sweep = tmp_path / "sweep"
    exe = str(Path(sys.executable).with_name("gan-train"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([exe, "-m", "hydra/launcher=submitit_local", *RUN, f"hydra.sweep.dir={sweep}"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, log = time.time() + 240, None
        while time.time() < deadline:  # wait until the job is well into its run
            logs = list(sweep.glob("0*/train.log"))  # one job: named "0" (nothing varies)
            log = logs[0] if logs else None
            if log is not None and last_step(log) >= WELL_INTO:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        task = submitit_task(sweep)
        assert task is not None and last_step(log) < STEPS
        os.kill(task, signal.SIGUSR2)  # what submitit's executors send on preemption and before a time limit
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    job = log.parent
    assert [p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")] == [job.name]
    text = log.read_text()
    stopped = int(text.split("interrupted (SIGUSR2) at iteration ")[1].split(";")[0])
    assert WELL_INTO <= stopped < STEPS and "the job is requeued and resumes from it" in text
    assert f"continuing the run from {job / 'checkpoints' / 'last.pt'}" in text
    assert f"at iteration {stopped}" in text.split("resumed from")[1].splitlines()[0]
    requeued = json.loads((job / "metrics.json").read_text())
    assert requeued["status"] == "ok" and requeued["steps"] == STEPS
    # each window once; the stop wrote the window it cut (continued after the requeue)
    assert [e.step for e in events(job).Scalars("game/loss_D")] == sorted({*range(100, STEPS + 1, 100), stopped})

    # the same run, never interrupted: the same final figures, bit for bit
    whole = tmp_path / "whole"
    done = run_cli([*RUN, f"hydra.run.dir={whole}"])
    assert done.returncode == 0, done.stderr
    reference = json.loads((whole / "metrics.json").read_text())
    for key in ("game/loss_D", "game/loss_G", "game/D_real", "game/D_fake", "grad/G", "eval/reverse_kl", "eval/jsd"):
        assert requeued[key] == reference[key], key


def test_the_slurm_launcher_config_composes_with_its_defaults():
    proc = run_cli(["--cfg", "hydra", "hydra/launcher=slurm", "hydra.launcher.partition=gpu"])
    assert proc.returncode == 0, proc.stderr
    launcher = proc.stdout.split("\n  launcher:\n")[1].split("\n  sweeper:")[0]
    for line in ("_target_: hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "gpus_per_node: 1",
                 "partition: gpu", "signal_delay_s: 120", "max_num_timeout: 20", "timeout_min: 240",
                 "submitit_folder: ${hydra.sweep.dir}/.submitit/%j"):
        assert f"    {line}\n" in launcher + "\n", line


def test_a_cluster_without_accounting_warns_once_not_at_every_poll(tmp_path, monkeypatch, caplog):
    """submitit polls sacct for the jobs' states; where SLURM keeps no accounting, sacct fails and submitit's
    watcher warned at every poll. gan-train shows that warning once."""
    import logging

    from submitit.slurm.slurm import SlurmInfoWatcher

    import gan_cli.cli.train  # noqa: F401 (gan-train's filter on submitit's logger)

    fake = tmp_path / "bin" / "sacct"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'sacct: error: Slurm accounting storage is disabled' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    watcher = SlurmInfoWatcher(delay_s=0)
    watcher.register_job("12345")
    with caplog.at_level(logging.WARNING, logger="submitit"):
        for _ in range(4):
            watcher.update()
    shown = [r.getMessage() for r in caplog.records if "sacct" in r.getMessage()]
    assert watcher.num_calls == 4
    assert len(shown) == 1 and "Bypassing sacct error" in shown[0] and "shown once" in shown[0], shown
