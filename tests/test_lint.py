"""The code, tests and scripts pass ruff with the project's configuration (pyproject.toml)."""

import subprocess
import sys

from .conftest import REPO


def test_ruff_passes():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "gan_cli", "tests", "scripts"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
