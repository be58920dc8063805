"""Hostile conditions: one process per run directory, full disks and read-only places, broken data
files, memory limits, resume edge cases, long run names, every value's domain."""

from __future__ import annotations

import csv
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gan_cli import data
from gan_cli.cli.checks import PLUGIN_SETTINGS
from gan_cli.cli.train import train
from gan_cli.config import NAME_BYTES, UserError, domains, short_name
from gan_cli.data import base, images
from gan_cli.evaluation import memory
from gan_cli.runs import checkpoint, rundir

from .conftest import FAST, _write_idx, run_cli, run_eval

RING = ("dataset=ring", "device=cpu", "eval.theory_samples=2000", "eval.mode_samples=500", "n_samples=4")


def one_error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith(("gan-train: error:", "gan-eval: error:")), lines
    return lines[0]


# -- the schema: every value's domain ------------------------------------------------------------


def test_every_setting_states_its_domain():
    table = dict(domains())
    assert {"k", "optimizer.lr", "dataset.radius", "eval.features", "ema.decay", "dataset.workers"} <= set(table)
    for key, domain in table.items():
        assert domain.describe(), key
    assert not table["dataset.radius"].allows(0.0) and not table["dataset.radius"].allows(-0.0)
    assert not table["optimizer.lr"].allows(float("nan")) and not table["optimizer.lr"].allows(float("inf"))
    assert not table["eval.features"].allows(1) and table["eval.features"].allows(True)
    assert not table["k"].allows(2.0) and not table["k"].allows(True) and table["k"].allows(5)
    assert table["ema.decay"].allows(None) and not table["k"].allows(None)
    assert table["dataset.in_memory"].allows("True") and not table["dataset.in_memory"].allows("maybe")


@pytest.mark.parametrize("override, named", [
    ("dataset.radius=-0", "dataset.radius=0.0 is not allowed"),
    ("dataset.radius=-inf", "dataset.radius=-inf is not allowed"),
    ("loss.d_scale=1e12", "loss.d_scale"),
    ("eval.features=1000000000000", "eval.features=1000000000000 is not allowed"),
    ("k=100000", "k=100000 is not allowed"),
    ("optimizer.lr=${oc.env:GAN_CLI_TEST_UNSET_VARIABLE}", "optimizer.lr cannot be read"),
])
def test_values_outside_their_domain_are_one_line(override, named, tmp_path):
    proc = run_cli([*RING, "steps=1", override, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert named in one_error_line(proc)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("sweep", [False, True])
def test_an_override_given_again_after_a_broken_interpolation_runs_with_the_last_value(sweep, tmp_path):
    """``k=${no.such.key} k=2``: the last value stands; the overrides Hydra records are read as written (their
    ``${...}`` unresolved), for the run, its .hydra files and a sweep's summary."""
    where = ["-m", f"hydra.sweep.dir={tmp_path / 'sweep'}"] if sweep else []  # a single run: the name it makes
    proc = run_cli([*where, *RING, "steps=1", "k=${no.such.key}", "k=2"], cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "Error executing" not in proc.stderr, \
        proc.stderr[-2000:]
    [run] = (tmp_path / "sweep").glob("0*") if sweep else (tmp_path / "outputs" / "runs").iterdir()
    assert json.loads((run / "metrics.json").read_text())["d_updates"] == 2 and "no.such.key" not in run.name
    # a value outside its domain is refused, though the same setting is given again after it
    refused = run_cli([*where, *RING, "steps=1", "k=abc", "k=2"], cwd=tmp_path / "sweep" if sweep else tmp_path)
    assert "k=abc is not allowed" in one_error_line(refused)


@pytest.mark.parametrize("override, says", [
    ("hydra.job.chdir=maybe", "hydra.job.chdir=maybe: Value 'maybe' is not a valid bool"),
    ("hydra.verbose=[", "no viable alternative at input '['"),
])
def test_a_hydra_setting_hydra_refuses_says_why_in_one_line(tmp_path, override, says):
    line = one_error_line(run_cli([*RING, "steps=1", override, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path))
    assert says in line and not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, says", [
    (["--shell-completion"], "nothing given: --shell-completion takes one of install=SHELL"),
    (["-sc", "install=nope"], "install=nope given: --shell-completion takes one of install=SHELL, uninstall=SHELL or "
                              "query=SHELL, SHELL one of bash, fish, zsh"),
    (["-sc", "install=bash", "uninstall=bash"], "install=bash uninstall=bash given"),
    (["-sc", "query=bash"], "query=bash is run by the shell's completion (it reads COMP_LINE)"),
])
def test_shell_completion_without_its_subcommand_is_one_line(tmp_path, args, says):
    assert "COMP_LINE" not in os.environ
    assert says in one_error_line(run_cli(args, cwd=tmp_path))


@pytest.mark.slow
def test_shell_completion_installs_and_completes(tmp_path):
    proc = run_cli(["--shell-completion", "install=bash"], cwd=tmp_path)
    assert proc.returncode == 0 and "hydra_bash_completion" in proc.stdout, proc.stderr
    proc = run_cli(["-sc", "query=bash"], cwd=tmp_path, env_extra={"COMP_LINE": "gan-train loss="})
    assert proc.returncode == 0 and {"loss=minimax", "loss=nonsaturating"} <= set(proc.stdout.split()), proc.stderr


@pytest.mark.parametrize("override", [*(f"{key}=abc" for key, (ok, _) in PLUGIN_SETTINGS.items() if not ok("abc")),
                                      "hydra.verbose=1", "hydra.verbose=[1]", "hydra.launcher.n_jobs=0",
                                      "hydra.sweeper.n_trials=0", "hydra.launcher.timeout_min=0",
                                      "hydra.sweeper.direction=sideways", "hydra.sweeper.max_failure_rate=2"])
def test_a_plugin_setting_out_of_its_domain_is_one_line(tmp_path, override):
    """Settings the launchers and the sweeper check late (a traceback from joblib, submitit or Optuna) or not at all."""
    sweep = tmp_path / "sweep"
    line = one_error_line(run_cli(["-m", "seed=0", "steps=1", override, f"hydra.sweep.dir={sweep}"], cwd=tmp_path))
    key = override.partition("=")[0]
    assert f"{override} is not allowed: {key} must be {PLUGIN_SETTINGS[key][1]}" in line and not sweep.exists()


def test_a_plugin_setting_given_by_interpolation_is_checked_at_its_value(monkeypatch):
    """An interpolation is read as Hydra will read it (an unset variable: a traceback-free line naming the setting);
    its value is checked as a literal is; the last value given is the one that counts."""
    from gan_cli.cli.checks import _plugin_settings
    from gan_cli.config import config_dir
    joblib = ["hydra/launcher=joblib", "hparams_search=ring_optuna", "hydra.sweeper.n_trials=5"]
    monkeypatch.delenv("GAN_CLI_N_JOBS", raising=False)
    _plugin_settings(config_dir(), [*joblib, "hydra.launcher.n_jobs=${oc.env:GAN_CLI_N_JOBS}",
                                    "hydra.launcher.n_jobs=-1"])
    with pytest.raises(UserError, match="hydra.launcher.n_jobs=0 is not allowed"):
        _plugin_settings(config_dir(), ["hydra.launcher.n_jobs=${oc.env:GAN_CLI_N_JOBS}", "hydra.launcher.n_jobs=0"])
    interpolated = [*joblib, "hydra.launcher.n_jobs=${oc.env:GAN_CLI_N_JOBS}"]
    with pytest.raises(UserError, match=r"n_jobs=\$\{oc.env:GAN_CLI_N_JOBS\}: hydra.launcher.n_jobs cannot be read"):
        _plugin_settings(config_dir(), interpolated)
    monkeypatch.setenv("GAN_CLI_N_JOBS", "0")
    with pytest.raises(UserError, match=r"GAN_CLI_N_JOBS\} is not allowed: hydra.launcher.n_jobs must be an integer"):
        _plugin_settings(config_dir(), interpolated)
    monkeypatch.setenv("GAN_CLI_N_JOBS", "2")
    _plugin_settings(config_dir(), interpolated)


@pytest.mark.parametrize("args, says", [
    (["hydra.launcher.cpus_per_task=null", "k=0,1"],  # the invalid combination's notice never comes first
     "Could not override 'hydra.launcher.cpus_per_task': Key 'cpus_per_task' not in 'BasicLauncherConf'"),
    (["hydra.sweeper.n_trials=3", "seed=0"], "Key 'n_trials' not in 'BasicSweeperConf'"),
    (["experiment=dirac", "hydra.launcher.max_members=2", "seed=0"], "Key 'max_members' not in 'BasicLauncherConf'"),
])
def test_a_setting_the_chosen_launcher_or_sweeper_lacks_is_one_line(tmp_path, args, says):
    sweep = tmp_path / "sweep"
    line = one_error_line(run_cli(["-m", "steps=1", *args, f"hydra.sweep.dir={sweep}"], cwd=tmp_path))
    assert says in line and not sweep.exists()


def test_a_setting_without_effect_is_warned_about(tmp_path):
    proc = run_cli([*RING, "steps=1", "optimizer.beta1=0.9", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "gan-train: warning: optimizer.beta1 has no effect with optimizer=sgd" in proc.stderr


# -- one process per run directory -----------------------------------------------------------------


@pytest.mark.parametrize("program", ["gan-train", "gan-eval"])
def test_a_locked_run_directory_is_refused_and_left_alone(tmp_path, program):
    run = tmp_path / "run"
    lock = rundir.Lock(run, program=program).acquire()  # gan-eval holds the directory it writes into
    try:
        proc = run_cli([*RING, "steps=1", f"hydra.run.dir={run}"], cwd=tmp_path)
        line = one_error_line(proc)
    finally:
        lock.release()
    assert f"is in use by another {program} (PID {os.getpid()}" in line
    assert sorted(p.name for p in run.iterdir()) == []  # nothing written, .hydra included


@pytest.mark.slow
def test_two_processes_on_one_run_directory(tmp_path):
    run = tmp_path / "run"
    cmd = [str(Path(sys.executable).with_name("gan-train")), *RING, "steps=400", "log_every=100",
           f"hydra.run.dir={run}"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "in use by another gan-train" in refused or "already holds a run" in refused
    assert json.loads((run / "metrics.json").read_text())["status"] == "ok"
    assert not (run / rundir.LOCK_NAME).exists()  # released at the end
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert sorted(p.name for p in (run / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]


def test_a_dead_holders_lock_is_taken_over_with_a_warning(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / rundir.LOCK_NAME).write_text(json.dumps({"pid": 999999, "host": "elsewhere", "since": "yesterday"}))
    proc = run_cli([*RING, "steps=1", f"hydra.run.dir={run}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "taking over the lock" in proc.stderr + proc.stdout and "PID 999999" in proc.stderr + proc.stdout


def test_leftover_temporary_checkpoints_are_removed(make_cfg, tmp_path):
    cfg = make_cfg(*FAST, "dataset=ring")
    train(cfg, tmp_path / "run")
    rundir.release(tmp_path / "run")
    for name in ("last.pt.tmp", "last.pt.tmp-12345"):
        (tmp_path / "run" / "checkpoints" / name).write_bytes(b"partial")
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    train(make_cfg(f"resume={ckpt}", "steps=6"), tmp_path / "run", overrides=[f"resume={ckpt}", "steps=6"])
    rundir.release(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


# -- full disks and read-only places ---------------------------------------------------------------


def _saved_state(make_cfg):
    from gan_cli.cli.train import new_state
    from gan_cli.data import load
    from gan_cli.game.updates import GAN

    cfg = make_cfg(*FAST, "dataset=ring")
    d = load(cfg.dataset, torch.device("cpu"))
    return new_state(cfg, GAN(cfg, d, torch.device("cpu")))


@pytest.mark.parametrize("failure", ["enospc", "erofs", "torch_writer"])
def test_a_failed_checkpoint_write_keeps_the_last_good_one(make_cfg, tmp_path, monkeypatch, failure):
    state = _saved_state(make_cfg)
    path = tmp_path / "checkpoints" / "last.pt"
    checkpoint.save(path, state)
    good = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"partial")  # what a full disk leaves: the start of the file
        if failure == "enospc":
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        if failure == "erofs":
            raise OSError(errno.EROFS, "Read-only file system", str(f))
        raise RuntimeError("[enforce fail at inline_container.cc:778] . "
                           "PytorchStreamWriter failed writing file: unexpected pos")

    monkeypatch.setattr(torch, "save", broken_save)
    if failure == "torch_writer":  # torch's writer does not say why: the disk is looked at
        monkeypatch.setattr("shutil.disk_usage", lambda p: type("U", (), {"free": 1024})())
    with pytest.raises(UserError) as err:
        checkpoint.save(path, state)
    reason = {"enospc": "the disk is full", "erofs": "the file system is read-only",
              "torch_writer": "the disk is full"}[failure]
    assert "cannot write" in str(err.value) and reason in str(err.value) and "\n" not in str(err.value)
    assert path.read_bytes() == good
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


@pytest.mark.slow
def test_full_disk_during_a_run_is_one_line(tmp_path):
    """A real full disk: a 3 MB tmpfs as the run directory (skipped where mounting is not allowed)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        proc = run_cli([*RING, "steps=50", "ckpt_every=10", "arch.g_hidden=512", "arch.d_hidden=512",
                        f"hydra.run.dir={mnt / 'run'}"], cwd=tmp_path)
        line = one_error_line(proc)
        assert "cannot write" in line and "the disk is full" in line
        leftovers = [p.name for p in (mnt / "run").rglob("*.tmp*")]
        assert leftovers == []
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_an_unwritable_run_directory_is_one_line(tmp_path):
    proc = run_cli([*RING, "steps=1", "hydra.run.dir=/proc/gan-cli-run"], cwd=tmp_path)
    assert "cannot write /proc/gan-cli-run" in one_error_line(proc)


def test_write_errors_name_path_and_reason():
    err = rundir.write_error(OSError(errno.EROFS, "Read-only file system", "/x/metrics.json"), Path("/x"))
    assert str(err) == "cannot write /x/metrics.json: the file system is read-only"
    assert memory.as_user_error(OSError(errno.ENOSPC, "No space", "/y")) is not None
    assert memory.as_user_error(ValueError("other")) is None


# -- broken data files ---------------------------------------------------------------------------


def _mnist(root: Path, n: int = 12) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split in ("train", "t10k"):
        _write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28)))
        _write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, (n,)))
    return raw


@pytest.mark.slow
@pytest.mark.parametrize("damage, says", [
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_bytes(os.urandom(5000)), "magic number"),
    (lambda p: p.write_bytes(p.read_bytes()[:6]), "truncated"),
    (lambda p: p.write_bytes(p.read_bytes()[:-100]), "truncated or corrupt"),
    (lambda p: p.write_bytes(b"\x00\x00\x08\x01" + p.read_bytes()[4:]), "magic number"),
])
def test_broken_mnist_files_are_named(tmp_path, damage, says):
    raw = _mnist(tmp_path)
    bad = raw / "train-images-idx3-ubyte"
    damage(bad)
    proc = run_cli(["dataset=mnist", f"dataset.root={tmp_path}", "steps=1", f"hydra.run.dir={tmp_path / 'run'}"],
                   cwd=tmp_path)
    line = one_error_line(proc)
    assert str(bad) in line and says in line


def test_labels_that_disagree_with_images_are_named(tmp_path):
    raw = _mnist(tmp_path)
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(5))
    with pytest.raises(UserError, match="12 images but 5 labels"):
        images.check_files(images._MNIST, tmp_path)


def test_broken_cifar_batches_are_named(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(os.urandom(300))
    with pytest.raises(UserError, match="data_batch_1 is not a CIFAR batch"):
        images.check_files(images._CIFAR10, tmp_path)


# -- memory ----------------------------------------------------------------------------------------


def test_sizes_that_cannot_fit_are_refused_before_allocation(tmp_path):
    proc = run_cli([*RING, "steps=1", "arch.g_hidden=65536", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    line = one_error_line(proc)
    assert "GiB" in line and "lower arch.g_hidden" in line


def test_the_estimate_grows_with_each_size(make_cfg, monkeypatch):
    d = data.load(make_cfg("dataset=ring").dataset, torch.device("cpu"))
    small = memory.estimate(make_cfg("dataset=ring"), d)
    assert memory.estimate(make_cfg("dataset=ring", "batch_size=6400"), d).activations > 50 * small.activations
    assert memory.estimate(make_cfg("dataset=ring", "arch.g_hidden=2560"), d).parameters > 10 * small.parameters
    monkeypatch.setattr(base, "free_memory", lambda device: 10 * 2**20)
    with pytest.raises(UserError, match="lower batch_size"):
        memory.check(make_cfg("dataset=ring", "batch_size=1000000"), d, torch.device("cpu"))


@pytest.mark.slow
def test_the_estimate_builds_any_architecture_without_its_initialisation(tmp_path):
    # on the meta device normal_, trunc_normal_'s erfinv_ and clamp_ run torch's Python reference ops, whose first
    # use imports SymPy and more (~1.4 s of a run's start: every ring and grid run paid it in pacgan's init); an
    # architecture registered by a user is built for its shapes the same way, in a process that has not imported them
    code = """if True:
        import sys, torch
        from torch import nn
        from gan_cli import config, data
        from gan_cli.cli.checks import compose
        from gan_cli.evaluation import memory
        from gan_cli.game import models

        def build(arch, d, z_dim, pack=1):
            G, D = nn.Sequential(nn.Linear(z_dim, 32), nn.Linear(32, d.dim)), nn.Sequential(nn.Linear(d.dim * pack, 1))
            for layer in (*G, *D):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.normal_(layer.bias)
                layer.weight.data.clamp_(-1, 1)
            return G, D

        config.register("arch", "mine", models.Arch(build, "two linear layers, trunc_normal_ init"))
        cfg = compose(config.config_dir(), ["dataset=ring", "arch=mine"])
        d = data.load(cfg.dataset, torch.device("cpu"))
        G, D = build(cfg.arch, d, cfg.z_dim)
        params = sum(p.numel() for net in (G, D) for p in net.parameters())
        assert memory.estimate(cfg, d).parameters == 4 * 5 * params, memory.estimate(cfg, d)
        print("LOADED", sorted(m for m in ("sympy", "torch.distributed.tensor") if m in sys.modules))
    """
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout


def test_out_of_memory_during_a_run_names_the_settings():
    err = memory.as_user_error(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
                                            "can't allocate memory: "
                                            "you tried to allocate 400000000000 bytes"))
    assert err is not None and "out of memory" in str(err) and "batch_size" in str(err)
    assert memory.as_user_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20 GiB")) is not None


# -- resume edge cases -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    proc = run_cli([*RING, "steps=6", "log_every=2", f"hydra.run.dir={run}"], cwd=run.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run


@pytest.mark.parametrize("steps", [6, 3])
def test_resume_with_no_iterations_left_is_one_line(finished_run, steps):
    before = (finished_run / "metrics.json").read_text()
    proc = run_cli([f"resume={finished_run}", f"steps={steps}"], cwd=finished_run.parent)
    line = one_error_line(proc)
    assert f"steps={steps}" in line and "iteration 6" in line
    assert (finished_run / "metrics.json").read_text() == before


@pytest.mark.parametrize("entry", ["rng", "opt_D", "config"])
def test_a_checkpoint_missing_an_entry_is_one_line(finished_run, tmp_path, entry):
    saved = torch.load(finished_run / "checkpoints" / "last.pt", weights_only=True)
    del saved[entry]
    ckpt = tmp_path / "broken.pt"
    torch.save(saved, ckpt)
    line = one_error_line(run_cli([f"resume={ckpt}", "steps=10"], cwd=tmp_path))
    assert entry in line and str(ckpt) in line
    line = one_error_line(run_eval([str(ckpt)]))
    assert entry in line and "resume=" not in line


def test_a_checkpoint_of_a_newer_format_is_one_line(finished_run, tmp_path):
    saved = torch.load(finished_run / "checkpoints" / "last.pt", weights_only=True)
    saved["format"] = checkpoint.FORMAT + 1
    torch.save(saved, tmp_path / "newer.pt")
    line = one_error_line(run_eval([str(tmp_path / "newer.pt")]))
    assert "newer than this gan-cli" in line and "resume=" not in line


@pytest.mark.slow
def test_gan_eval_speaks_of_its_own_arguments(tmp_path):
    line = one_error_line(run_eval([str(tmp_path / "nothing-here")]))
    assert "resume=" not in line and "nothing-here" in line


@pytest.mark.parametrize("args, says", [
    (["--samples", "-1"], "--samples -1 is not allowed: give a number of samples in [0, 10,000] (0: no samples file"),
    (["--samples", "abc"], "--samples abc is not allowed: give a number of samples in [0, 10,000]"),
    (["--samples", "1e9"], "--samples 1e9 is not allowed: give a number of samples in [0, 10,000]"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    ([], "the following arguments are required: path"),
])
def test_gan_eval_refuses_its_own_arguments_in_one_line(finished_run, args, says):
    line = one_error_line(run_eval([str(finished_run)] * bool(args) + args))
    assert says in line and "gan-eval --help" in line


# -- run directory names ---------------------------------------------------------------------------


def test_long_overrides_give_a_short_stable_name():
    long = "optimizer.lr=0." + "1" * 400
    name = short_name(long)
    assert len(name.encode()) <= NAME_BYTES and name == short_name(long) and name != short_name(long + "2")
    assert short_name("k=1,loss=minimax") == "k=1,loss=minimax"
    assert "/" not in short_name("eval.best_by=../..")


def test_a_run_with_very_long_overrides_runs(tmp_path):
    value = "0." + "1" * 300
    proc = run_cli([*RING, "steps=1", f"optimizer.lr={value}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = (tmp_path / "outputs" / "runs").iterdir()
    assert len(run.name.encode()) <= 255
    assert value in (run / ".hydra" / "overrides.yaml").read_text()


def test_a_locked_sweep_directory_is_refused_and_left_alone(tmp_path):
    sweep = tmp_path / "sweep"
    lock = rundir.Lock(sweep, "sweep directory").acquire()
    try:
        proc = run_cli(["-m", *RING, "steps=1", "k=1,2", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
        line = one_error_line(proc)
    finally:
        lock.release()
    assert f"sweep directory {sweep} is in use by another gan-train" in line
    assert list(sweep.iterdir()) == []


@pytest.mark.slow
def test_a_sweep_locks_each_job_and_releases_it(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", *RING, "steps=1", "k=1,2", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert len(jobs) == 2 and all(json.loads((j / "metrics.json").read_text())["status"] == "ok" for j in jobs)
    assert not list(sweep.rglob(rundir.LOCK_NAME))


def test_gan_eval_refuses_a_flag_given_as_a_number(finished_run):
    line = one_error_line(run_eval([str(finished_run), "eval.features=1000000000000"]))
    assert "eval.features=1000000000000 is not allowed: eval.features must be true or false" in line


@pytest.mark.slow
def test_out_of_memory_in_a_real_run_is_one_line(tmp_path):
    """An address-space limit of 5 GiB makes a minibatch of 500,000 fail to allocate during the run
    (the estimate before it sees the machine's free memory, not the limit). The process fills the space up to the
    limit first: 7 GiB took 10 s here, 5 GiB 5.6 s (3 GiB is too little for torch's own start-up)."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (5 * 2**30, 5 * 2**30))

    exe = str(Path(sys.executable).with_name("gan-train"))
    proc = subprocess.run([exe, *RING, "steps=2", "batch_size=500000", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, preexec_fn=limit)
    line = one_error_line(proc)
    assert ("out of memory" in line or "GiB" in line) and "lower batch_size" in line


@pytest.mark.slow
def test_train_releases_the_lock_it_took(make_cfg, tmp_path):
    train(make_cfg(*FAST, "dataset=ring"), tmp_path / "run")
    assert not rundir.holds(tmp_path / "run") and not (tmp_path / "run" / rundir.LOCK_NAME).exists()
    lock = rundir.hold(tmp_path / "other")  # a lock held before (as Hydra's callback does) stays
    train(make_cfg(*FAST, "dataset=ring"), tmp_path / "other")
    assert rundir.holds(tmp_path / "other") and lock.fd is not None
    rundir.release(tmp_path / "other")


def test_a_resume_path_too_long_for_the_file_system_is_one_line(tmp_path):
    line = one_error_line(run_cli(["dataset=ring", "steps=1", "resume=" + "x" * 300], cwd=tmp_path))
    assert line.startswith("gan-train: error: resume=xxx") and "the name is too long" in line


RING_QUICK = ("dataset=ring", "eval.theory_samples=2000", "eval.mode_samples=500")


@pytest.mark.slow
def test_a_run_outlives_a_reader_that_left(tmp_path):
    """`gan-train ... | head -1`: the reader leaves after one line; the run finishes and saves, exit 0, no
    traceback (each log line after it used to print one)."""
    exe = str(Path(sys.executable).with_name("gan-train"))
    proc = subprocess.Popen([exe, *RING_QUICK, "steps=200", "log_every=1", f"hydra.run.dir={tmp_path / 'run'}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.readline()
    proc.stdout.close()  # as head does after its line
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0, err
    assert "Traceback" not in err and "Logging error" not in err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "ok"


@pytest.mark.slow
@pytest.mark.parametrize("closed", [1, 2])
def test_a_run_with_a_closed_standard_stream(tmp_path, closed):
    """`gan-train ... >&-` (or `2>&-`): the run goes on, its output dropped; no file of the run takes the closed
    descriptor's number."""
    exe = str(Path(sys.executable).with_name("gan-train"))
    run = tmp_path / "run"
    keep = subprocess.PIPE
    proc = subprocess.run([exe, *RING_QUICK, "steps=2", f"hydra.run.dir={run}"], preexec_fn=lambda: os.close(closed),
                          stdout=keep if closed == 2 else None, stderr=keep if closed == 1 else None, text=True,
                          timeout=300)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "Traceback" not in (proc.stdout or "") + (proc.stderr or "")
    assert json.loads((run / "metrics.json").read_text())["status"] == "ok"
    assert "step 2/2" in (run / "train.log").read_text()  # the log file itself is whole


@pytest.mark.parametrize("where", ["env", "setting"])
def test_a_classifier_cache_that_cannot_be_a_folder_is_refused_before_training(tmp_path, where):
    """GAN_CLI_CACHE (or eval.cache_dir) on a file used to fail at the first evaluation, after training, with a
    traceback and no checkpoint: now one line before anything is written."""
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    run = tmp_path / "run"
    args = ["steps=2", f"hydra.run.dir={run}"]
    if where == "env":
        proc = run_cli(args, env_extra={"GAN_CLI_CACHE": str(blocker)})
        named = f"GAN_CLI_CACHE={blocker}"
    else:
        proc = run_cli([*args, f"eval.cache_dir={blocker / 'classifiers'}"])
        named = f"eval.cache_dir={blocker / 'classifiers'}"
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"gan-train: error: {named} cannot hold")
    assert f"{blocker} is a file" in proc.stderr and not run.exists()


@pytest.mark.parametrize("fails", ["evaluation", "figure"])
def test_networks_are_saved_before_what_follows_training_can_fail(make_cfg, tmp_path, monkeypatch, fails):
    """The final evaluation or a figure that fails (a broken cache, a full disk while drawing, a bug) used to
    lose the trained networks: last.pt of the last iteration now comes first, and metrics.json says failed."""
    from gan_cli.evaluation import evaluate
    from gan_cli.game.loop import Bookkeeping

    def broken(*args, **kwargs):
        raise RuntimeError(f"the {fails} broke")

    calls = {"n": 0}
    measure = evaluate.Evaluator.measure

    def measure_then_break(self, *args, **kwargs):  # iteration 0's evaluation works, the last one fails
        calls["n"] += 1
        return broken() if calls["n"] > 1 else measure(self, *args, **kwargs)

    if fails == "evaluation":
        monkeypatch.setattr(evaluate.Evaluator, "measure", measure_then_break)
    else:
        monkeypatch.setattr(Bookkeeping, "sample", lambda self, it: broken() if it else None)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match=f"the {fails} broke"):
        train(make_cfg(*FAST, "dataset=ring"), run)
    assert checkpoint.load(run / "checkpoints" / "last.pt")["step"] == 4
    assert json.loads((run / "metrics.json").read_text())["status"] == "failed"
    assert len(list(run.glob("events.out.tfevents.*"))) == 1


def test_a_sweep_writes_nothing_into_a_job_directory_another_process_holds(tmp_path):
    """A job whose directory a live gan-train holds is invalid, and neither Hydra's records (.hydra/, train.log)
    nor the job's (metrics.json, an event file) go into that directory: the summary reads a record beside it."""
    sweep = tmp_path / "sweep"
    held = sweep / "0_k=1"
    (held / ".hydra").mkdir(parents=True)
    (held / ".hydra" / "config.yaml").write_text("theirs: 1\n")
    (held / "train.log").write_text("their log\n")
    lock = rundir.Lock(held).acquire()
    before = {p: p.read_bytes() for p in held.rglob("*") if p.is_file()}
    try:
        proc = run_cli(["-m", *RING, "steps=1", "k=1,2", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
        after = {p: p.read_bytes() for p in held.rglob("*") if p.is_file()}
    finally:
        lock.release()
    assert after == before, sorted(set(after) - set(before))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    rows = {r["job"]: r for r in csv.DictReader((sweep / "summary.csv").open())}
    assert rows["0"]["status"] == "invalid" and "in use by another gan-train" in rows["0"]["error"]
    assert rows["1"]["status"] == "ok" and rows["0"]["k"] == "1"


@pytest.mark.slow
def test_a_sweep_writes_nothing_into_a_job_directory_that_holds_another_run(tmp_path):
    """hydra.sweep.subdir=${seed} with k=1,2 gave two jobs one directory: the second job's .hydra/ replaced the
    first's (the summary then showed the first job's figures under the second's settings) and the sweep exited 0. A
    job whose directory holds another run (an earlier job's; another sweep's) writes nothing there and is recorded
    beside it; the same sweep run again keeps each job's finished run as the job's own."""
    sweep = tmp_path / "sweep"
    command = ["-m", *RING, "steps=1", "k=1,2", f"hydra.sweep.dir={sweep}"]
    proc = run_cli([*command, "hydra.sweep.subdir=run_${seed}"], cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    rows = {r["job"]: r for r in csv.DictReader((sweep / "summary.csv").open())}
    assert rows["0"]["status"] == "ok" and rows["0"]["k"] == "1" and rows["0"]["d_updates"] == "1"
    assert rows["1"]["status"] == "invalid" and rows["1"]["k"] == "2" and "already holds a run" in rows["1"]["error"]
    assert "k=1" in (sweep / "run_0" / ".hydra" / "overrides.yaml").read_text()
    assert sorted(p.name for p in (sweep / "run_0" / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml",
                                                                                "overrides.yaml"]
    again = tmp_path / "again"
    assert run_cli(["-m", *RING, "steps=1", "k=1,2", f"hydra.sweep.dir={again}"], cwd=tmp_path).returncode == 0
    before = {p: p.read_bytes() for p in again.rglob("*") if p.is_file() and p.parent != again}
    # the same sweep run again: each job's own run, finished, is kept and counted as finished; nothing runs
    proc = run_cli(["-m", *RING, "steps=1", "k=1,2", f"hydra.sweep.dir={again}"], cwd=tmp_path)
    assert proc.returncode == 0 and "already holds a run" not in proc.stderr, proc.stderr
    assert f"gan-train: job 0 finished before in {again / '0_k=1'}: kept, not run again" in proc.stdout
    assert "sweep of 2 jobs (2 finished before this command)" in proc.stdout
    rows = list(csv.DictReader((again / "summary.csv").open()))
    assert sorted((r["job"], r["status"]) for r in rows) == [("0", "ok (finished before)"),
                                                            ("1", "ok (finished before)")]
    assert {p: p.read_bytes() for p in again.rglob("*") if p.is_file() and p.parent != again} == before
    # a different sweep into it (here: another steps) is refused each job's directory, which holds another run
    proc = run_cli(["-m", *RING, "steps=2", "k=1,2", f"hydra.sweep.dir={again}"], cwd=tmp_path)
    assert proc.returncode == 1 and "already holds a run" in proc.stderr
    # a job's directory is not a hydra.run.dir the user chose: the sweep's directory is what to change
    assert f"the job directory {again / '0_k=1'} already holds a run (" in proc.stderr
    assert "choose another hydra.sweep.dir, or continue that run alone with gan-train resume=" in proc.stderr
    assert "hydra.run.dir" not in proc.stderr
    # the summary counts this sweep's two jobs, and shows the runs in their directories as earlier runs
    assert "2 of the 2 jobs of the sweep did not finish" in proc.stderr
    assert "sweep of 2 jobs and 2 earlier runs in their directories" in proc.stdout
    rows = list(csv.DictReader((again / "summary.csv").open()))
    assert sorted((r["job"], r["status"]) for r in rows) == [
        ("0", "invalid"), ("0", "ok (earlier run)"), ("1", "invalid"), ("1", "ok (earlier run)")]
    assert {p: p.read_bytes() for p in again.rglob("*") if p.is_file() and p.parent != again} == before


@pytest.mark.slow
def test_resuming_in_place_with_the_run_directory_named_keeps_its_first_records(tmp_path):
    """resume=RUN with hydra.run.dir=RUN given too: this attempt's .hydra/ beside the first (as resume=RUN alone
    writes it), never over it."""
    run = tmp_path / "run"
    assert run_cli([*RING, "steps=2", f"hydra.run.dir={run}"], cwd=tmp_path).returncode == 0
    first = {p.name: p.read_bytes() for p in (run / ".hydra").glob("*.yaml")}
    proc = run_cli([f"resume={run}", "steps=4", f"hydra.run.dir={run}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert {p.name: p.read_bytes() for p in (run / ".hydra").glob("*.yaml")} == first
    again = list((run / ".hydra").glob("resume-*/config.yaml"))
    assert len(again) == 1 and "steps: 4" in again[0].read_text()


@pytest.mark.slow
def test_a_resumed_run_records_what_it_continues(tmp_path):
    """A resumed run's records (train.log's description, .hydra/resume-*/config.yaml, its HPARAMS session) used to
    describe the command line's composition (dataset=digits for a plain resume=, grid for experiment=grid);
    they describe the checkpoint's run, and a group choice that would change it is refused, naming the key."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    run = tmp_path / "run"
    assert run_cli([*RING, "steps=2", f"hydra.run.dir={run}"], cwd=tmp_path).returncode == 0
    for preset, key in (("grid", "dataset=grid"), ("ring", "arch=pacgan")):
        line = one_error_line(run_cli([f"resume={run}", "steps=4", f"experiment={preset}"], cwd=tmp_path))
        assert f"{key} (set by experiment={preset}) differs from the checkpoint's" in line
    proc = run_cli([f"resume={run}", "steps=4", "eval.theory_samples=2000", "eval.mode_samples=500"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    described = [ln for ln in (run / "train.log").read_text().splitlines() if "| run dir" in ln]
    assert len(described) == 2 and all("dataset=ring arch=mlp" in ln for ln in described)
    (again,) = run.glob(".hydra/resume-*/config.yaml")
    assert "name: ring" in again.read_text().split("arch:")[0]
    newest = max(run.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime_ns)
    acc = EventAccumulator(str(newest))
    acc.Reload()
    start = HParamsPluginData.FromString(acc.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["dataset"].string_value == "ring"
    assert start.session_start_info.hparams["steps"].number_value == 4


@pytest.mark.slow
def test_a_stop_mark_left_by_a_killed_sweep_does_not_skip_the_next_sweeps_jobs(tmp_path):
    """A sweep stopped by Ctrl-C marks its directory while its jobs checkpoint (jobs not begun skip); a sweep killed
    then leaves the mark behind, and the next sweep into that directory runs its jobs anyway."""
    from gan_cli.cli import sweep as sweeps

    swept = tmp_path / "sweep"
    swept.mkdir()
    (swept / sweeps.STOPPED).touch()
    proc = run_cli(["-m", *RING, "steps=1", "k=1,2", f"hydra.sweep.dir={swept}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["status"] for r in csv.DictReader((swept / "summary.csv").open())] == ["ok", "ok"]
