"""The real command line: tags in the event files, run-directory files, multirun, bad input, the wheel."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from gan_cli.cli.checks import options_first
from gan_cli.cli.train import main
from gan_cli.config import UserError

from .conftest import QUICK_EVAL, REPO, events, run_cli, start_cli

SCALARS = {"game/loss_D", "game/loss_G", "game/D_real", "spread/D_real_std", "game/D_fake", "spread/D_fake_std",
           "grad/G", "grad/D", "perf/steps_per_s", "perf/rss_mb"}


def test_cli_run_writes_tags_metrics_and_checkpoint(tmp_path):
    run = tmp_path / "run"
    proc = run_cli(["steps=6", "log_every=2", "sample_every=3", "ckpt_every=3", "batch_size=16", *QUICK_EVAL,
                    f"hydra.run.dir={run}"], fresh=True)  # the installed console script, from its first line
    assert proc.returncode == 0, proc.stderr
    tags = events(run).Tags()
    assert SCALARS <= set(tags["scalars"])
    assert {"spread/D_real", "spread/D_fake"} <= set(tags["histograms"])
    assert "game/samples" in tags["images"]
    assert {"eval/parzen_ll", "eval/fid", "eval/kid", "eval/precision", "eval/recall"} <= set(tags["scalars"])
    assert [e.step for e in events(run).Scalars("game/loss_D")] == [2, 4, 6]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 6 and metrics["d_updates"] == 6 and metrics["g_updates"] == 6
    assert metrics["perf/steps_per_s"] > 0 and 0 < metrics["game/D_real"] < 1
    assert 100 < metrics["perf/rss_mb"] < 64000  # torch alone takes a few hundred MB
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 6
    assert (run / ".hydra" / "config.yaml").exists()
    log = (run / "train.log").read_text()
    assert "step 6/6" in log and "\x1b[" not in log  # plain text, no escape codes
    # hparams land in the same run directory: no stray sub-folders
    assert sorted(p.name for p in run.iterdir() if p.is_dir()) == [".hydra", "checkpoints"]
    assert events(run).PluginTagToContent("hparams")
    assert f"tensorboard --logdir {run}" in proc.stdout


@pytest.mark.slow
def test_toy_run_logs_a_figure_and_python_m_works(tmp_path):
    run = tmp_path / "ring"
    proc = run_cli(["dataset=ring", "steps=4", "log_every=2", "sample_every=4", *QUICK_EVAL, f"hydra.run.dir={run}"],
                   module=True)
    assert proc.returncode == 0, proc.stderr
    assert "game/samples" in events(run).Tags()["images"]


@pytest.mark.slow
def test_multirun_two_by_two(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(["-m", "loss=minimax,nonsaturating", "k=1,2", "steps=3", "log_every=3", "batch_size=8", *QUICK_EVAL,
                    f"hydra.sweep.dir={sweep}"])
    assert proc.returncode == 0, proc.stderr
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    # one run per job, named by what varies in the sweep (the shared settings would only make names long)
    assert jobs == ["0_k=1,loss=minimax", "1_k=2,loss=minimax", "2_k=1,loss=nonsaturating", "3_k=2,loss=nonsaturating"]
    for job in jobs:
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["d_updates"] == 3 * int(job.split("k=")[1][0])
        assert "game/loss_D" in events(sweep / job).Tags()["scalars"]


@pytest.mark.slow
def test_resume_from_the_command_line(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert run_cli(["steps=4", "log_every=2", *QUICK_EVAL, f"hydra.run.dir={first}"]).returncode == 0
    before = (first / "checkpoints" / "last.pt").read_bytes()
    proc = run_cli([f"resume={first}", "steps=8", "log_every=2", f"hydra.run.dir={second}"])
    assert proc.returncode == 0, proc.stderr
    assert torch.load(second / "checkpoints" / "last.pt", weights_only=True)["step"] == 8
    assert [e.step for e in events(second).Scalars("game/loss_D")] == [6, 8]
    assert (first / "checkpoints" / "last.pt").read_bytes() == before  # the source is untouched


BAD = [
    (["k=0"], "k=0"), (["k=-1"], "k=-1"), (["k=abc"], "k=abc"), (["batch_size=0"], "batch_size=0"),
    (["steps=-5"], "steps=-5"), (["optimizer.lr=-1"], "optimizer.lr=-1"),
    (["optimizer.momentum=1.5"], "optimizer.momentum=1.5"), (["loss=nonsense"], "loss=nonsense"),
    (["dataset=nonsense"], "dataset=nonsense"),
    (["dataset=mnist", "dataset.root=/nonexistent/where"], "/nonexistent/where"),
    (["resume=/nonexistent/last.pt"], "resume=/nonexistent/last.pt"), (["arch=dcgan", "dataset=ring"], "arch=dcgan"),
    (["-m", "k=0,-1"], "all 2 combinations of this sweep are invalid"),
    (["-m", "loss=minimax,nonsense"], "loss=nonsense"),
    (["-m", "k=1,abc"], "k=abc"), (["nosuchkey=1"], "nosuchkey=1"),
    (["-m", "hparams_search=nonsense"], "hparams_search=nonsense"),
    (["dataset=ring", "optimized_metric=eval/fid"], "optimized_metric=eval/fid is not measured on dataset=ring"),
    (["+los=minimax"], "did you mean loss=minimax"), (["los=minimax"], "did you mean loss=minimax"),
    (["lr=0.01"], "did you mean optimizer.lr=0.01"), (["+k=3"], "set it with k=3"), (["--steps", "10"], "use steps=10"),
    (["--steps=10"], "use steps=10"), (["--nonsense"], "--nonsense is not an option"),
    (["-m", "updates=simultaneous", "k=5,2"], "all 2 combinations of this sweep are invalid: "
                                              "[k=5] k=5 is not allowed"),
    # seeds checked once, each combination named, one reason for all said once
    (["-m", "k=0", "seed=1,2"], "all 2 combinations of this sweep are invalid: [seed=1], [seed=2] k=0 is not "),
    (["-m", "seed=-1,4294967296"], "all 2 combinations of this sweep are invalid"),
    (["-m", "seed=1,007"], "seed=007 is not allowed"),  # a string to Hydra: never taken for seed 7
    # a sweep of no jobs (it ran nothing and exited 0)
    (["-m", "seed=range(0)"], "seed=range(0) gives no values, so the sweep would run no job"),
    (["-m", "hydra/launcher=population", "seed=range(3,1)"], "seed=range(3,1) gives no values"),
    (["-m", "seed=glob(*)"], "seed=glob(*) gives no values, so the sweep would run no job; the choices of seed: none"),
    (["-m", "loss=glob(nomatch*)"], "the choices of loss: hinge, least_squares, maximum_likelihood, minimax"),
    (["-m", "loss=glob(min*)", "k=0"], "[loss=minimax] k=0 is not allowed"),  # a glob's choices are checked too
    (["optimized_metric=${no.such.key}"], "optimized_metric cannot be read"),  # read before the schema's check
    (["eval.best_by=${no.such.key}"], "eval.best_by cannot be read"),
    (["-m", "k=interval(1,5)"], "k=interval(1,5): interval(...) is a range a search draws from"),  # basic sweeper
    # a search's interval that Optuna cannot draw from (a traceback at its first trial)
    (["-m", "hparams_search=ring_optuna", "k=interval(5,1)"], "k=interval(5,1) is not an interval a search can draw"),
    (["-m", "hparams_search=ring_optuna", "optimizer.lr=tag(log,interval(0,1))"], "above 0 for tag(log, ...)"),
    # the same job twice (a summary over seeds would count it twice)
    (["-m", "seed=0,0"], "seed=0,0 gives seed=0 more than once"),
    (["-m", "loss=minimax,nonsaturating,minimax", "k=1,2"], "gives loss=minimax more than once"),
    # Hydra's own options: argparse printed its usage line first (two lines); -p took the next setting as its value
    (["--cfg", "bogus"], "argument --cfg/-c: invalid choice: 'bogus' (choose from 'job', 'hydra', 'all')"),
    (["-p", "loss=minimax", "steps=1"], "--package loss=minimax: --package (-p) names the part of the config"),
    (["--package", "optimizer", "steps=1"], "it takes that part's name and needs --cfg"),
    (["--cfg", "job", "--package", "nope"], "--package nope: the config has no such part; its parts: "),
    (["--cfg", "hydra", "-p", "nope"], "--package nope: the config has no such part; its parts: hydra (a part"),
    (["--cfg", "job", "loss=nope"], "loss=nope is not a choice of 'loss'; choose one of: hinge, "),  # as a run says
    # Hydra's own rules for its options (a ValueError's traceback)
    (["-m", "--cfg", "job"], "--multirun and --cfg given: give one of --run, --multirun, --cfg, --info and --shell"),
    (["-r", "-m", "seed=0"], "--run and --multirun given"), (["--info", "plugins", "-m"], "--multirun and --info"),
    (["--resolve", "steps=1"], "--resolve resolves the config that --cfg or --help prints"),
    (["--experimental-rerun", "nope.pickle"], "--experimental-rerun nope.pickle: no such file"),
    # beside an option that prints, the same checks as a run's (a ValueError's traceback; argparse's usage)
    (["=null", "--cfg", "all"], "=null: no setting named before '='"), (["--cfg", "job", "~k"], "settings cannot be"),
    (["--info", "plugins", "--nonsense"], "--nonsense is not an option of gan-train"),
    # Hydra's own groups and settings: with --cfg job they were not read at all; =null was a ValueError's traceback
    (["--cfg", "job", "hydra/launcher=nope"], "hydra/launcher=nope is not a choice of 'hydra/launcher'; choose one of: "
                                              "basic, joblib, population, slurm"),
    (["hydra/job_logging=null", "steps=1"], "hydra/job_logging=null is not a choice of 'hydra/job_logging'"),
    (["--cfg", "job", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs must be an integer other than 0"),
    # ~ and + on Hydra's side: a typo added to Hydra's schema ran as if not given (+hydra.job.chdr=true); a removed
    # group or setting ended in Hydra's words ("Missing mandatory value: hydra.job_logging") or ran without it
    # a recipe that is not a mapping of settings: a ValueError's traceback; "no such setting; did you mean" itself
    (["loss.recipe=${optimizer.lr}", "steps=1"], "loss.recipe=0.1 is not allowed: loss.recipe must be a mapping of "
                                                 "settings to values, e.g. {optimizer: adam, optimizer.lr: 0.0002}"),
    (["loss.recipe={a:1}", "steps=1"], "loss.recipe={a:1}: loss.recipe has no entry 'a' to set"),
    (["dataset.recipe=${seed}", "steps=1"], "dataset.recipe=0 is not allowed: dataset.recipe must be a mapping of "),
    # a value of the wrong type said what OmegaConf could not convert, not what the setting takes
    (["loss.recipe=[1]", "steps=1"], "loss.recipe=[1] is not allowed: loss.recipe must be a mapping of settings to "),
    (["dataset.recipe=1e12", "steps=1"], "dataset.recipe=1e12 is not allowed: dataset.recipe must be a mapping of "),
    (["optimizer.beta2=[1,2]", "steps=1"], "optimizer.beta2=[1,2] is not allowed: optimizer.beta2 must be a finite "
                                           "number in [0, 1)"),
    (["optimizer.d_lr=../..", "steps=1"], "optimizer.d_lr=../.. is not allowed: optimizer.d_lr must be a finite number "
                                          "in (0, 10] (or null: optimizer.lr)"),
    (["dataset.means={a:1}", "steps=1"], "dataset.means={a:1} is not allowed: dataset.means must be a list of finite "),
    (["-cn", "nope", "=0"], "=0: no setting named before '='"),  # another primary config: a ValueError's traceback
    (["-cn", "config", "hydra/job_logging=null", "steps=1"], "hydra/job_logging=null: a choice of 'hydra/job_logging' "
                                                             "is a name"),
    (["~nope", "steps=1"], "~nope: no such setting"), (["~hydrax", "steps=1"], "~hydrax: no such setting"),
    (["+hydra_x=1", "steps=1"], "+hydra_x=1: no such setting"),  # it ran, as if not given
    (["~hydra/job_logging", "steps=1"], "~hydra/job_logging: Hydra's groups cannot be removed; choose one with "
                                        "hydra/job_logging=VALUE, one of: default, disabled, "),
    (["-m", "~hydra/sweeper", "seed=0,1", "steps=1"], "~hydra/sweeper: Hydra's groups cannot be removed"),
    (["~hydra/launcher=basic", "steps=1"], "~hydra/launcher=basic: Hydra's groups cannot be removed"),
    (["+hydra/launcher=joblib", "steps=1"], "+hydra/launcher=joblib: hydra/launcher has a choice already; choose "
                                            "with hydra/launcher=joblib"),
    (["~hydra.run.dir", "steps=1"], "~hydra.run.dir: settings cannot be removed; set hydra.run.dir with "
                                    "hydra.run.dir=VALUE"),
    (["~hydra", "steps=1"], "~hydra: settings cannot be removed"),
    (["hydra=1_000", "steps=1"], "hydra=1_000: hydra holds Hydra's settings; set them one by one"),
    (["+hydra.job.chdr=true", "steps=1"], "+hydra.job.chdr=true: no such setting of Hydra's; hydra.job has: name, "),
    (["+hydra.nope.x=1", "steps=1"], "+hydra.nope.x=1: no such setting of Hydra's; hydra has: "),
    (["+hydra.run.dir=somewhere", "steps=1"], "+hydra.run.dir=somewhere: hydra.run.dir exists; set it with "
                                              "hydra.run.dir=somewhere"),
    (["-m", "hydra/launcher=joblib", "+hydra.launcher.n_job=2", "seed=0,1", "steps=1"],
     "+hydra.launcher.n_job=2: no such setting of Hydra's; hydra.launcher has: "),
    # Hydra's settings that Hydra reads only as a job starts: a traceback (hydra.verbose=1: an AssertionError; a level
    # that logging does not know: a ValueError), or a line that named no setting (an interpolation that fails)
    (["hydra.verbose=1", "steps=1"], "hydra.verbose=1 is not allowed: hydra.verbose must be true, false, a logger's "),
    (["hydra.verbose=${seed}", "steps=1"], "hydra.verbose=${seed} is not allowed: hydra.verbose must be "),
    (["hydra.job_logging.root.level=DEBG", "steps=1"],
     "hydra.job_logging.root.level=DEBG: Hydra cannot use it as a job starts: Unable to configure root logger: Unknown "
     "level: 'DEBG'"),
    (["hydra.hydra_logging.root.level=NOPE", "steps=1"], "hydra.hydra_logging.root.level=NOPE: Hydra cannot use it"),
    (["hydra.job_logging.version=2", "steps=1"], "hydra.job_logging.version=2: Hydra cannot use it as a job starts: "
                                                 "Unsupported version: 2"),
    (["+hydra.callbacks.mine=1", "steps=1"], "+hydra.callbacks.mine=1: Hydra cannot use it as a job starts: Cannot "
                                             "instantiate config of type int"),
    (["hydra.output_subdir=${oc.env:GAN_CLI_NO_SUCH_VAR}", "steps=1"],
     "hydra.output_subdir=${oc.env:GAN_CLI_NO_SUCH_VAR}: hydra.output_subdir cannot be read: "),
    (["+hydra.job.env_set.X=${seed}", "steps=1"], "+hydra.job.env_set.X=${seed}: hydra.job.env_set.X cannot be read "
                                                  "(Hydra reads it from its own settings alone)"),
    (["-m", "hydra.job_logging.root.level=NOPE", "seed=0,1", "steps=1"], "hydra.job_logging.root.level=NOPE: Hydra "
                                                                         "cannot use it as a job starts"),
    # where a sweep's jobs go: outside the sweep directory, all in one, or with their .hydra/ elsewhere, the summary
    # listed none of them (or the first job's figures under the second's settings)
    (["-m", "seed=0,1", "steps=1", "hydra.sweep.subdir=../out"], "hydra.sweep.subdir=../out is not allowed: "
                                                                 "hydra.sweep.subdir must name each job's own "),
    (["-m", "seed=0,1", "steps=1", "hydra.sweep.subdir=same"], "hydra.sweep.subdir=same is not allowed"),
    # what Hydra's grammar cannot read is named (it said "cannot read the command line: no viable alternative ...")
    (["-m", "dataset=interval(,hinge)", "steps=1"], "dataset=interval(,hinge): no viable alternative at input"),
    (["-m", "seed=0,1", "steps=1", "hydra.output_subdir=null"], "hydra.output_subdir=null: a sweep keeps each job's "
                                                                "Hydra records in .hydra/"),
]


@pytest.mark.parametrize("args,named", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_before_anything_runs(tmp_path, monkeypatch, capsys, args, named):
    run = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["gan-train", *args, f"hydra.run.dir={run}"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code != 0
    assert len(err.splitlines()) == 1 and err.startswith("gan-train: error:") and named in err
    assert not run.exists()


def test_allowed_values_are_named():
    # the message says what is allowed, not only what was wrong
    proc = run_cli(["loss=nonsense"])
    assert "minimax" in proc.stderr and "wasserstein_gp" in proc.stderr
    proc = run_cli(["dataset=mnist", "dataset.root=/nonexistent"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "MNIST/raw/train-images-idx3-ubyte" in proc.stderr and "dataset.download=true" in proc.stderr


def test_corrupt_checkpoint_and_missing_gpu(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"not a checkpoint")
    proc = run_cli([f"resume={bad}"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and f"resume={bad}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    if not torch.cuda.is_available():
        proc = run_cli(["device=cuda"])
        assert proc.returncode == 2 and "device=cuda" in proc.stderr and "device=cpu" in proc.stderr


@pytest.mark.slow
def test_installed_wheel_runs_from_another_directory(tmp_path):
    """A non-editable install (wheel into a plain folder) composes its packaged configs from anywhere."""
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(REPO)], check=True)
    wheel = next(wheels.glob("gan_cli-*.whl"))
    subprocess.run(pip + ["install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    assert (site / "gan_cli" / "conf" / "config.yaml").exists()
    run = tmp_path / "run"
    code = ("import gan_cli, sys; assert gan_cli.__file__.startswith(sys.argv[1]), gan_cli.__file__; "
            "from gan_cli.cli.train import main; sys.argv = ['gan-train'] + sys.argv[2:]; main()")
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "GAN_CLI_CACHE": os.environ["GAN_CLI_CACHE"]}
    proc = subprocess.run([sys.executable, "-c", code, str(site), "steps=2", "log_every=1", *QUICK_EVAL,
                           f"hydra.run.dir={run}"], cwd="/", env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run / "metrics.json").read_text())["steps"] == 2


@pytest.mark.slow
def test_resume_takes_the_run_directories_the_tool_names_and_continues_in_place(tmp_path):
    proc = run_cli(["loss=minimax", "steps=4", "log_every=2", *QUICK_EVAL], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run,) = (tmp_path / "outputs" / "runs").iterdir()
    assert run.name.endswith("loss=minimax,steps=4")  # '=' and ',' in the name, as the tool writes it
    first_config = (run / ".hydra" / "config.yaml").read_text()
    proc = run_cli([f"resume=outputs/runs/{run.name}", "steps=8"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in (tmp_path / "outputs" / "runs").iterdir()] == [run.name]  # one run, one directory
    assert [e.step for e in events(run).Scalars("game/loss_D")] == [2, 4, 6, 8]
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 8
    assert (run / ".hydra" / "config.yaml").read_text() == first_config  # the first attempt's files are kept
    assert list((run / ".hydra").glob("resume-*/overrides.yaml"))
    # a sweep's job directory ('0_k=1,...') works the same way
    proc = run_cli(["-m", "k=1,2", "steps=2", "log_every=1", *QUICK_EVAL, "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    job = next(p for p in (tmp_path / "sweep").iterdir() if p.name.startswith("0_"))
    proc = run_cli([f"resume=sweep/{job.name}", "steps=3"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((job / "metrics.json").read_text())["steps"] == 3


@pytest.mark.slow
def test_superseded_events_are_hidden_when_a_killed_run_resumes_in_place(tmp_path):
    """A run killed after its checkpoint at 4 had logged up to 6: resuming from 4 replaces 5 and 6."""
    run = tmp_path / "run"
    assert run_cli(["steps=6", "log_every=1", "ckpt_every=4", *QUICK_EVAL, f"hydra.run.dir={run}"]).returncode == 0
    ckpt = run / "checkpoints" / "last.pt"
    state = torch.load(ckpt, weights_only=True)
    four = torch.load(ckpt, weights_only=True)
    four["step"] = 4  # stand in for the checkpoint a kill -9 after iteration 6 would have left
    torch.save(four, ckpt)
    proc = run_cli([f"resume={run}", "steps=8", "log_every=1"])
    assert proc.returncode == 0 and state["step"] == 6
    steps = [e.step for e in events(run).Scalars("game/loss_D")]
    assert steps == [1, 2, 3, 4, 5, 6, 7, 8], steps  # 5 and 6 once each: the first attempt's are purged


@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_checkpoints_and_says_how_to_continue(tmp_path, signum, code):
    run = tmp_path / "run"
    proc = start_cli(["steps=1000000", "log_every=50", *QUICK_EVAL, f"hydra.run.dir={run}"])
    deadline = time.time() + 120
    while not ((run / "train.log").exists() and "step 100/" in (run / "train.log").read_text()):
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    metrics = json.loads((run / "metrics.json").read_text())
    it = metrics["steps"]
    assert err.strip() == (f"gan-train: interrupted ({signal.Signals(signum).name}) at iteration {it}; "
                           f"continue with: gan-train resume={run}")
    assert metrics["status"] == "interrupted" and it >= 100
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == it
    proc = run_cli([f"resume={run}", f"steps={it + 3}", "log_every=1"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run / "metrics.json").read_text())["status"] == "ok"


def test_divergence_is_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    proc = run_cli(["dataset=mixture1d", "loss=least_squares", "optimizer=sgd", "optimizer.lr=10", "steps=300",
                    "log_every=50", "ckpt_every=1", f"hydra.run.dir={run}"])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "training diverged at iteration" in proc.stderr
    assert f"the last good checkpoint is {run / 'checkpoints' / 'last.pt'}" in proc.stderr
    assert json.loads((run / "metrics.json").read_text())["status"] == "diverged"


def test_a_loss_recipe_applies_only_where_nothing_was_chosen(make_cfg):
    opt = lambda cfg: (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.beta1, cfg.optimizer.beta2, cfg.k)  # noqa: E731
    assert opt(make_cfg("loss=wasserstein_gp")) == ("adam", 1e-4, 0.0, 0.9, 5)  # Gulrajani et al. 2017
    assert opt(make_cfg("loss=wasserstein_gp", "optimizer.lr=0.001", "k=1")) == ("adam", 0.001, 0.0, 0.9, 1)
    # another optimizer: its own defaults
    assert opt(make_cfg("loss=wasserstein_gp", "optimizer=sgd"))[:2] == ("sgd", 0.1)
    dirac = make_cfg("experiment=dirac", "loss=wasserstein_gp", "updates=simultaneous")  # the preset's choices stand
    assert (dirac.optimizer.name, dirac.optimizer.momentum, dirac.k) == ("sgd", 0.0, 1)
    assert opt(make_cfg()) == ("sgd", 0.1, 0.5, 0.999, 1)  # the default loss: the paper's SGD with momentum
    assert make_cfg("loss=wasserstein_gp").loss.recipe["k"] == 5  # the recipe stays in the config, for the record


def test_a_dataset_recipe_applies_after_the_loss_recipe_and_only_where_nothing_was_chosen(make_cfg):
    """dataset=grid (coordinates up to 4) trains SGD at lr 0.05 unless the command line, the preset or the loss's
    recipe chose the optimizer or its rate."""
    opt = lambda cfg: (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.momentum)  # noqa: E731
    assert opt(make_cfg("dataset=grid")) == ("sgd", 0.05, 0.5)
    assert opt(make_cfg("dataset=grid", "optimizer.momentum=0.9")) == ("sgd", 0.05, 0.9)
    assert opt(make_cfg("dataset=grid", "optimizer.lr=0.1")) == ("sgd", 0.1, 0.5)  # the command line wins
    assert opt(make_cfg("dataset=grid", "loss=minimax")) == ("sgd", 0.02, 0.5)  # so does the loss's recipe
    assert opt(make_cfg("dataset=grid", "loss=wasserstein_gp"))[:2] == ("adam", 1e-4)
    assert opt(make_cfg("dataset=grid", "optimizer=adam"))[:2] == ("adam", make_cfg("optimizer=adam").optimizer.lr)
    assert opt(make_cfg("experiment=grid"))[:2] == ("adam", 1e-4)  # and the preset
    assert opt(make_cfg("dataset=ring")) == ("sgd", 0.1, 0.5)  # a set without a recipe: the defaults


def test_the_recipe_is_in_the_saved_config_and_the_log(tmp_path):
    run = tmp_path / "run"
    proc = run_cli(["loss=wasserstein_gp", "steps=2", "log_every=1", *QUICK_EVAL, f"hydra.run.dir={run}"])
    assert proc.returncode == 0, proc.stderr
    saved = (run / ".hydra" / "config.yaml").read_text()
    assert "name: adam" in saved and "lr: 0.0001" in saved
    assert ("loss=wasserstein_gp trains with its recipe: optimizer=adam optimizer.lr=0.0001"
            in (run / "train.log").read_text())
    grid = tmp_path / "grid"
    proc = run_cli(["dataset=grid", "steps=2", "log_every=1", *QUICK_EVAL, f"hydra.run.dir={grid}"])
    assert proc.returncode == 0, proc.stderr
    assert ("dataset=grid trains with its recipe: optimizer=sgd optimizer.lr=0.05 (set any of them to choose "
            "otherwise)" in (grid / "train.log").read_text())
    assert "lr: 0.05" in (grid / ".hydra" / "config.yaml").read_text()
    assert json.loads((run / "metrics.json").read_text())["d_updates"] == 10  # k = 5


def test_cfg_job_shows_the_config_that_will_run():
    proc = run_cli(["--cfg", "job", "loss=wasserstein_gp", "steps=7"])
    assert proc.returncode == 0, proc.stderr
    assert "name: adam" in proc.stdout and "k: 5" in proc.stdout and "steps: 7" in proc.stdout
    assert "hydra:" not in proc.stdout
    proc = run_cli(["--cfg", "job", "los=x"])
    assert proc.returncode == 2 and "did you mean loss=x" in proc.stderr
    # a part of it, the recipes applied too (wasserstein_gp's: Adam)
    proc = run_cli(["--cfg", "job", "-p", "optimizer", "loss=wasserstein_gp"])
    assert proc.returncode == 0 and proc.stdout.startswith("# @package optimizer\nname: adam\n"), proc.stderr
    assert "\nsteps:" not in proc.stdout and "\nk:" not in proc.stdout and "beta1: 0.0" in proc.stdout
    proc = run_cli(["--cfg=job", "--package=optimizer.name", "--resolve"])
    assert (proc.returncode, proc.stdout) == (0, "sgd\n"), proc.stderr
    # --cfg all: Hydra's node and the config as it will run (Hydra printed it without the recipe: sgd, 0.1)
    proc = run_cli(["--cfg", "all", "loss=wasserstein_gp", "--resolve"])
    assert proc.returncode == 0 and proc.stdout.startswith("hydra:\n  run:\n"), proc.stderr
    assert "\noptimizer:\n  name: adam\n" in proc.stdout and "\nk: 5\n" in proc.stdout
    proc = run_cli(["--cfg", "all", "-p", "nope"])
    assert proc.returncode == 2 and "--package nope: the config has no such part; its parts: hydra, " in proc.stderr


@pytest.mark.slow
def test_settings_may_come_before_and_after_the_options(tmp_path):
    """argparse reads the settings as one run of arguments: `gan-train steps=1 -m seed=0,1` ended in its usage."""
    assert options_first(["steps=1", "-m", "seed=0,1", "-p", "k", "--cfg=job", "--info", "x=1", "--steps", "10"]) == [
        "-m", "-p", "k", "--cfg=job", "--info", "steps=1", "seed=0,1", "x=1", "--steps", "10"]
    assert options_first(["--info", "plugins", "k=1", "-cn", "config"]) == ["--info", "plugins", "-cn", "config", "k=1"]
    proc = run_cli(["dataset=ring", "steps=1", "-m", "seed=0,1", *QUICK_EVAL, f"hydra.sweep.dir={tmp_path}/sweep"])
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "sweep").glob("*_seed=*")) == ["0_seed=0", "1_seed=1"]


def test_hydra_mode_on_the_command_line_still_sweeps(tmp_path):
    # gan-train skips Hydra's hydra.mode probe only where the command line does not set it
    proc = run_cli(["hydra.mode=MULTIRUN", "dataset=ring", "steps=1", *QUICK_EVAL, f"hydra.sweep.dir={tmp_path}/sweep"])
    assert proc.returncode == 0, proc.stderr
    (job,) = (tmp_path / "sweep").glob("0_*")  # the sweep's job 0, named by its settings
    assert json.loads((job / "metrics.json").read_text())["status"] == "ok"


def test_a_sweep_over_seeds_is_composed_once_per_combination_of_the_rest(monkeypatch):
    """precheck composes every combination of a sweep, but a seed in its range changes nothing it checks:
    seed='range(8)' k=1,2 is composed twice, not 16 times; a resumed run's seed is checked against its checkpoint,
    so there each combination is composed."""
    from gan_cli.cli import checks
    from gan_cli.config import config_dir

    composed = []
    real = checks.compose
    monkeypatch.setattr(checks, "compose", lambda d, overrides: composed.append(list(overrides)) or real(d, overrides))
    checks.precheck(["-m", "seed=range(8)", "k=1,2", "dataset=ring"], config_dir())
    assert sorted(o for c in composed for o in c if o.startswith("k=")) == ["k=1", "k=2"]
    composed.clear()
    with pytest.raises(UserError, match="all 2 combinations"):
        checks.precheck(["-m", "seed=0,1", "resume=/nonexistent/last.pt"], config_dir())
    assert {o for c in composed for o in c if o.startswith("seed=")} == {"seed=0", "seed=1"}


def test_a_path_setting_is_the_text_given(tmp_path):
    """hydra.run.dir=1_000 named the run directory 1000 (Hydra reads 1_000 as a number); a path is what was typed."""
    proc = run_cli(["dataset=ring", "arch=mlp", "steps=1", *QUICK_EVAL, "hydra.run.dir=1_000"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "1_000" / "metrics.json").is_file() and not (tmp_path / "1000").exists()


def test_an_entry_of_one_of_hydra_s_free_tables_may_be_added(tmp_path):
    """What ``+`` is for on Hydra's side: an entry of a table with no fixed keys (hydra.job.env_set) is added, and
    the job runs with it."""
    proc = run_cli(["dataset=ring", "arch=mlp", "steps=1", "+hydra.job.env_set.GAN_CLI_PROBE=7", *QUICK_EVAL,
                    f"hydra.run.dir={tmp_path / 'run'}"])
    assert proc.returncode == 0, proc.stderr
    assert "GAN_CLI_PROBE: '7'" in (tmp_path / "run" / ".hydra" / "hydra.yaml").read_text()


def test_work_tried_apart_changes_nothing_here_and_a_child_that_hangs_is_cut_short():
    """checks._apart: the child's changes stay in the child; one that does not answer in time is killed (the
    command goes on, and Hydra reports what it finds); one that fails unexpectedly answers nothing."""
    from gan_cli.cli import checks

    def change():
        os.environ["GAN_CLI_APART"] = "1"
        return "changed there"
    assert checks._apart(change) == "changed there" and "GAN_CLI_APART" not in os.environ
    start = time.perf_counter()
    assert checks._apart(lambda: time.sleep(60) or "late", timeout=0.5) == "" and time.perf_counter() - start < 30

    def fails():
        raise RuntimeError("unexpected")
    assert checks._apart(fails) == ""


def test_hydra_s_settings_read_as_a_job_starts_are_tried_apart_and_the_good_ones_run(tmp_path, monkeypatch):
    """Hydra's logging, verbosity, callbacks and interpolated settings given on the command line are tried before
    anything runs, in a child process (checks._hydra_reads): values Hydra can use pass, the trial leaves this
    process's logging, Hydra's state and the working directory as they were, and the run uses them."""
    import logging

    from hydra.core.hydra_config import HydraConfig

    from gan_cli.cli import checks
    from gan_cli.config import config_dir

    good = ["hydra.verbose=[gan_cli.test]", "hydra.job_logging.root.level=WARNING",
            "+hydra.job.env_set.GAN_CLI_PROBE=${hydra.job.name}", "hydra.output_subdir=${oc.env:GAN_CLI_NO_VAR,.hydra}",
            "+hydra.callbacks.again={_target_:gan_cli.runs.rundir.LockCallback}"]
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()

    def state():
        return root.level, list(root.handlers), logging.getLogger("gan_cli.test").level, HydraConfig.initialized()
    before = state()
    checks.precheck(["steps=1", *good], str(config_dir()))
    assert state() == before and list(tmp_path.iterdir()) == []
    proc = run_cli(["dataset=ring", "arch=mlp", "steps=1", *good, *QUICK_EVAL, f"hydra.run.dir={tmp_path / 'run'}"])
    assert proc.returncode == 0, proc.stderr
    saved = (tmp_path / "run" / ".hydra" / "hydra.yaml").read_text()
    assert "- gan_cli.test" in saved and "GAN_CLI_PROBE: ${hydra.job.name}" in saved
    assert "[INFO]" not in (tmp_path / "run" / "train.log").read_text()  # the root logger at WARNING
