"""One run on two processes with torchrun (gloo on CPU): DDP-averaged gradients, one run directory."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import QUICK_EVAL, events, run_cli

TORCHRUN = Path(sys.executable).with_name("torchrun")
pytestmark = [pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without torch.distributed"),
              pytest.mark.slow]  # two ranks of torchrun per test, each a fresh interpreter


def torchrun(args, cwd, nproc=2):
    cmd = [str(TORCHRUN), "--standalone", f"--nproc_per_node={nproc}", "-m", "gan_cli", "device=cpu", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def only_run(root: Path) -> Path:
    runs = list((root / "outputs" / "runs").iterdir())
    assert len(runs) == 1, runs  # every rank named the same directory; rank 0 alone wrote it
    return runs[0]


@pytest.mark.parametrize("args", [
    ["dataset=ring", "loss=wasserstein_gp", "k=2"],   # alternating k:1, the gradient penalty through DDP
    ["dataset=digits", "updates=simultaneous"],       # the authors' step: gradients averaged by hand
], ids=["ring-wgan-gp-k2", "digits-simultaneous"])
def test_two_ranks_keep_equal_networks_in_one_run_directory(tmp_path, args):
    common = [*args, "steps=20", "log_every=10", "eval_every=20", "sample_every=20", "ckpt_every=10", "batch_size=16",
              *QUICK_EVAL]
    proc = torchrun(common, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["world_size"] == 2 and metrics["ranks_in_sync"] is True
    assert metrics["d_updates"] == 20 * (2 if "k=2" in args else 1)
    assert len(list(run.glob("events.out.tfevents.*"))) == 1 and len(list(run.glob("*.log"))) == 1
    assert [e.step for e in events(run).Scalars("game/loss_D")] == [10, 20]
    # rank 1 drew minibatches of its own: the averaged run is not the one-process run
    single = run_cli([*common, "device=cpu", f"hydra.run.dir={tmp_path / 'single'}"])
    assert single.returncode == 0, single.stderr
    one = torch.load(tmp_path / "single" / "checkpoints" / "last.pt", weights_only=True)["G"]
    two = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["G"]
    assert any(not torch.equal(one[k], two[k]) for k in one)

    if "k=2" not in args:  # resume through torchrun: once (the ring case) is enough
        return
    # resume works the same way: in place, both ranks from the checkpoint
    proc = torchrun([f"resume={run}", "steps=30"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert only_run(tmp_path) == run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 30 and metrics["ranks_in_sync"] is True
    assert [e.step for e in events(run).Scalars("game/loss_D")] == [10, 20, 30]


def test_ctrl_c_stops_every_rank_at_the_same_log_window(tmp_path):
    import signal
    import time

    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "gan_cli", "device=cpu", "dataset=ring",
           "steps=1000000", "log_every=50", *QUICK_EVAL]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(tmp_path.glob("outputs/runs/*/train.log")):
            time.sleep(0.2)
        log = next(tmp_path.glob("outputs/runs/*/train.log"))
        while time.time() < deadline and "step 100/" not in log.read_text():
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)  # torchrun passes it on to both ranks
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    run = only_run(tmp_path)
    assert (run / "metrics.json").is_file(), err[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["ranks_in_sync"] is True
    assert metrics["steps"] % 50 == 0 and metrics["steps"] >= 100
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == metrics["steps"]
    assert err.count("gan-train: interrupted (SIGINT) at iteration") == 1  # one line, from rank 0
