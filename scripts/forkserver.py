"""Run gan-cli's command lines in forked children of one process that has imported gan_cli once.

A child starts where a fresh ``gan-train`` would be after its imports (3-4 s of torch and Hydra on a small
machine), with the command's own argv, working directory, environment and standard streams, and ends
through the same entry point as the console script (exit handlers, flushed streams, the exit status).
The test suite (tests/conftest.py) and the config fuzzer (scripts/fuzz.py) both run their command lines
here.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
from pathlib import Path
from typing import Dict, Mapping, NoReturn, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent

_SERVER = r"""
import atexit, importlib, json, os, signal, sys, time, traceback
sys.path[0] = os.path.dirname(sys.executable)  # a console script's path: its own folder, not the working directory
reply = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # whatever an import prints stays out of the replies
entry = {}
for command, target in json.loads(sys.argv[1]).items():
    module, _, function = target.partition(":")
    entry[command] = getattr(importlib.import_module(module), function)
try:  # what runs import on first use (figures, k-d trees), set up as the runs set it up
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot, scipy.spatial
except ImportError:
    pass
print(json.dumps({"ready": True}), file=reply, flush=True)
for line in sys.stdin:
    case = json.loads(line)
    start = time.monotonic()
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
    if case.get("started"):  # CommandServer.start: the child's pid now, its status when it ends
        print(json.dumps({"pid": pid}), file=reply, flush=True)
    deadline, rc = start + case["timeout"], None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            rc = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.01)
    if rc is None:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    print(json.dumps({"rc": rc, "seconds": time.monotonic() - start}), file=reply, flush=True)
"""


def entry_points(tree: Path = REPO) -> Dict[str, str]:
    """The console scripts of the checkout ``tree`` (``{"gan-train": "gan_cli.cli.train:cli", ...}``), from
    its pyproject.toml."""
    text = (Path(tree) / "pyproject.toml").read_text()
    section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^\s*([\w-]+)\s*=\s*"([\w.]+:\w+)"', section, re.M))


class CommandServer:
    """Runs command lines (gan-train, gan-eval) in forked children of one imported process. ``env`` is the
    server's environment (its PYTHONPATH picks the gan_cli it imports), ``tree`` the checkout whose
    console scripts it serves; its own messages go to ``root``/server.err."""

    def __init__(self, root: Path, env: Optional[Mapping[str, str]] = None, tree: Path = REPO):
        self.root, self.count, self.seconds = Path(root), 0, 0.0
        env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
        with (self.root / "server.err").open("w") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", _SERVER, json.dumps(entry_points(tree))],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                                         cwd=REPO, env=env)
        if self._reply(180) != {"ready": True}:  # the package cannot be imported right now
            self.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _reply(self, timeout: float):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        return json.loads(line) if line else None

    def _send(self, command: str, args: Sequence[str], cwd, env: Mapping[str, str], timeout: float, **extra):
        """Hand the server a command line; (its argv, the files its stdout and stderr go to)."""
        self.count += 1
        out, err = self.root / f"{self.count}.out", self.root / f"{self.count}.err"
        argv = [str(Path(sys.executable).with_name(command)), *map(str, args)]
        case = {"command": command, "exe": argv[0], "argv": argv[1:], "cwd": str(cwd), "env": dict(env),
                "stdout": str(out), "stderr": str(err), "timeout": timeout, **extra}
        try:
            self.proc.stdin.write(json.dumps(case) + "\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):
            self._failed(command)
        return argv, out, err

    def _answer(self, command: str, timeout: float) -> dict:
        try:
            answer = self._reply(timeout)
        except (OSError, ValueError):
            answer = None
        if answer is None:
            self._failed(command)
        return answer

    def _failed(self, command: str) -> NoReturn:
        """The server itself failed: not an outcome of the command."""
        log = (self.root / "server.err").read_text(errors="replace")[-3000:]
        self.close()
        raise RuntimeError(f"the process running `{command}` command lines stopped:\n{log}")

    def _outcome(self, argv, out: Path, err: Path, timeout: float):
        """The CompletedProcess of a command line handed over by _send, once it ended (the seconds it ran in
        ``self.seconds``)."""
        answer = self._answer(Path(argv[0]).name, timeout + 60)
        stdout, stderr = (p.read_text(errors="replace") if p.exists() else "" for p in (out, err))
        for p in (out, err):
            p.unlink(missing_ok=True)
        self.seconds = answer["seconds"]
        if answer["rc"] is None:
            raise subprocess.TimeoutExpired(argv, timeout, stdout, stderr)
        return subprocess.CompletedProcess(argv, answer["rc"], stdout, stderr)

    def run(self, command: str, args: Sequence[str], cwd, env: Mapping[str, str], timeout: float):
        """The CompletedProcess of ``command *args``, as subprocess.run(capture_output=True) gives it; the
        seconds it ran are in ``self.seconds`` afterwards."""
        return self._outcome(*self._send(command, args, cwd, env, timeout), timeout)

    def start(self, command: str, args: Sequence[str], cwd, env: Mapping[str, str], timeout: float) -> "Started":
        """``command *args`` started, not waited for, as subprocess.Popen(start_new_session=True) starts it: the
        leader of a process group of its own. The server runs nothing else until it has ended."""
        argv, out, err = self._send(command, args, cwd, env, timeout, started=True)
        return Started(self, self._answer(command, 60)["pid"], argv, out, err, timeout)

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
            self.proc = None


class Started:
    """A command line that a CommandServer started (CommandServer.start): what tests use of subprocess.Popen (pid,
    poll, send_signal, communicate, returncode)."""

    def __init__(self, server: CommandServer, pid: int, argv, out: Path, err: Path, timeout: float):
        self.server, self.pid, self.args, self.files, self.timeout = server, pid, argv, (out, err), timeout
        self.returncode: Optional[int] = None
        self.outcome: Optional[subprocess.CompletedProcess] = None

    def _end(self) -> None:
        self.outcome = self.server._outcome(self.args, *self.files, self.timeout)
        self.returncode = self.outcome.returncode

    def poll(self) -> Optional[int]:
        if self.outcome is None and select.select([self.server.proc.stdout], [], [], 0)[0]:
            self._end()
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.outcome is None:
            os.kill(self.pid, signum)

    def communicate(self, timeout: Optional[float] = None) -> tuple:
        """(stdout, stderr) once it ended; the server stops it after the timeout it was started with."""
        if self.outcome is None:
            self._end()
        return self.outcome.stdout, self.outcome.stderr
