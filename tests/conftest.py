"""What the tests share: composed configs, the real command lines (run by one process that imported
gan_cli, or in a fresh interpreter), event files, tiny MNIST files."""

from __future__ import annotations

import json
import os
import select
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gan_cli.cli.checks import compose
from gan_cli.config import config_dir, register_configs

REPO = Path(__file__).resolve().parent.parent
# small evaluations: the classifier trains for a few steps, few samples (tests check wiring, not values)
QUICK_EVAL = ("eval.n_samples=300", "eval.classifier_steps=30", "eval.theory_samples=2000", "eval.mode_samples=500")
# a 4-iteration CPU run of train(): two log windows, samples and a checkpoint at the end
FAST = ("steps=4", "log_every=2", "sample_every=4", "ckpt_every=4", "batch_size=8", "device=cpu", *QUICK_EVAL)
EVAL_FAST = (*FAST, "eval_every=2")  # the same, evaluated twice


def choices_in_conf(group: str) -> set:
    """The choices of a config group as users type them: the YAML files in conf/<group>/."""
    return {p.stem for p in (Path(config_dir()) / group).glob("*.yaml")}


def events(run_dir: Path) -> EventAccumulator:
    """Everything TensorBoard would read from a run directory."""
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    acc.Reload()
    return acc


COLLECTED = pytest.StashKey[list]()  # every test collected, before -m or -k leave any out (tests/test_suite.py)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    config.stash[COLLECTED] = list(items)


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


@pytest.fixture
def make_cfg():
    """Compose the real config tree with overrides, as the CLI would (recipes included, no run dir)."""
    register_configs()

    def _make(*overrides: str):
        return compose(config_dir(), overrides)

    return _make


# A process that has imported gan_cli once runs each command in a forked child: the child starts where a
# fresh `gan-train` would be after its imports (3-4 s of torch and Hydra on a small machine), with the
# command's own argv, working directory, environment and standard streams, and ends through the same
# cli() as the console script (run_and_exit: exit handlers, flushed streams, the exit status).
_FORK_SERVER = r"""
import atexit, json, os, signal, sys, time, traceback
sys.path[0] = os.path.dirname(sys.executable)  # a console script's path: its own folder, not the working directory
reply = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # whatever an import prints stays out of the replies
import gan_cli.cli.gan_eval, gan_cli.cli.train
try:  # what runs import on first use (figures, k-d trees), set up as the runs set it up
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot, scipy.spatial
except ImportError:
    pass
entry = {"gan-train": gan_cli.cli.train.cli, "gan-eval": gan_cli.cli.gan_eval.cli}
print(json.dumps({"ready": True}), file=reply, flush=True)
for line in sys.stdin:
    case = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(reply.fileno())
            os.setsid()
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            for fd, name in ((1, "stdout"), (2, "stderr")):
                os.dup2(os.open(case[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
            os.chdir(case["cwd"])
            os.environ.clear()
            os.environ.update(case["env"])
            sys.argv = [case["exe"], *case["argv"]]
            entry[case["command"]]()  # ends the process itself
            code = 0
        except SystemExit as stop:  # as Python ends on it: sys.exit("message") prints it, status 1
            code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
            if not isinstance(stop.code, (int, type(None))):
                print(stop.code, file=sys.stderr)
        except BaseException:  # what Python does with an uncaught exception: the traceback, then status 1
            traceback.print_exc()
            atexit._run_exitfuncs()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            os._exit(code)
    deadline, rc = time.monotonic() + case["timeout"], None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.01)
    if rc is None:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    print(json.dumps({"rc": rc}), file=reply, flush=True)
"""


class CommandServer:
    """Runs gan-train and gan-eval command lines in forked children of one imported process."""

    def __init__(self, root: Path):
        self.root = root
        self.count = 0
        with (self.root / "server.err").open("w") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", _FORK_SERVER], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        if self._reply(180) != {"ready": True}:  # the package cannot be imported right now
            self.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _reply(self, timeout: float):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        return json.loads(line) if line else None

    def run(self, command: str, args, cwd, env, timeout):
        """The CompletedProcess of ``command *args``, as subprocess.run(capture_output=True) gives it."""
        self.count += 1
        out, err = self.root / f"{self.count}.out", self.root / f"{self.count}.err"
        exe = str(Path(sys.executable).with_name(command))
        case = {"command": command, "exe": exe, "argv": [str(a) for a in args], "cwd": str(cwd), "env": env,
                "stdout": str(out), "stderr": str(err), "timeout": timeout}
        try:
            self.proc.stdin.write(json.dumps(case) + "\n")
            self.proc.stdin.flush()
            answer = self._reply(timeout + 60)
        except (OSError, ValueError):
            answer = None
        if answer is None:  # the server itself failed: not an outcome of the command
            log = (self.root / "server.err").read_text(errors="replace")[-3000:]
            self.close()
            raise RuntimeError(f"the process running `{command}` command lines stopped:\n{log}")
        stdout, stderr = (p.read_text(errors="replace") if p.exists() else "" for p in (out, err))
        for p in (out, err):
            p.unlink(missing_ok=True)
        if answer["rc"] is None:
            raise subprocess.TimeoutExpired([exe, *args], timeout, stdout, stderr)
        return subprocess.CompletedProcess([exe, *args], answer["rc"], stdout, stderr)

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
            self.proc = None


_server = None
_server_root = None  # under pytest's temporary folder, which pytest prunes even after a run that was killed


def _run_command(command, args, cwd, env, timeout):
    """Through the shared server; a fresh process where it cannot start (the package fails to import:
    the fresh process then shows why)."""
    global _server
    if _server is None or not _server.alive():
        if _server is not None:
            _server.close()
        _server = CommandServer(Path(tempfile.mkdtemp(prefix="commands-", dir=_server_root)))
    if _server.alive():
        return _server.run(command, args, cwd, env, timeout)
    exe = str(Path(sys.executable).with_name(command))
    return subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(autouse=True, scope="session")
def _command_server(tmp_path_factory):
    global _server_root
    _server_root = tmp_path_factory.getbasetemp()
    yield
    if _server is not None:
        _server.close()


def run_cli(args, cwd=None, env_extra=None, module=False, timeout=300, fresh=False):
    """Run gan-train on a command line; return the CompletedProcess. ``fresh``, ``module`` (``python -m
    gan_cli``) or an ``env_extra`` (which may be read when torch loads) start a new interpreter; otherwise
    the shared server runs it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    if not (fresh or module or env_extra):
        return _run_command("gan-train", args, cwd or REPO, env, timeout)
    exe = [sys.executable, "-m", "gan_cli"] if module else [str(Path(sys.executable).with_name("gan-train"))]
    return subprocess.run(exe + list(args), cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=timeout)


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
