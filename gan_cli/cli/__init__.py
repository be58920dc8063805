"""The command lines: gan-train (Hydra entry, signals, exits), gan-eval, sweeps.

Importing them first makes the standard streams safe for a run that outlives its reader: a descriptor the caller
closed (``gan-train ... >&-``) is opened on /dev/null (so that no file the run opens takes its number), and once
the reader of the output has left (``gan-train ... | head -1``) what is written there is dropped instead of
raising in every log line: the run goes on and saves."""

import os
import sys


class _Stream:
    """A text stream that drops what is written once its reader has left (EPIPE) or it was closed."""

    def __init__(self, stream):
        self._stream, self._gone = stream, False

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                return self._stream.write(text)
            except (BrokenPipeError, ValueError):  # the reader left; a closed stream
                self._gone = True
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                self._gone = True

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _guard_streams() -> None:
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:  # closed by the caller: the lowest free descriptor, this one, becomes /dev/null
            os.open(os.devnull, os.O_RDWR)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False))
    for name in ("stdout", "stderr"):
        if not isinstance(getattr(sys, name), _Stream):
            setattr(sys, name, _Stream(getattr(sys, name)))


_guard_streams()
