"""The suite's own budget: `make test` leaves out the tests marked slow and still runs most of the suite;
`make test-all`, which CI runs, runs them all. Most command lines run in forked children of one process
that imported gan_cli (conftest.run_cli): what they give back is what a fresh gan-train gives."""

import re
import subprocess
import sys

from .conftest import COLLECTED, REPO, run_cli

TESTS = REPO / "tests"
SHARE = 0.7  # of the collected tests, at least this many run in `make test`


def counts(config):
    """(all tests, tests marked slow) of the whole tests/ folder: from this session where it collected the
    whole folder, else from a collection of its own."""
    args = [(config.invocation_params.dir / a.split("::")[0]).resolve() for a in config.args]
    items = config.stash.get(COLLECTED, None)
    if items is not None and args and all(a in (TESTS, REPO) for a in args):
        return len(items), sum(1 for item in items if item.get_closest_marker("slow"))
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", "slow", "tests"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    some = re.match(r"(\d+)/(\d+) tests? collected", last)  # some slow: 'SLOW/ALL tests collected (N deselected)'
    every = re.match(r"(\d+) tests? collected", last)  # every test slow
    none = re.match(r"no tests collected \((\d+) deselected\)", last)
    assert proc.returncode in (0, 5) and (some or every or none), proc.stdout[-3000:] + proc.stderr[-3000:]
    if some:
        return int(some[2]), int(some[1])
    return (int(every[1]), int(every[1])) if every else (int(none[1]), 0)


def test_most_tests_are_not_marked_slow(request):
    total, slow = counts(request.config)
    assert total > 100, total  # the whole suite was counted
    assert total - slow >= SHARE * total, f"{slow} of {total} tests are marked slow; `make test` runs under {SHARE:.0%}"


def test_make_test_leaves_out_the_slow_tests_and_ci_runs_them_all():
    makefile = (REPO / "Makefile").read_text()

    def recipe(target):
        return makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]

    assert '-m "not slow"' in recipe("test")
    assert "-m" not in recipe("test-all").split("pytest", 1)[1]  # every test, whatever its marks
    assert "make test-all" in (REPO / ".ci" / "run").read_text()


def test_a_forked_command_answers_as_a_fresh_one(tmp_path):
    args = ["dataset=ring", "steps=1", "k=0", "hydra.run.dir=run"]  # refused before anything runs
    forked, fresh = (run_cli(args, cwd=tmp_path, fresh=new) for new in (False, True))
    assert forked.args == fresh.args
    assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
    assert fresh.returncode == 2 and "k=0" in fresh.stderr and not (tmp_path / "run").exists()
