"""Populations (hydra/launcher=population): runs that differ in their seed and learning rates trained together, each
member a whole run that follows its solo run."""

import copy
import dataclasses
import json
import os
import subprocess
import sys
from contextlib import contextmanager

import pytest
import torch

from gan_cli import data as datasets
from gan_cli.cli import population as population_launcher
from gan_cli.config import UserError
from gan_cli.game import optim
from gan_cli.game.population import Population, Stacked, StackedOptimizer, _in_place
from gan_cli.game.updates import GAN

from .conftest import QUICK_EVAL, events, run_cli, run_eval, start_cli


def _gans(cfg, seeds, dtype=torch.float32):
    data = datasets.load(cfg.dataset, torch.device("cpu"))
    data = dataclasses.replace(data, **{f.name: getattr(data, f.name).to(dtype) for f in dataclasses.fields(data)
                                        if torch.is_tensor(getattr(data, f.name))
                                        and getattr(data, f.name).is_floating_point()})
    gans = []
    for seed in seeds:  # as a run starts (loop._start): seeded, then built
        torch.manual_seed(seed)
        gans.append(GAN(cfg, data, torch.device("cpu")))
    return gans


@contextmanager
def default_dtype(dtype):
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


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
    (("experiment=figure1", "batch_size=128"), 100),  # Adam, k = 5
    # the ring's networks narrowed (G 64 wide, D 32 x 5): batch-norm G, maxout D as the preset has them
    pytest.param(("experiment=ring", "arch.g_hidden=64", "arch.d_hidden=32", "batch_size=64"), 100,
                 marks=pytest.mark.slow),
    pytest.param(("dataset=digits", "arch.g_hidden=64", "arch.d_hidden=32", "batch_size=32", "k=5"), 100,
                 marks=pytest.mark.slow),  # dropout in D, SGD
    (("dataset=digits", "arch.g_hidden=64", "arch.d_hidden=32", "batch_size=32", "updates=simultaneous",
      "optimizer=adam", "ema.decay=0.9"), 100),
    pytest.param(("dataset=digits", "arch.g_hidden=32", "arch.d_hidden=16", "batch_size=16", "loss=wasserstein_gp",
                  "optimizer=adam", "optimizer.lr=1e-4"), 100, marks=pytest.mark.slow),
    pytest.param(("experiment=ring", "arch.g_hidden=64", "arch.d_hidden=32", "pack=2", "batch_size=32", "optimizer=sgd",
                  "optimizer.momentum=0.5", "optimizer.lr=0.01"), 100, marks=pytest.mark.slow),
])
def test_each_member_follows_the_solo_run_of_its_seed(make_cfg, overrides, iterations):
    """Member i starts from the solo run's weights, draws what it draws (the generators end in the same state) and
    makes the same updates: in float64 every statistic agrees to 1e-9 (relative or absolute) for 100 iterations
    (what differs is the rounding of batched products, which sum in another order). In float32, as runs train, the
    statistics agree to float rounding over the first 10 iterations; the game then amplifies that rounding, as it
    amplifies any change of a solo run's rounding."""
    cfg = make_cfg(*overrides, "device=cpu")
    with default_dtype(torch.float64):
        solo = _gans(cfg, [1], torch.float64)[0]
        population = Population(_gans(cfg, [0, 1, 2], torch.float64), [cfg] * 3)
        for it in range(1, iterations + 1):
            alone, together = _iteration(solo, cfg, it), _iteration(population, cfg, it)
            assert together.shape[0] == 3 and together.dtype == torch.float64
            torch.testing.assert_close(together[1], alone, rtol=1e-9, atol=1e-9, msg=f"iteration {it}")
        assert torch.equal(solo.gen.get_state(), population.gen[1].get_state())
        assert not torch.equal(population.gen[0].get_state(), population.gen[1].get_state())
    solo, population = _gans(cfg, [1])[0], Population(_gans(cfg, [0, 1, 2]), [cfg] * 3)
    for it in range(1, 11):
        torch.testing.assert_close(_iteration(population, cfg, it)[1], _iteration(solo, cfg, it), rtol=1e-4,
                                   atol=1e-6, msg=f"float32, iteration {it}")


def test_members_with_their_own_learning_rates(make_cfg):
    """Each member steps with its own rate: in float64 (rounding aside, whatever the thread count) every statistic
    equals its solo run's for 20 iterations."""
    cfgs = [make_cfg("experiment=figure1", "device=cpu", f"optimizer.lr={lr}") for lr in (1e-4, 1e-3)]
    with default_dtype(torch.float64):
        population = Population([_gans(c, [3], torch.float64)[0] for c in cfgs], cfgs)
        solos = [_gans(c, [3], torch.float64)[0] for c in cfgs]
        for it in range(1, 21):
            together = _iteration(population, cfgs[0], it)
            for i, (solo, c) in enumerate(zip(solos, cfgs)):
                torch.testing.assert_close(together[i], _iteration(solo, c, it), rtol=1e-9, atol=1e-9,
                                           msg=f"member {i}, iteration {it}")


@pytest.mark.parametrize("knobs", [
    ("optimizer=adam", "optimizer.beta1=0.8"), ("optimizer=adam", "optimizer.weight_decay=0.01"),
    ("optimizer=sgd",), ("optimizer=sgd", "optimizer.nesterov=true", "optimizer.weight_decay=0.001"),
    ("optimizer=sgd", "optimizer.momentum=0")], ids=["adam", "adam-decay", "sgd", "sgd-nesterov-decay", "sgd-plain"])
def test_a_population_steps_each_member_as_its_solo_runs_optimizer_does(make_cfg, knobs):
    """The stacked SGD and Adam (torch's fused kernels) give each member the float32 numbers of its solo run's
    optimizer (optim.build) bit for bit, with members grouped by learning rate, gradients laid out transposed as
    vmap's come, the schedule changing lr and momentum, and tensors large enough (60,000 numbers a member) that
    another arithmetic (torch's single-tensor step) differs in some of them."""
    cfgs = [make_cfg(*knobs, f"optimizer.lr={lr}").optimizer for lr in (1e-3, 3e-4, 1e-3)]
    gen = torch.Generator().manual_seed(0)
    weights = [torch.randn(200, 300, generator=gen).requires_grad_() for _ in cfgs]
    theirs = [optim.build(c, [w]) for w, c in zip(weights, cfgs)]
    stacked = torch.stack([w.detach() for w in weights]).requires_grad_()
    ours = StackedOptimizer(cfgs, [stacked], theirs, [c.lr for c in cfgs], [c.get("momentum", 0.0) for c in cfgs])
    for t in range(4):
        if t == 2:  # what the schedule sets
            ours.set_lr([c.lr * 0.7 for c in cfgs])
            for opt, c in zip(theirs, cfgs):
                opt.param_groups[0]["lr"] = c.lr * 0.7
            if cfgs[0].name == "sgd" and cfgs[0].momentum:
                ours.momentum = 0.9
                for opt in theirs:
                    opt.param_groups[0]["momentum"] = 0.9
        grad = torch.randn(3, 300, 200, generator=gen).transpose(1, 2)  # (3, 200, 300), not contiguous
        stacked.grad = grad
        ours.step()
        for i, (w, opt) in enumerate(zip(weights, theirs)):
            w.grad = grad[i].contiguous()
            opt.step()
    for i, w in enumerate(weights):
        assert torch.equal(stacked[i], w), f"member {i}"


@pytest.mark.parametrize("members, extra", [
    ((("sgd", 0.01, "optimizer.momentum=0.0"), ("sgd", 0.01, "optimizer.momentum=0.5"),
      ("sgd", 0.01, "optimizer.momentum=0.9")), ()),
    ((("sgd", 0.01, "optimizer.momentum=0.3"), ("sgd", 0.02, "optimizer.momentum=0.5"),
      ("sgd", 0.01, "optimizer.momentum=0.9")),
     ("optimizer.final_momentum=0.95", "optimizer.momentum_ramp_steps=20", "optimizer.nesterov=true")),
    ((("adam", 1e-3, "optimizer.beta1=0.5"), ("adam", 3e-4, "optimizer.beta1=0.9"),
      ("adam", 1e-3, "optimizer.beta2=0.99")), ()),
    ((("adam", 1e-3, "loss.gp_weight=1"), ("adam", 3e-4, "loss.gp_weight=10"), ("adam", 1e-3, "loss.gp_weight=0.1")),
     ("loss=wasserstein_gp",)),
], ids=["sgd-momentum", "sgd-ramp-nesterov", "adam-betas", "wgan-gp-weights"])
def test_members_with_their_own_momentum_or_betas(make_cfg, members, extra):
    """Members that differ in SGD's momentum (ramped, Nesterov's step), in Adam's betas, in the gradient penalty's
    weight, and in learning rate: each member is its solo run (float64, to 1e-9 over 30 iterations)."""
    with default_dtype(torch.float64):
        cfgs = [make_cfg("experiment=figure1", "device=cpu", "batch_size=64", "k=2", f"optimizer={name}",
                         f"optimizer.lr={lr}", own, *extra) for name, lr, own in members]
        population = Population([_gans(c, [3], torch.float64)[0] for c in cfgs], cfgs)
        solos = [_gans(c, [3], torch.float64)[0] for c in cfgs]
        for it in range(1, 31):
            population.schedule(it)
            together = _iteration(population, cfgs[0], it)
            for i, (solo, c) in enumerate(zip(solos, cfgs)):
                optim.Schedule(c.optimizer).apply(it, solo.opt_G, solo.opt_D)
                torch.testing.assert_close(together[i], _iteration(solo, c, it), rtol=1e-9, atol=1e-9,
                                           msg=f"member {i} iteration {it}")


def test_populations_are_keyed_by_what_members_cannot_have_of_their_own():
    key = population_launcher.structure
    assert key(["seed=0", "optimizer.lr=0.1", "k=5"]) == key(["seed=3", "optimizer.lr=0.01", "k=5"]) == ("k=5",)
    assert key(["loss.gp_weight=1", "seed=0"]) == key(["loss.gp_weight=10.0", "seed=1"])
    # a member without the penalty draws no mixing: it trains apart from those with one
    assert key(["loss.gp_weight=0"]) == key(["loss.gp_weight=0.0"]) != key(["loss.gp_weight=1"])
    assert key(["k=1"]) != key(["k=5"])


def test_members_with_and_without_a_penalty_are_not_one_population(make_cfg):
    cfgs = [make_cfg("experiment=figure1", "device=cpu", "loss=wasserstein_gp", f"loss.gp_weight={w}") for w in (0, 1)]
    with pytest.raises(UserError, match="gp_weight=0"):
        Population([_gans(c, [0])[0] for c in cfgs], cfgs)


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
    # the population's progress on the console, a line each log window; the members' logs in their train.log alone
    for step in (10, 20, 30, 40):
        assert f"population 0_seed=0: step {step}/40 | 2 members training |" in proc.stdout, proc.stdout
    assert "member-it/s | 0:00:00 left" in proc.stdout.split("step 40/40")[1].splitlines()[0]
    for member in ("0_seed=0", "1_seed=1"):
        log = (sweep / member / "train.log").read_text()
        assert "a population of" not in log and "population 0_seed=0:" not in log
        assert log.count("step 40/40") == 1 and f"seed={member[-1]}" in log and "protocol (theory)" in log
    assert "protocol (theory)" not in proc.stdout + proc.stderr  # the members' set-up is in their logs alone
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
    # the member's error in its train.log and on the console (as it happens, not only in the summary's status)
    error = next(line for line in (sweep / "1_optimizer.lr=0.1" / "train.log").read_text().splitlines()
                 if "[ERROR]" in line).split(" - ", 1)[1]
    assert "diverged" in error and error in proc.stdout + proc.stderr
    assert error not in (sweep / "0_optimizer.lr=0.01" / "train.log").read_text()
    # the same command again: both runs ended by themselves and are kept, each with its status
    again = run_cli(["-m", "hydra/launcher=population", "experiment=dirac", "optimizer.lr=0.01,0.1",
                     "optimizer.momentum=0.5", "updates=simultaneous", f"hydra.sweep.dir={sweep}"])
    assert again.returncode == 1 and "already holds a run" not in again.stderr, again.stderr
    assert f"job 1 finished before in {sweep / '1_optimizer.lr=0.1'} (diverged): kept, not run again" in again.stdout
    assert "1 of the 2 jobs of the sweep did not finish: #1 optimizer.lr=0.1 (diverged)" in again.stderr
    assert {p.name: json.loads((p / "metrics.json").read_text())["status"] for p in sweep.iterdir()
            if p.is_dir()} == status


@pytest.mark.slow
def test_what_a_population_cannot_train_is_refused_in_one_line(tmp_path):
    """Refused before anything runs, its reason said once however many seeds (it created every job directory, each
    recorded invalid); where only some combinations are refused, the others train."""
    sweep = tmp_path / "sweep"
    for bad in ("compile=true", "precision=bf16"):
        proc = run_cli(["-m", "hydra/launcher=population", "dataset=ring", "steps=2", "seed=range(8)", bad,
                        f"hydra.sweep.dir={sweep}"])
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.count(f"{bad} is not supported in a population") == 1 and not sweep.exists()
    proc = run_cli(["-m", "hydra/launcher=population", "dataset=ring", "steps=2", "seed=0", "compile=true,false",
                    *QUICK_EVAL, f"hydra.sweep.dir={sweep}"])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "compile=true is not supported in a population" in proc.stderr
    statuses = {p.parent.name: json.loads(p.read_text())["status"] for p in sweep.glob("*/metrics.json")}
    assert statuses == {"0_compile=True": "invalid", "1_compile=False": "ok"}


def _stopped_at(log, after: int) -> bool:
    """Whether the member's train.log shows a logged window past iteration ``after``."""
    import re
    steps = [int(m) for m in re.findall(r"step (\d+)/", log.read_text())] if log.is_file() else []
    return any(st > after for st in steps)


def _stop(command, sweep, signum, after: int):
    """Run the population until member 0 logs past ``after``, then send ``signum`` to its process group."""
    import time

    proc = start_cli(command)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not _stopped_at(sweep / "0_seed=0" / "train.log", after):
        time.sleep(0.05)
    os.killpg(proc.pid, signum)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


@pytest.mark.slow
def test_ctrl_c_and_sigterm_checkpoint_every_member_and_the_same_command_continues(tmp_path):
    """Ctrl-C, then SIGTERM (what SLURM sends a job it preempts) to the continued population: each stop checkpoints
    every member at the same iteration; the same command continues each member to the end, exactly as the
    population that was never stopped trains it."""
    import signal

    sweep = tmp_path / "sweep"
    command = ["-m", "hydra/launcher=population", "experiment=figure1", "k=1", "batch_size=64", "seed=0,1",
               "steps=800", "log_every=100", "eval_every=800", *QUICK_EVAL]
    reference = run_cli([*command, f"hydra.sweep.dir={tmp_path / 'reference'}"])
    assert reference.returncode == 0, reference.stderr
    command.append(f"hydra.sweep.dir={sweep}")
    done = 0
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        returncode, out, err = _stop(command, sweep, signum, done)
        assert returncode == code and "Traceback" not in err, err
        assert f"hydra.sweep.dir={sweep}" in err
        assert "continue with: gan-train resume=" not in out + err  # the population's one line, not one per member
        states = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
        assert [s["status"] for s in states] == ["interrupted"] * 2 and done < states[0]["steps"] < 800
        assert states[0]["steps"] == states[1]["steps"]
        for member in sweep.glob("*/train.log"):  # each member's log says why it stopped and how to go on
            said = f"interrupted ({signum.name}) at iteration {states[0]['steps']}; continue with: gan-train resume="
            assert said in member.read_text() and f"hydra.sweep.dir={sweep}" in member.read_text(), member
        done = states[0]["steps"]
    again = run_cli(command)
    assert again.returncode == 0, again.stderr
    states = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert [(s["status"], s["steps"]) for s in states] == [("ok", 800)] * 2
    for member in ("0_seed=0", "1_seed=1"):
        ours, theirs = (json.loads((d / member / "metrics.json").read_text()) for d in (sweep, tmp_path / "reference"))
        figures = [{k: v for k, v in m.items() if k != "wall_s" and not k.startswith("perf/")} for m in (ours, theirs)]
        assert figures[0] == figures[1] and "eval/jsd" in figures[0]


@pytest.mark.slow
def test_the_same_command_continues_a_sweep_whose_first_population_finished(tmp_path):
    """Two populations (k=1, then k=2); Ctrl-C while the second trains. The same command keeps the first
    population's finished members (they count as finished: exit 0, their figures in seeds.csv, their directories
    untouched) and continues the second's."""
    import csv
    import signal
    import time

    sweep = tmp_path / "sweep"
    command = ["-m", "hydra/launcher=population", "experiment=figure1", "batch_size=64", "seed=0,1", "k=1,2",
               "steps=400", "log_every=50", "eval_every=400", *QUICK_EVAL, f"hydra.sweep.dir={sweep}"]
    proc = start_cli(command)
    deadline = time.time() + 120  # jobs 0 and 2 (k=1) train first, then 1 and 3 (k=2)
    while time.time() < deadline and proc.poll() is None and not _stopped_at(sweep / "1_k=2,seed=0" / "train.log", 0):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and f"hydra.sweep.dir={sweep}" in err, err
    first = ("0_k=1,seed=0", "2_k=1,seed=1")
    assert [json.loads((sweep / d / "metrics.json").read_text())["status"] for d in first] == ["ok", "ok"]
    kept = {p: p.read_bytes() for d in first for p in (sweep / d).rglob("*") if p.is_file()}
    again = run_cli(command)
    assert again.returncode == 0, again.stderr
    assert "already holds a run" not in again.stderr and "did not finish" not in again.stderr
    for num, d in zip((0, 2), first):
        assert f"gan-train: job {num} finished before in {sweep / d}: kept, not run again" in again.stdout
    assert "sweep of 4 jobs (2 finished before this command)" in again.stdout
    assert {p: p.read_bytes() for d in first for p in (sweep / d).rglob("*") if p.is_file()} == kept
    rows = {r["job"]: r["status"] for r in csv.DictReader((sweep / "summary.csv").open())}
    assert rows == {"0": "ok (finished before)", "1": "ok", "2": "ok (finished before)", "3": "ok"}
    seeds = {r["k"]: r for r in csv.DictReader((sweep / "seeds.csv").open())}
    assert [(seeds[k]["jobs"], seeds[k]["ok"]) for k in ("1", "2")] == [("2", "2")] * 2
    assert seeds["1"]["eval/jsd_mean"] != ""


@pytest.mark.slow
def test_a_population_larger_than_allowed_trains_in_parts(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", "hydra/launcher=population", "hydra.launcher.max_members=2", "dataset=ring", "arch=mlp",
                    "arch.g_hidden=16", "arch.d_hidden=16", "steps=4", "log_every=2", "seed=0,1,2", "pack=1,2",
                    *QUICK_EVAL, f"hydra.sweep.dir={sweep}"])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert out.count("a population of 2") == 2 and out.count("a population of 1") == 2  # per pack: 2, then 1
    assert "step 4/4 | 1 member training |" in out and "step 4/4 | 2 members training |" in out
    status = [json.loads(p.read_text())["status"] for p in sweep.glob("*/metrics.json")]
    assert status == ["ok"] * 6


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow  # a population of 8 trained and evaluated (about 12 s)
def test_the_summary_gives_each_population_over_its_members(tmp_path, monkeypatch, capsys):
    """Per setting over its seeds, and per population (its members' rates and momenta pooled) with mean, sd and
    95 % interval; seeds, rates and momenta train as one population."""
    import csv
    import sys

    from gan_cli.cli.train import main

    sweep = tmp_path / "sweep"
    monkeypatch.setattr(sys, "argv", ["gan-train", "-m", "hydra/launcher=population", "dataset=ring", "arch=mlp",
                                      "arch.g_hidden=16", "arch.d_hidden=16", "steps=2", "log_every=1", "seed=0,1",
                                      "optimizer=sgd", "optimizer.lr=0.001,0.01", "optimizer.momentum=0.5,0.9",
                                      *QUICK_EVAL, f"hydra.sweep.dir={sweep}"])
    main()
    out = capsys.readouterr()
    assert "a population of 8" in out.out + out.err and "over seeds and per population" in out.out
    with (sweep / "seeds.csv").open() as fh:
        table = {(r["optimizer.lr"], r["optimizer.momentum"]): r for r in csv.DictReader(fh)}
    assert {key: (r["jobs"], r["ok"]) for key, r in table.items()} == {
        **{(lr, m): ("2", "2") for lr in ("0.001", "0.01") for m in ("0.5", "0.9")}, ("all", "all"): ("8", "8")}
    with (sweep / "summary.csv").open() as fh:
        jsd = [float(r["eval/jsd"]) for r in csv.DictReader(fh)]
    whole = table[("all", "all")]
    mean = sum(jsd) / 8
    sd = (sum((v - mean) ** 2 for v in jsd) / 7) ** 0.5
    assert float(whole["eval/jsd_mean"]) == pytest.approx(mean, rel=1e-5)
    assert float(whole["eval/jsd_sd"]) == pytest.approx(sd, rel=1e-5)
    half = 2.364624251592785 * sd / 8 ** 0.5  # Student's t, 0.975 quantile with 7 degrees of freedom
    assert float(whole["eval/jsd_low95"]) == pytest.approx(mean - half, rel=1e-4, abs=1e-9)



FAULTS = """
import resource, sys, torch
from gan_cli import config, data
from gan_cli.cli.checks import compose
from gan_cli.game.population import Population, Stacked, StackedOptimizer, _in_place
from gan_cli.game.updates import GAN
from gan_cli.runs import footprint
if footprint._libc() is None:
    sys.exit(3)
config.register_configs()
cfg = compose(config.config_dir(), ["experiment=figure1", "device=cpu", "k=1"])
points = data.load(cfg.dataset, torch.device("cpu"))
population = Population([GAN(cfg, points, torch.device("cpu")) for _ in range(32)], [cfg] * 32)
def step():
    population.d_step(cfg.batch_size)
    population.g_step(cfg.batch_size)
def faults():
    for _ in range(4):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(8):
        step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 8
plain = faults()
footprint.keep_freed_buffers()
print(plain, faults())
"""


@pytest.mark.slow
def test_a_population_keeps_freed_buffers_for_its_next_step():
    """A population's stacked activations are megabytes: freed, glibc hands them back and maps them afresh next
    step, each page faulting when written (thousands a step), unless keep_freed_buffers() keeps them in the heap,
    as a population's training does (measured: 0-768 faults a step against 5,980-11,360)."""
    done = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True)
    if done.returncode == 3:
        pytest.skip("not glibc: its allocator is left as it is")
    assert done.returncode == 0, done.stderr
    plain, kept = map(int, done.stdout.split())
    assert plain > 2000 and kept < plain / 4, (plain, kept)


@pytest.mark.parametrize("overrides", [
    ("experiment=figure1",),  # Linear -> LeakyReLU
    ("experiment=ring", "arch.g_hidden=16", "arch.d_hidden=8"),  # Linear without bias -> BatchNorm -> ReLU; maxout
    ("dataset=digits", "arch=dcgan", "arch.g_hidden=4", "arch.d_hidden=4"),  # convolutions, dropout
])
def test_a_stacked_network_in_place_gives_the_same_values_and_gradients(make_cfg, overrides):
    """Stacked networks add biases and apply ReLUs in place (fewer passes over megabytes) and compute a one-output
    layer as row vectors times matrices; the values and gradients are those of the modules as built, to float
    rounding (bit for bit but for the one-output layers' sums)."""
    cfg = make_cfg(*overrides)
    gans, inplace = _gans(cfg, (0, 1, 2)), []
    for net in ("G", "D"):
        stacked = Stacked([getattr(g, net) for g in gans], [torch.Generator().manual_seed(i) for i in range(3)])
        plain = Stacked([getattr(g, net) for g in gans], [torch.Generator().manual_seed(i) for i in range(3)])
        plain.template = copy.deepcopy(getattr(gans[0], net))
        x = torch.randn(3, 32, cfg.z_dim) if net == "G" else gans[0].data.sample(96).view(3, 32, *gans[0].data.shape)
        outs = [s(x.detach().clone().requires_grad_()) for s in (stacked, plain)]
        torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)
        grads = [torch.autograd.grad(o.square().sum(), s.parameters()) for o, s in zip(outs, (stacked, plain))]
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        if net == "G" and gans[0].data.dim > 1:  # no one-output layer: bit for bit
            assert torch.equal(outs[0], outs[1]) and all(torch.equal(a, b) for a, b in zip(*grads))
        inplace += [m for m in stacked.template.modules()
                    if isinstance(m, (torch.nn.ReLU, torch.nn.LeakyReLU)) and m.inplace]
    assert inplace, "no ReLU was made in place"


def test_a_parameter_at_two_places_of_a_network_is_each_member_s_own():
    """functional_call unties nothing for a network without tied tensors (its cost at every call); one whose two
    layers share a weight still computes each member's output with that member's weight at both places."""
    from gan_cli.game.population import Stacked

    a, b = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    b.weight = a.weight
    for net, tied in ((torch.nn.Sequential(a, torch.nn.ReLU(), b), True),
                      (torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 3)), False)):
        nets = [copy.deepcopy(net) for _ in range(3)]
        with torch.no_grad():
            nets[1][0].weight.mul_(2)
            nets[2][0].weight.mul_(-1)
        stacked, x = Stacked(nets, [torch.Generator() for _ in nets]), torch.randn(3, 4, 3)
        assert stacked.tied == tied
        assert torch.allclose(stacked(x), torch.stack([n(x[i]) for i, n in enumerate(nets)]))


def test_only_a_relu_whose_input_nothing_else_reads_is_made_in_place():
    nn = torch.nn
    net = _in_place(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 4), nn.Sigmoid(), nn.ReLU(),
                                  nn.Tanh(), nn.LeakyReLU(0.2), nn.BatchNorm1d(4), nn.LeakyReLU(0.2)))
    assert [m.inplace for m in net if isinstance(m, (nn.ReLU, nn.LeakyReLU))] == [True, False, False, True]
    assert type(net[0]).__name__ == "_Linear"


@pytest.mark.slow
def test_a_population_in_a_terminal_shows_its_progress_bar(tmp_path):
    """In a terminal the console shows the population's bar (its members' iterations, member-it/s) and none of the
    members' own log lines, which go to their train.log."""
    import pty
    import re
    from pathlib import Path

    primary, secondary = pty.openpty()
    exe = str(Path(sys.executable).with_name("gan-train"))
    proc = subprocess.Popen([exe, "-m", "hydra/launcher=population", "seed=0,1", "experiment=figure1", "steps=40",
                             "log_every=10", *QUICK_EVAL, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                            stdin=secondary, stdout=secondary, stderr=secondary, env={**os.environ, "COLUMNS": "120"})
    os.close(secondary)
    out = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=300) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode("utf-8", "replace"))
    bars = [line for line in re.split(r"[\r\n]+", text) if line.startswith("population of 2")]
    assert bars and re.search(r"40/40 +\d+ member-it/s", bars[-1]), text[-3000:]
    assert "step 10/40 | loss_D" not in text  # a member's log line
    assert "step 10/40 | loss_D" in (tmp_path / "sweep" / "0_seed=0" / "train.log").read_text()


@pytest.mark.parametrize("value, says", [
    ("-1", "hydra.launcher.max_members=-1 is not allowed: hydra.launcher.max_members must be an integer >= 1, or null"),
    ("0", "hydra.launcher.max_members=0 is not allowed"),  # it ran nothing and exited 0
    ("abc", "hydra.launcher.max_members=abc is not allowed: hydra.launcher.max_members must be an integer >= 1"),
    ("1.5", "hydra.launcher.max_members=1.5 is not allowed"),
])
def test_a_launcher_setting_out_of_its_domain_is_refused_in_one_line(tmp_path, value, says):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", "hydra/launcher=population", "seed=0,1", "steps=2", f"hydra.launcher.max_members={value}",
                    f"hydra.sweep.dir={sweep}"])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith("gan-train: error:") and says in lines[0], lines[0]
    assert not any(sweep.glob("*/metrics.json"))  # nothing ran


@pytest.mark.slow
def test_while_a_population_trains_its_summary_says_its_members_are_running(tmp_path, monkeypatch):
    """summary.csv is written once the members are set up (not after each member's set-up: 64 members read 64
    directories 64 times), and says ``running`` for each until they end, then their own status."""
    import csv
    import sys

    from gan_cli.cli import sweep
    from gan_cli.cli.train import main
    from gan_cli.game import loop

    seen, calls = [], []
    real, summarize = loop.train_population, sweep.summarize

    def watching(members, stop):
        with (tmp_path / "sweep" / "summary.csv").open() as fh:
            seen.extend((row["seed"], row["status"]) for row in csv.DictReader(fh))
        calls.append("train")
        return real(members, stop)

    monkeypatch.setattr(loop, "train_population", watching)
    monkeypatch.setattr(sweep, "summarize", lambda *a, **k: calls.append("summary") or summarize(*a, **k))
    monkeypatch.setattr(sys, "argv", ["gan-train", "-m", "hydra/launcher=population", "dataset=ring", "arch=mlp",
                                      "arch.g_hidden=16", "arch.d_hidden=16", "steps=2", "seed=0,1,2", *QUICK_EVAL,
                                      f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    main()
    assert sorted(seen) == [("0", "running"), ("1", "running"), ("2", "running")]
    assert calls == ["summary", "train", "summary"]
    with (tmp_path / "sweep" / "summary.csv").open() as fh:
        assert [row["status"] for row in csv.DictReader(fh)] == ["ok"] * 3


@pytest.mark.parametrize("bias", [True, False])
def test_a_one_output_layer_under_vmap_gives_linear_s_values_gradients_and_second_gradients(bias):
    """A stacked one-output layer (_Score) against F.linear under vmap, in float64: its output, the gradients of
    its input, weight and bias, and the gradients of a penalty on the input's gradient (as wasserstein_gp's)."""
    from torch.func import vmap

    from gan_cli.game.population import _Score

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    w1 = torch.randn(3, 5, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(3, 1, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    b = torch.randn(3, 1, dtype=torch.float64, generator=gen, requires_grad=True) if bias else None
    results = []
    for layer in (torch.nn.functional.linear, _Score.apply):
        def one(x, w1, w, b, layer=layer):
            return layer(torch.nn.functional.leaky_relu(x @ w1.t()), w, b)
        y = vmap(one, in_dims=(0, 0, 0, None if b is None else 0))(x, w1, w, b)
        wanted = [t for t in (x, w1, w, b) if t is not None]
        first = torch.autograd.grad(y.square().sum(), wanted, create_graph=True)
        penalty = (first[0].norm(dim=-1) - 1).square().sum()
        second = torch.autograd.grad(penalty, [w1, w], allow_unused=True)
        results.append([y, *first, *second])
    assert results[0][0].shape == results[1][0].shape == (3, 7, 1)
    for a, c in zip(*results):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12)
