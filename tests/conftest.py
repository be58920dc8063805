"""What the tests share: composed configs, the real command lines (run by one process that imported
gan_cli, or in a fresh interpreter), event files, tiny MNIST files."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):  # one of make test's processes: one core each (the commands it runs too)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gan_cli.cli.checks import compose
from gan_cli.config import config_dir, register_configs
from scripts.forkserver import CommandServer

REPO = Path(__file__).resolve().parent.parent
# small evaluations: the classifier trains for a few steps, few samples (tests check wiring, not values)
QUICK_EVAL = ("eval.n_samples=300", "eval.classifier_steps=30", "eval.theory_samples=2000", "eval.mode_samples=500")
# a 4-iteration CPU run of train(): two log windows; evaluation and samples at iterations 0 and 4; a checkpoint at 4
FAST = ("steps=4", "log_every=2", "sample_every=4", "ckpt_every=4", "eval_every=4", "batch_size=8", "device=cpu",
        *QUICK_EVAL)
EVAL_FAST = (*FAST, "eval_every=2")  # the same, evaluated at iterations 0, 2 and 4


def choices_in_conf(group: str) -> set:
    """The choices of a config group as Hydra finds them: the YAML files in conf/<group>/ and the choices
    registered in the ConfigStore (those with no defaults of their own)."""
    from hydra.core.config_store import ConfigStore

    register_configs()
    stored = {name.removesuffix(".yaml") for name in ConfigStore.instance().list(group)} \
        if ConfigStore.instance().repo.get(group) else set()
    return {p.stem for p in (Path(config_dir()) / group).glob("*.yaml")} | stored


def events(run_dir: Path) -> EventAccumulator:
    """Everything TensorBoard would read from a run directory."""
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    acc.Reload()
    return acc


COLLECTED = pytest.StashKey[list]()  # every test collected, before -m or -k leave any out (tests/test_suite.py)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    config.stash[COLLECTED] = list(items)
    # the longest tests first: the test processes then share out the others, rather than one of them running a
    # minute-long test at the end while the other waits
    items.sort(key=lambda item: item.get_closest_marker("longest") is None)


@pytest.fixture(autouse=True, scope="session")
def _classifier_cache(tmp_path_factory):
    """Keep feature classifiers that tests train out of the user's cache (subprocesses inherit it)."""
    old = os.environ.get("GAN_CLI_CACHE")
    os.environ["GAN_CLI_CACHE"] = str(tmp_path_factory.mktemp("gan-cli-cache"))
    yield
    if old is None:
        os.environ.pop("GAN_CLI_CACHE", None)
    else:
        os.environ["GAN_CLI_CACHE"] = old


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A directory that ``build(path)`` fills, built once in a test session: make test's processes share it (the
    first to ask builds it under a lock, the others wait and read it)."""
    import fcntl

    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root  # the folder the processes share
    path, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
            build(path)
            done.touch()
    return path


@pytest.fixture
def make_cfg():
    """Compose the real config tree with overrides, as the CLI would (recipes included, no run dir)."""
    register_configs()

    def _make(*overrides: str):
        return compose(config_dir(), overrides)

    return _make


_server = None
_server_root = None  # under pytest's temporary folder, which pytest prunes even after a run that was killed


def _commands():
    """The shared server, started anew if it stopped; None where it cannot start (the package fails to import)."""
    global _server
    if _server is None or not _server.alive():
        if _server is not None:
            _server.close()
        _server = CommandServer(Path(tempfile.mkdtemp(prefix="commands-", dir=_server_root)))
    return _server if _server.alive() else None


def _run_command(command, args, cwd, env, timeout):
    """Through the shared server; a fresh process where it cannot start (a fresh process then shows why)."""
    if (server := _commands()) is not None:
        return server.run(command, args, cwd, env, timeout)
    exe = str(Path(sys.executable).with_name(command))
    return subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(autouse=True, scope="session")
def _command_server(tmp_path_factory):
    global _server_root
    _server_root = tmp_path_factory.getbasetemp()
    yield
    if _server is not None:
        _server.close()


_started: list = []  # the commands start_cli started through the server


@pytest.fixture(autouse=True)
def _end_started():
    """After each test, a command it started and left running (the test failed before it ended) is killed: the
    server runs nothing else until it ends."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def run_cli(args, cwd=None, env_extra=None, module=False, timeout=300, fresh=False):
    """Run gan-train on a command line; return the CompletedProcess. ``fresh``, ``module`` (``python -m
    gan_cli``) or an ``env_extra`` (which may be read when torch loads) start a new interpreter; otherwise
    the shared server runs it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    if not (fresh or module or env_extra):
        return _run_command("gan-train", args, cwd or REPO, env, timeout)
    exe = [sys.executable, "-m", "gan_cli"] if module else [str(Path(sys.executable).with_name("gan-train"))]
    return subprocess.run(exe + list(args), cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=timeout)


def start_cli(args, cwd=None, timeout=300):
    """gan-train started and not waited for, in a process group of its own (to be stopped by a signal): through the
    shared server, as subprocess.Popen where it cannot start. Its ``communicate()`` gives (stdout, stderr)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if (server := _commands()) is not None:
        _started.append(server.start("gan-train", args, cwd or REPO, env, timeout))
        return _started[-1]
    return subprocess.Popen([str(Path(sys.executable).with_name("gan-train")), *args], cwd=cwd or REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def run_eval(args, timeout=300, fresh=False):
    """Run gan-eval on a command line (through the shared server unless ``fresh``); return the CompletedProcess."""
    if not fresh:
        return _run_command("gan-eval", args, os.getcwd(), dict(os.environ), timeout)
    exe = str(Path(sys.executable).with_name("gan-eval"))
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX format (MNIST's): magic 0x0000080N (unsigned byte, N dims), big-endian sizes, raw bytes."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_tiny_mnist(root: Path, folder: str = "MNIST", n_train: int = 120, n_test: int = 30) -> Path:
    """A tiny MNIST-format dataset in torchvision's layout under ``root/folder/raw``."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = (rng.random((n, 28, 28)) * 255).astype(np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        _write_idx(raw / f"{split}-images-idx3-ubyte", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture
def tiny_mnist(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_tiny_mnist(root, "MNIST")
    write_tiny_mnist(root, "FashionMNIST")
    return root
