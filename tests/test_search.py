"""Hyperparameter search through hydra-optuna-sweeper: hparams_search=ring_optuna with 3 trials."""

import csv
import importlib.util
import math

import pytest
from omegaconf import OmegaConf

from .conftest import run_cli

# (optuna takes seconds to import: checked here, imported by the test that runs it)
NEEDS = ("optuna", "hydra_plugins.hydra_optuna_sweeper")
pytestmark = pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in NEEDS),
                                reason="needs the search extra: pip install 'gan-cli[search]'")


@pytest.mark.slow
def test_a_search_returns_its_metric_and_records_failed_trials_as_failed(tmp_path):
    import optuna

    sweep, db = tmp_path / "sweep", tmp_path / "study.db"
    args = ["-m", "hparams_search=ring_optuna", "hydra.sweeper.n_trials=4", "k=choice(1,0)", "steps=40", "log_every=20",
            "eval_every=40", "eval.theory_samples=2000", "eval.mode_samples=500", f"hydra.sweeper.storage=sqlite:///{db}",
            f"hydra.sweep.dir={sweep}"]
    proc = run_cli(args)
    assert "Traceback" not in proc.stderr
    study = optuna.load_study(study_name="ring_optuna", storage=f"sqlite:///{db}")
    trials = study.trials
    assert len(trials) == 4
    states = {t.params["k"]: t.state for t in trials}
    assert states == {1: optuna.trial.TrialState.COMPLETE, 0: optuna.trial.TrialState.FAIL}  # k=0 is invalid
    assert proc.returncode == 1 and "did not finish" in proc.stderr  # and the sweep says which
    with (sweep / "summary.csv").open() as fh:
        rows = {row["job"]: row for row in csv.DictReader(fh)}
    for trial in trials:  # each trial's value is its run's final eval/jsd
        row = rows[str(trial.number)]
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert row["status"] == "ok" and math.isclose(trial.value, float(row["eval/jsd"]), rel_tol=1e-5)
        else:
            assert row["status"] == "invalid"
    best = OmegaConf.load(sweep / "optimization_results.yaml")
    assert best.best_value == pytest.approx(study.best_value) and best.best_params.k == 1
    # the sampler is seeded: the same command draws the same learning rates
    again = run_cli([a.replace(str(sweep), str(tmp_path / "again")).replace(str(db), str(tmp_path / "again.db"))
                     for a in args])
    assert "Traceback" not in again.stderr
    redo = optuna.load_study(study_name="ring_optuna", storage=f"sqlite:///{tmp_path / 'again.db'}")
    assert [t.params for t in redo.trials] == [t.params for t in trials]
