"""Populations (hydra/launcher=population): runs that differ in their seed and learning rates trained together, each
member a whole run that follows its solo run."""

import json

import pytest
import torch

from gan_cli import data as datasets
from gan_cli.game.population import Population
from gan_cli.game.updates import GAN

from .conftest import QUICK_EVAL, events, run_cli, run_eval

LOSSES = [0, 1, 3, 6]  # game/loss_D, game/D_real, game/D_fake, game/loss_G in Stats.D_TAGS + Stats.G_TAGS


def _gans(cfg, seeds):
    data = datasets.load(cfg.dataset, torch.device("cpu"))
    gans = []
    for seed in seeds:  # as a run starts (loop._start): seeded, then built
        torch.manual_seed(seed)
        gans.append(GAN(cfg, data, torch.device("cpu")))
    return gans


def _iteration(gan, cfg, it):
    """One iteration of Algorithm 1 (as loop._iterate runs it): D's and G's statistics, the D ones of its last step."""
    if cfg.updates == "simultaneous":
        d, g = gan.simultaneous_step(cfg.batch_size)
    else:
        for _ in range(cfg.k):
            d = gan.d_step(cfg.batch_size)
        g = gan.g_step(cfg.batch_size)
    if gan.ema is not None:
        gan.ema.update(it)
    return torch.cat([d.values, g], -1)


@pytest.mark.parametrize("overrides, iterations", [
    (("experiment=figure1",), 100),  # Adam, k = 1, batch 512
    pytest.param(("experiment=ring", "batch_size=64"), 100, marks=pytest.mark.slow),  # batch-norm G, maxout D
    (("dataset=digits", "arch.g_hidden=64", "arch.d_hidden=32", "batch_size=32", "k=5"), 100),  # dropout in D, SGD
    (("dataset=digits", "arch.g_hidden=64", "arch.d_hidden=32", "batch_size=32", "updates=simultaneous",
      "optimizer=adam", "ema.decay=0.9"), 100),
    pytest.param(("dataset=digits", "arch.g_hidden=32", "arch.d_hidden=16", "batch_size=16", "loss=wasserstein_gp",
                  "optimizer=adam", "optimizer.lr=1e-4"), 60, marks=pytest.mark.slow),
    pytest.param(("experiment=ring", "pack=2", "batch_size=32", "optimizer=sgd", "optimizer.momentum=0.5",
                  "optimizer.lr=0.01"), 60, marks=pytest.mark.slow),
])
def test_each_member_follows_the_solo_run_of_its_seed(make_cfg, overrides, iterations):
    """Member i starts from the solo run's weights and draws what it draws (the generators end in the same state);
    the statistics agree to float rounding over the first 10 iterations, the losses over the first 30. Batched products
    sum in another order than single ones, and the game amplifies that rounding: later iterations drift apart as a
    solo run does when anything changes its rounding."""
    cfg = make_cfg(*overrides, "device=cpu")
    solo, population = _gans(cfg, [1])[0], Population(_gans(cfg, [0, 1, 2]), [cfg] * 3)
    for it in range(1, iterations + 1):
        alone, together = _iteration(solo, cfg, it), _iteration(population, cfg, it)
        assert together.shape[0] == 3
        if it <= 10:  # every statistic
            torch.testing.assert_close(together[1], alone, rtol=1e-4, atol=1e-6, msg=f"iteration {it}")
        if it <= 30:  # the losses and D's mean scores (spreads and gradient norms amplify rounding first)
            torch.testing.assert_close(together[1][LOSSES], alone[LOSSES], rtol=1e-4, atol=1e-6, msg=f"iteration {it}")
    assert torch.equal(solo.gen.get_state(), population.gen[1].get_state())
    assert not torch.equal(population.gen[0].get_state(), population.gen[1].get_state())


def test_members_with_their_own_learning_rates(make_cfg):
    cfgs = [make_cfg("experiment=figure1", "device=cpu", f"optimizer.lr={lr}") for lr in (1e-4, 1e-3)]
    members = [_gans(c, [3])[0] for c in cfgs]
    population = Population(members, cfgs)
    solos = [_gans(c, [3])[0] for c in cfgs]
    for it in range(1, 21):
        together = _iteration(population, cfgs[0], it)
        for i, (solo, c) in enumerate(zip(solos, cfgs)):
            torch.testing.assert_close(together[i], _iteration(solo, c, it), rtol=2e-4, atol=1e-5)


def _files(run_dir):
    return sorted(str(p.relative_to(run_dir)).split(".")[0] for p in run_dir.rglob("*") if p.is_file())


@pytest.mark.slow
def test_a_population_as_users_run_it(tmp_path):
    """Two members and the solo run of seed 1: the same files and tags, the same losses; a member resumes alone,
    gan-eval measures it, and the same command continues nothing that finished."""
    common = ["experiment=figure1", "steps=40", "log_every=10", "eval_every=40", "sample_every=40", *QUICK_EVAL]
    sweep, solo = tmp_path / "sweep", tmp_path / "solo"
    proc = run_cli(["-m", "hydra/launcher=population", "seed=0,1", *common, f"hydra.sweep.dir={sweep}"])
    assert proc.returncode == 0, proc.stderr
    assert "a population of 2" in proc.stdout + proc.stderr
    assert run_cli(["seed=1", *common, f"hydra.run.dir={solo}"]).returncode == 0
    member = sweep / "1_seed=1"
    assert _files(member) == _files(solo)
    ours, theirs = events(member), events(solo)
    assert ours.Tags()["scalars"] == theirs.Tags()["scalars"]
    for tag in ("game/loss_D", "game/loss_G", "game/D_real"):
        assert [e.step for e in ours.Scalars(tag)] == [e.step for e in theirs.Scalars(tag)]
        for a, b in zip(ours.Scalars(tag), theirs.Scalars(tag)):
            assert a.value == pytest.approx(b.value, rel=1e-3)
    assert json.loads((member / "metrics.json").read_text())["status"] == "ok"
    resumed = run_cli([f"resume={member}", "steps=60"])
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((member / "metrics.json").read_text())["steps"] == 60
    measured = run_eval([str(member), *QUICK_EVAL])
    assert measured.returncode == 0, measured.stderr


@pytest.mark.slow
def test_one_member_diverges_and_the_other_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", "hydra/launcher=population", "experiment=dirac", "optimizer.lr=0.01,0.1",
                    "optimizer.momentum=0.5", "updates=simultaneous", f"hydra.sweep.dir={sweep}"])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    status = {p.name: json.loads((p / "metrics.json").read_text())["status"] for p in sweep.iterdir() if p.is_dir()}
    assert status == {"0_optimizer.lr=0.01": "ok", "1_optimizer.lr=0.1": "diverged"}
    assert (sweep / "1_optimizer.lr=0.1" / "checkpoints").is_dir()


@pytest.mark.slow
def test_what_a_population_cannot_train_is_refused_in_one_line(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", "hydra/launcher=population", "dataset=ring", "steps=2", "seed=0,1", "compile=true",
                    f"hydra.sweep.dir={sweep}"])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "compile=true is not supported in a population" in proc.stderr


@pytest.mark.slow
def test_ctrl_c_checkpoints_every_member_and_the_same_command_continues(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    sweep = tmp_path / "sweep"
    command = [str(Path(sys.executable).with_name("gan-train")), "-m", "hydra/launcher=population",
               "experiment=figure1", "seed=0,1", "steps=3000", "eval_every=3000", *QUICK_EVAL,
               f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(sweep.glob("*/events.out.tfevents.*"))) < 2:
        time.sleep(0.5)
    time.sleep(3)  # into training
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal sends Ctrl-C
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert f"hydra.sweep.dir={sweep}" in err
    states = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert [s["status"] for s in states] == ["interrupted"] * 2 and 0 < states[0]["steps"] < 3000
    assert states[0]["steps"] == states[1]["steps"]
    again = run_cli(command[1:])
    assert again.returncode == 0, again.stderr
    states = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert [(s["status"], s["steps"]) for s in states] == [("ok", 3000)] * 2


@pytest.mark.slow
def test_a_population_larger_than_allowed_trains_in_parts(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", "hydra/launcher=population", "hydra.launcher.max_members=2", "dataset=ring", "arch=mlp",
                    "arch.g_hidden=16", "arch.d_hidden=16", "steps=4", "log_every=2", "seed=0,1,2", "pack=1,2",
                    *QUICK_EVAL, f"hydra.sweep.dir={sweep}"])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert out.count("a population of 2") == 2 and out.count("a population of 1") == 2  # per pack: 2, then 1
    status = [json.loads(p.read_text())["status"] for p in sweep.glob("*/metrics.json")]
    assert status == ["ok"] * 6


def test_a_fault_in_one_population_fails_its_members_and_the_next_population_runs(tmp_path, monkeypatch, capsys):
    import sys

    from gan_cli.cli.train import main

    real = Population._real

    def faulty(self, n):
        if self.pack == 1:
            raise RuntimeError("a fault in one population")
        return real(self, n)

    sweep = tmp_path / "sweep"
    monkeypatch.setattr(Population, "_real", faulty)
    monkeypatch.setattr(sys, "argv", ["gan-train", "-m", "hydra/launcher=population", "dataset=ring", "arch=mlp",
                                      "arch.g_hidden=16", "arch.d_hidden=16", "steps=2", "log_every=1", "seed=0,1",
                                      "pack=1,2", *QUICK_EVAL, f"hydra.sweep.dir={sweep}"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    assert "gan-train: population: RuntimeError: a fault in one population" in capsys.readouterr().err
    status = {p.parent.name: json.loads(p.read_text())["status"] for p in sweep.glob("*/metrics.json")}
    assert status == {"0_pack=1,seed=0": "failed", "1_pack=2,seed=0": "ok", "2_pack=1,seed=1": "failed",
                      "3_pack=2,seed=1": "ok"}


def test_members_stay_locked_while_the_population_trains(tmp_path, monkeypatch):
    """Between its job's set-up and the end of the population, no other gan-train may take a member's directory."""
    import sys

    from gan_cli.cli.train import main
    from gan_cli.game import loop
    from gan_cli.runs import rundir

    held = []
    real = loop.train_population

    def watching(members, stop):
        held.extend(rundir.holds(m[3].run_dir) for m in members)
        return real(members, stop)

    monkeypatch.setattr(loop, "train_population", watching)
    monkeypatch.setattr(sys, "argv", ["gan-train", "-m", "hydra/launcher=population", "dataset=ring", "arch=mlp",
                                      "arch.g_hidden=16", "arch.d_hidden=16", "steps=2", "seed=0,1", *QUICK_EVAL,
                                      f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    main()
    assert held == [True, True]
