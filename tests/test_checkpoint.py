"""Checkpoints: what they hold, the format check, where a run keeps them, resume's rules."""

import pytest
import torch

from gan_cli import data as datasets
from gan_cli.cli.train import new_state, train
from gan_cli.config import UserError
from gan_cli.game.updates import GAN
from gan_cli.runs import checkpoint

from .conftest import FAST


def test_resume_refuses_a_different_experiment(make_cfg, tmp_path):
    train(make_cfg(*FAST), tmp_path / "a")
    ckpt = str(tmp_path / "a" / "checkpoints" / "last.pt")
    with pytest.raises(UserError, match="loss=hinge differs"):
        train(make_cfg(f"resume={ckpt}", "loss=hinge"), tmp_path / "b", overrides=[f"resume={ckpt}", "loss=hinge"])


def test_a_run_never_overwrites_another_runs_checkpoint(make_cfg, tmp_path):
    train(make_cfg(*FAST), tmp_path)
    before = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    with pytest.raises(UserError, match="already holds a run"):
        train(make_cfg(*FAST, "seed=9"), tmp_path)
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == before


def test_checkpoint_holds_everything_and_loads_weights_only(make_cfg, tmp_path):
    train(make_cfg(*FAST), tmp_path)
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert {"G", "D", "opt_G", "opt_D", "step", "rng", "config", "fixed_noise"} <= state.keys()
    assert state["step"] == 4 and state["config"]["loss"]["name"] == "nonsaturating"


def test_checkpoint_of_other_networks_is_a_user_error(make_cfg, tmp_path):
    train(make_cfg(*FAST), tmp_path / "a")
    state = checkpoint.load(str(tmp_path / "a" / "checkpoints" / "last.pt"))
    cfg = make_cfg("device=cpu", "arch.g_hidden=8")
    gan = GAN(cfg, datasets.load(cfg.dataset, torch.device("cpu")), torch.device("cpu"))
    with pytest.raises(UserError, match="does not fit"):
        checkpoint.restore(state, new_state(cfg, gan), path="x.pt")



def test_save_and_restore_round_trip_everything(make_cfg, tmp_path):
    cfg = make_cfg("device=cpu", "arch.g_hidden=16", "arch.d_hidden=8", "optimizer=adam")
    data = datasets.load(cfg.dataset, torch.device("cpu"))
    gan = GAN(cfg, data, torch.device("cpu"))
    for _ in range(3):  # optimizer states that are not their initial ones
        gan.d_step(8)
        gan.g_step(8)
    state = new_state(cfg, gan)
    state.step, state.d_updates, state.g_updates, state.best_value = 3, 3, 3, 0.25
    checkpoint.save(tmp_path / "x.pt", state)
    expected_draw = torch.rand(5)  # the random stream right after the save
    fresh = new_state(cfg, GAN(cfg, data, torch.device("cpu")))
    checkpoint.restore(checkpoint.load(tmp_path / "x.pt"), fresh, path="x.pt")
    assert (fresh.step, fresh.d_updates, fresh.g_updates, fresh.best_value) == (3, 3, 3, 0.25)
    assert torch.equal(fresh.fixed_noise, state.fixed_noise) and torch.equal(torch.rand(5), expected_draw)
    for net in ("G", "D"):
        ours, theirs = getattr(state, net).state_dict(), getattr(fresh, net).state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    adam = fresh.opt_D.state_dict()["state"][0]
    assert torch.equal(adam["exp_avg"], state.opt_D.state_dict()["state"][0]["exp_avg"])
    assert not list(tmp_path.glob("*.tmp"))  # written through a temporary file, then renamed


def test_the_format_is_checked_on_load(make_cfg, tmp_path):
    train(make_cfg(*FAST), tmp_path)
    saved = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert saved["format"] == checkpoint.FORMAT
    saved["format"] = checkpoint.FORMAT + 1
    torch.save(saved, tmp_path / "future.pt")
    with pytest.raises(UserError, match=f"resume={tmp_path / 'future.pt'} has checkpoint format "
                                        f"{checkpoint.FORMAT + 1}, "
                                        f"newer than this gan-cli reads \\({checkpoint.FORMAT}\\)"):
        checkpoint.load(tmp_path / "future.pt")
    torch.save({"G": {}}, tmp_path / "partial.pt")
    with pytest.raises(UserError, match="is not a gan-cli checkpoint: it lacks D, config, opt_D, opt_G, rng, step"):
        checkpoint.load(tmp_path / "partial.pt", label="")


def test_find_is_where_resume_and_gan_eval_look(make_cfg, tmp_path):
    run = tmp_path / "run"
    train(make_cfg(*FAST, "eval_every=2", "dataset=ring"), run)  # ring: best.pt by eval/jsd
    assert checkpoint.find(str(run)) == run / "checkpoints" / "last.pt"
    assert checkpoint.find(str(run), best=True) == run / "checkpoints" / "best.pt"
    assert checkpoint.find(str(run / "checkpoints")) == run / "checkpoints" / "last.pt"
    assert checkpoint.find(str(run / "checkpoints" / "best.pt")) == run / "checkpoints" / "best.pt"
    with pytest.raises(UserError, match=f"^resume={tmp_path} holds no checkpoint"):
        checkpoint.find(str(tmp_path))
    with pytest.raises(UserError, match=f"^{tmp_path / 'nowhere'}: no such checkpoint file or run directory"):
        checkpoint.find(str(tmp_path / "nowhere"), label="")


@pytest.mark.parametrize("extra,d_updates", [(("k=3",), 12), (("updates=simultaneous",), 4)])
def test_counters_count_the_updates_made(make_cfg, tmp_path, extra, d_updates):
    metrics = train(make_cfg(*FAST, *extra), tmp_path)
    saved = checkpoint.load(tmp_path / "checkpoints" / "last.pt")
    assert (saved["step"], saved["d_updates"], saved["g_updates"]) == (4, d_updates, 4)
    assert (metrics["d_updates"], metrics["g_updates"]) == (d_updates, 4)


@pytest.mark.slow
def test_a_run_killed_before_its_first_last_pt_is_not_overwritten(tmp_path):
    """A run that wrote best.pt (eval_every below ckpt_every) and died before its first last.pt, or one with only
    its event history: the next gan-train into that directory is refused, and writes nothing there."""
    from .conftest import QUICK_EVAL, run_cli

    run = tmp_path / "run"
    first = run_cli(["dataset=ring", "steps=4", "eval_every=2", "ckpt_every=4", *QUICK_EVAL, f"hydra.run.dir={run}"])
    assert first.returncode == 0, first.stderr
    (run / "checkpoints" / "last.pt").unlink()  # as if killed between best.pt and last.pt
    (run / "metrics.json").unlink()
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    again = run_cli(["dataset=ring", "steps=4", "seed=3", *QUICK_EVAL, f"hydra.run.dir={run}"])
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert f"hydra.run.dir={run} already holds a run (checkpoints/best.pt); pass resume=" in again.stderr
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing written there
    for p in (run / "checkpoints").glob("*.pt"):
        p.unlink()
    only_events = run_cli(["dataset=ring", "steps=4", *QUICK_EVAL, f"hydra.run.dir={run}"])
    assert only_events.returncode == 2 and "already holds a run (events.out.tfevents." in only_events.stderr
    assert "choose another hydra.run.dir" in only_events.stderr
