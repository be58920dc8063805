"""What a run may do to the directories it writes: one process per run directory (:func:`hold`, until the
process ends or :func:`release`), files written atomically through temporaries of its own (:func:`replacing`;
:func:`clean` removes those of processes that died mid-write), and write failures as one line (:func:`write_error`).

The lock is ``fcntl.flock`` on ``<dir>/.gan-cli.lock``: the kernel drops it when its holder ends,
however it ends, so a lock left by a killed process is taken over (with a warning naming it). The
file says who holds it (PID, host, start time) for the message a second process prints.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import logging
import os
import socket
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Dict, Iterator, Optional

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gan_cli.config import UserError, settings, texts

log = logging.getLogger("gan_cli")

LOCK_NAME = ".gan-cli.lock"
_HELD: Dict[Path, "Lock"] = {}


class InUse(UserError):
    """Another live process holds the directory."""


class Lock:
    """An exclusive lock on a directory (see the module's text); :meth:`acquire` or a UserError."""

    def __init__(self, directory: Path, what: str = "run directory", program: str = "gan-train"):
        self.directory, self.what, self.program = Path(directory), what, program  # program: recorded in the lock
        self.path = self.directory / LOCK_NAME
        self.fd: Optional[int] = None

    def acquire(self) -> "Lock":
        while True:
            try:  # (an OSError of mkdir names the directory)
                self.directory.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as err:
                raise write_error(err, self.path) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                holder = _read(fd)
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise write_error(err, self.path) from None
                raise InUse(f"{self.what} {self.directory} is in use by another {holder.get('program', 'gan-train')} "
                            f"({_describe(holder)}); "
                            "wait for it to end, or choose another directory") from None
            with suppress(FileNotFoundError):  # the file may have been removed by a holder that ended just now
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            os.close(fd)  # lock the new one
        if before := _read(fd):
            log.warning("%s %s: taking over the lock of a gan-train that is no longer running (%s)",
                        self.what, self.directory, _describe(before))
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
              "program": self.program}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            with suppress(OSError):
                os.unlink(self.path)  # while still held, so that no one locks a file on its way out
            os.close(self.fd)
            self.fd = None


def _read(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    return f"PID {holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}" if holder else "PID unknown"


def hold(directory: Path, what: str = "run directory", program: str = "gan-train") -> Lock:
    """Lock ``directory`` for this process (again: the lock it already holds); released at exit.
    Under torchrun only rank 0 writes the run directory, so only it locks."""
    key = Path(os.path.abspath(directory))
    if key not in _HELD:
        lock = Lock(key, what, program)
        _HELD[key] = lock.acquire() if int(os.environ.get("RANK", "0")) == 0 else lock
    return _HELD[key]


def holds(directory: Path) -> bool:
    """Whether this process holds ``directory``'s lock."""
    return Path(os.path.abspath(directory)) in _HELD


def held(directory: Path) -> bool:
    """Whether a live gan-train holds ``directory``: this process, or the one its lock file names. A holder on
    another host counts while its lock file is there (the holder removes it as it lets go)."""
    if holds(directory):
        return True
    try:
        holder = json.loads((Path(directory) / LOCK_NAME).read_text() or "{}")
        if holder.get("host") != socket.gethostname():
            return bool(holder)
        os.kill(int(holder["pid"]), 0)  # signal 0: is it alive
    except PermissionError:  # alive, another user's
        return True
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # no lock file, or its process is gone
        return False
    return True


def owned(directory, program: str = "gan-train") -> bool:
    """Whether this process holds ``directory``'s lock, taking it (for ``program``) when it is free; False when another
    holds it."""
    try:
        hold(Path(str(directory)), program=program)
    except InUse:
        return False
    return True


def records(directory) -> list:
    """A run's records in ``directory``: its checkpoints, its event histories, its metrics.json."""
    d = Path(str(directory))
    return [*sorted((d / "checkpoints").glob("*.pt")), *sorted(d.glob("events.out.tfevents.*")),
            *[p for p in (d / "metrics.json",) if p.exists()]]


def unfinished(directory) -> Optional[Path]:
    """The last.pt of the run that a stop (Ctrl-C, SIGTERM, a preemption) left unfinished in ``directory``, where this
    process is a job of a sweep whose own run it is: the same sweep run again into its directory (under any launcher,
    a population's included) or requeued continues it; else None. A run that ended by itself (ok, diverged) is kept,
    not continued."""
    d = Path(str(directory))
    last = d / "checkpoints" / "last.pt"
    if not last.is_file() or not _own_job(d):
        return None
    with suppress(OSError, ValueError, AttributeError):  # no metrics.json, or one cut short: the run did not finish
        if json.loads((d / "metrics.json").read_text()).get("status") in ("ok", "diverged"):
            return None
    return last


def _own_job(directory: Path) -> bool:
    """Whether this process runs the job of a sweep whose directory ``directory`` is, and the run there is the job's
    own: the first .hydra/overrides.yaml there holds the settings of the job's command line."""
    if not HydraConfig.initialized():
        return False
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN or os.path.abspath(str(hc.runtime.output_dir)) != os.path.abspath(directory):
        return False
    try:
        recorded = texts(OmegaConf.load(directory / ".hydra" / "overrides.yaml"))
    except (OSError, ValueError, yaml.YAMLError, OmegaConfBaseException):  # none, or unreadable: not known as its own
        return False
    return settings(recorded) == settings(texts(hc.overrides.task))


def _hydra_subdir(directory, subdir: str) -> Optional[str]:
    """Where Hydra writes a job's .hydra/ records: ``subdir`` in a directory of its own; beside the first records
    (``subdir/again-TIME``) in one whose run it continues; nowhere in one that another gan-train holds, or that holds
    another run (an earlier job's where hydra.sweep.subdir gives two jobs one directory, another sweep's; or the job's
    own, finished: the same sweep run again): train() refuses or keeps it, and records the job beside it)."""
    if not owned(directory):
        return None
    if not records(directory):
        return subdir
    if unfinished(directory) is None:
        return None
    key = os.path.abspath(str(directory))  # one name per directory (Hydra reads the setting more than once)
    return f"{subdir}/{_AGAIN.setdefault(key, time.strftime('again-%Y-%m-%d_%H-%M-%S'))}"


_AGAIN: Dict[str, str] = {}


# A job of a sweep writes its Hydra records (.hydra/, train.log) only into a job directory it owns: Hydra's
# job_logging builds its file handler with log_file, and hydra.output_subdir is ${gan_owned:...}.
OmegaConf.register_new_resolver("gan_owned", _hydra_subdir, replace=True)


def log_file(filename: str, **kwargs) -> logging.Handler:
    """The job's train.log handler: a FileHandler in a directory this process owns, else a NullHandler."""
    return logging.FileHandler(filename, **kwargs) if owned(Path(filename).parent) else logging.NullHandler()


def release(directory: Path) -> None:
    if (lock := _HELD.pop(Path(os.path.abspath(directory)), None)) is not None:
        lock.release()


@atexit.register
def _release_all() -> None:
    for key in list(_HELD):
        release(key)


def clean(run_dir: Path) -> int:
    """Remove (and count) the temporaries left in checkpoints/ by processes that died mid-write (the lock is
    held: no other process is writing them)."""
    removed = 0
    for leftover in Path(run_dir).glob("checkpoints/*.pt.tmp*"):
        with suppress(OSError):
            leftover.unlink()
            removed += 1
    if removed:
        log.warning("removed %d unfinished checkpoint file(s) left in %s by an earlier run", removed,
                    Path(run_dir) / "checkpoints")
    return removed


REASONS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
           errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
           errno.EPERM: "permission denied", errno.ENAMETOOLONG: "the name is too long"}


def write_error(err: OSError, path: Path) -> UserError:
    """One line for a write that failed: the path and the reason in words."""
    reason = REASONS.get(err.errno) or err.strerror or type(err).__name__
    return UserError(f"cannot write {err.filename or path}: {reason}")


class Refused(BaseException):
    """A directory cannot be used (locked by another process, not writable): raised from a Hydra
    callback as a BaseException so that Hydra passes it on untouched; gan-train prints ``error``."""

    def __init__(self, error: UserError):
        super().__init__(str(error))
        self.error = error


def _hold_or_refuse(directory, what: str) -> None:
    try:
        hold(Path(str(directory)), what)
    except UserError as err:
        raise Refused(err) from None


KEEPING = False  # set while a population's jobs are set up (gan_cli.cli.population): their directories stay held


class LockCallback(Callback):
    """Hydra callback: a single run locks its run directory, a sweep its sweep directory, before
    Hydra writes anything there (.hydra/, train.log); each job of a sweep locks its own in train()."""

    def on_run_start(self, config, **kwargs) -> None:
        _hold_or_refuse(OmegaConf.select(config, "hydra.run.dir"), "run directory")

    def on_multirun_start(self, config, **kwargs) -> None:
        _hold_or_refuse(OmegaConf.select(config, "hydra.sweep.dir"), "sweep directory")

    def on_job_end(self, config, **kwargs) -> None:  # a job's directory (held since its log file opened)
        if not KEEPING:  # a population's member trains after its job's set-up: its launcher releases it
            release(Path(str(config.hydra.runtime.output_dir)))

    def on_run_end(self, config, **kwargs) -> None:
        release(Path(str(OmegaConf.select(config, "hydra.run.dir"))))

    def on_multirun_end(self, config, **kwargs) -> None:
        release(Path(str(OmegaConf.select(config, "hydra.sweep.dir"))))


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Write ``path`` atomically: yields a temporary of this process, renamed over ``path`` at the block's end. On
    failure it is removed and the previous file stays whole; an OSError becomes one line (UserError)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")  # no other process uses it
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        with suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError):
            raise write_error(err, path) from None
        raise


def write_text(path: Path, text: str) -> None:
    """A small file written atomically (see :func:`replacing`)."""
    with replacing(path) as tmp:
        tmp.write_text(text)
