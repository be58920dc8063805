"""The benchmark helpers in scripts/ run: a CIFAR-shaped noise folder, the hand-written dcgan loop, and
bench.py's whole-process comparison against it (a few iterations; the timings themselves are not tested)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def run(*args, **kw):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=600, **kw)


@pytest.mark.slow
def test_noise_folder_and_the_handwritten_dcgan_loop_against_gan_train(tmp_path):
    folder = tmp_path / "cifar_shaped"
    out = run(SCRIPTS / "export_images.py", folder, "--dataset", "noise", "--n", "120")
    assert out.returncode == 0, out.stderr
    files = sorted(folder.rglob("*.png"))
    assert len(files) == 120
    image = Image.open(files[0])
    assert image.size == (32, 32) and image.mode == "RGB"

    too_few = run(SCRIPTS / "handwritten.py", "--arch", "dcgan", "--root", folder, "--iters", "2",
                  "--batch-size", "500")
    assert too_few.returncode != 0 and "fewer than --batch-size 500" in too_few.stderr

    # the hand-written loop runs inside bench.py's comparison (a failed process ends the benchmark with exit 1)
    out = run(SCRIPTS / "bench.py", "--vs-handwritten", folder, "--arch", "dcgan", "--iters", "2", "--rounds", "1")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["arch"] == "dcgan" and result["iters"] == 2
    assert len(result["seconds"]["gan-train"]) == len(result["seconds"]["handwritten"]) == 1
    assert result["speedup"] > 0


def test_bench_starts_gan_train_without_an_installed_command(monkeypatch, tmp_path):
    """Where the package is importable but not installed (a GPU machine with PYTHONPATH), bench.py
    starts gan-train as ``python -m gan_cli``."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        import bench
    finally:
        sys.path.remove(str(SCRIPTS))
    assert bench.gan_train_command()[0].endswith("gan-train")  # this environment has the command
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python3"))
    assert bench.gan_train_command() == [str(tmp_path / "python3"), "-m", "gan_cli"]


def test_the_slurm_check_names_its_checks():
    """scripts/slurm_check.py (a real SLURM on this machine, run by hand as root): a check it does not have is
    refused in one line, before anything is installed or started."""
    proc = run(SCRIPTS / "slurm_check.py", "--only", "launcher,requeue")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "--only launcher,requeue: choose from launcher, launcher_usr2, timelimit, population" in proc.stderr
