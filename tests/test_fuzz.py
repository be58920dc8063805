"""The config fuzzer (scripts/fuzz.py), short and deterministic: overrides drawn from the schema itself
must end in a run that makes sense or in one line naming the key; never a traceback or a hang.
``python scripts/fuzz.py --n 1000`` is the long profile."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from .conftest import REPO

spec = importlib.util.spec_from_file_location("gan_fuzz", REPO / "scripts" / "fuzz.py")
fuzz = importlib.util.module_from_spec(spec)
sys.modules["gan_fuzz"] = fuzz
spec.loader.exec_module(fuzz)

TABLE = fuzz.keys()


@pytest.fixture(scope="session")
def server():
    s = fuzz.Server(REPO, timeout=120)
    yield s
    s.close()


def _fuzzed(strategy, command, judge):
    """A short, deterministic profile of the fuzzer: every case ends ok or in an error that names its cause."""
    @pytest.mark.slow
    @settings(max_examples=24, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(overrides=strategy)
    def test(server, overrides):
        result = server.run(command(overrides))
        outcome = judge(result)
        assert outcome in ("ok", "error"), (outcome, result["argv"], result.get("why"), result["stderr"][-3000:])
    return test


test_fuzzed_overrides_end_cleanly = _fuzzed(fuzz.strategy(), fuzz.command, lambda result: fuzz.judge(result, TABLE))
test_fuzzed_sweeps_end_cleanly = _fuzzed(fuzz.sweep_strategy(), fuzz.sweep_command, fuzz.judge_sweep)


def test_the_fuzzer_draws_from_every_key_of_the_schema():
    from gan_cli.config import domains

    assert set(TABLE) == {k for k, _ in domains()}
    assert len(TABLE) > 60


@pytest.mark.parametrize("argv, outcome", [
    (["dataset=ring", "steps=1", "device=cpu", "eval.theory_samples=2000", "k=0"], "error"),
    (["dataset=ring", "steps=1", "device=cpu", "eval.theory_samples=2000", "eval.mode_samples=500"], "ok"),
    (["dataset=ring", "--cfg", "job", "-p", "optimizer"], "ok"),  # printed, nothing run
    (["dataset=ring", "--cfg", "bogus"], "error"),
])
def test_the_judge_tells_outcomes_apart(server, argv, outcome):
    assert fuzz.judge(server.run(argv), TABLE) == outcome


@pytest.mark.slow
@pytest.mark.parametrize("overrides, outcome", [
    (["seed=0,1"], "ok"),
    (["k=0,1"], "error"),  # exit 1: one job invalid, named
    (["seed=range(0)"], "error"),  # refused in one line
])
def test_the_sweep_judge_tells_outcomes_apart(server, overrides, outcome):
    assert fuzz.judge_sweep(server.run(fuzz.sweep_command(overrides))) == outcome
