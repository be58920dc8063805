"""The moving average of G (ema.*): torch's EMA step, checkpointed, resumed, sampled and evaluated."""

import copy

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from gan_cli.cli import gan_eval
from gan_cli.cli.train import train
from gan_cli.config import UserError, validate
from gan_cli.game import ema as averaging
from gan_cli.runs import checkpoint

from .conftest import FAST, QUICK_EVAL, events


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def _train_a_little(net, steps=1):
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    for _ in range(steps):
        opt.zero_grad()
        net(torch.randn(16, 3)).square().mean().backward()
        opt.step()


def test_the_average_is_torchs_ema_of_weights_and_batch_norm_statistics():
    G = _net()
    ema = averaging.EMA(G, decay=0.9, start=2)
    reference = AveragedModel(G, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)  # torch's own update
    for it in range(1, 7):
        _train_a_little(G)
        ema.update(it)
        if it > 2:
            reference.update_parameters(G)
        if it <= 2:  # before ema.start the average has not begun: samples read G itself
            assert not ema.started and ema.generator() is G
    assert ema.started and int(ema.model.n_averaged) == 4 == int(reference.n_averaged)
    assert ema.model.n_averaged.device.type == "cpu"  # counted on the host: no device read per update
    for (name, mine), theirs in zip(ema.model.module.state_dict().items(), reference.module.state_dict().values()):
        if mine.is_floating_point():  # weights and running statistics: bit for bit torch's update
            assert torch.equal(mine, theirs), name
    # and by the formula: one more step is decay * average + (1 - decay) * G
    before = copy.deepcopy(ema.model.module.state_dict())
    _train_a_little(G)
    ema.update(7)
    for name, value in G.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(ema.model.module.state_dict()[name], 0.9 * before[name] + 0.1 * value)
        else:  # batch norm's num_batches_tracked: a count, copied
            assert torch.equal(ema.model.module.state_dict()[name], value)
    assert not any(p.requires_grad for p in ema.model.parameters())


@pytest.mark.parametrize("value,message", [("1.0", "must be a finite number in \\(0, 1\\)"),
                                           ("0", "must be a finite number in \\(0, 1\\)"),
                                           ("-0.5", "must be a finite number in \\(0, 1\\)")])
def test_an_ema_decay_out_of_range_is_one_line(make_cfg, value, message):
    with pytest.raises(UserError, match=f"ema.decay=\\S+ is not allowed: ema.decay {message}"):
        validate(make_cfg(f"ema.decay={value}"))
    with pytest.raises(UserError, match="ema.start=-1 is not allowed"):
        validate(make_cfg("ema.decay=0.9", "ema.start=-1"))


def test_an_ema_run_samples_and_evaluates_the_average_and_gan_eval_measures_it_again(make_cfg, tmp_path):
    run = tmp_path / "run"
    cfg = make_cfg(*FAST, *QUICK_EVAL, "steps=30", "eval_every=30", "sample_every=30", "ema.decay=0.8",
                   "ema.also_raw=true")
    metrics = train(cfg, run)
    saved = checkpoint.load(run / "checkpoints" / "last.pt")
    assert int(saved["G_ema"]["n_averaged"]) == 30
    assert not torch.equal(saved["G_ema"]["module.body.0.weight"], saved["G"]["body.0.weight"])
    # the average's figures under eval/, G's own under raw/ (the same noise, another generator)
    assert metrics["eval/fid"] != metrics["raw/eval/fid"] and "raw/eval/fid_floor" not in metrics
    tags = events(run).Tags()
    assert {"game/samples", "raw/game/samples"} <= set(tags["images"]) and "raw/eval/fid" in tags["scalars"]
    report = gan_eval.run([str(run)])
    assert report["metrics"]["eval/fid"] == pytest.approx(metrics["eval/fid"], rel=1e-6)
    assert report["metrics"]["raw/eval/fid"] == pytest.approx(metrics["raw/eval/fid"], rel=1e-6)


def test_a_checkpoint_without_the_average_is_one_line(make_cfg, tmp_path):
    train(make_cfg(*FAST, *QUICK_EVAL), tmp_path / "run")
    saved = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")
    saved["config"]["ema"]["decay"] = 0.99  # as if written with the average on, but without it
    torch.save(saved, tmp_path / "edited.pt")
    with pytest.raises(UserError,
                       match="edited.pt has no G_ema \\(the moving average of G\\): its run had ema.decay=null"):
        gan_eval.run([str(tmp_path / "edited.pt")])
