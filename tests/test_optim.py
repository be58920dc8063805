"""Optimizers and the paper's schedules."""

import copy

import pytest
import torch

from gan_cli.config import UserError
from gan_cli.game import optim

from .conftest import choices_in_conf


def test_paper_schedules(make_cfg):
    opt = make_cfg("experiment=paper_mnist").optimizer
    assert optim.lr_at(opt, 0) == pytest.approx(0.1)
    assert optim.lr_at(opt, 1000) == pytest.approx(0.1 / 1.000004**1000)
    assert optim.lr_at(opt, 10**8) == pytest.approx(1e-6)
    assert optim.momentum_at(opt, 0) == 0.5
    assert optim.momentum_at(opt, opt.momentum_ramp_steps // 2) == pytest.approx(0.6)
    assert optim.momentum_at(opt, 10**9) == pytest.approx(0.7)



def test_every_optimizer_choice_is_one_hydra_composes():
    assert set(optim.OPTIMIZERS) == choices_in_conf("optimizer")


def test_an_unknown_optimizer_names_the_choices(make_cfg):
    cfg = make_cfg("optimizer.name=rmsprop").optimizer
    with pytest.raises(UserError, match="optimizer=rmsprop is not an optimizer; choose one of: sgd, adam"):
        optim.build(cfg, [torch.nn.Parameter(torch.zeros(1))])


def test_schedule_sets_and_reports_the_iterations_values(make_cfg):
    params = [torch.nn.Parameter(torch.zeros(1))]
    plain = optim.Schedule(make_cfg().optimizer)
    opt = optim.build(make_cfg().optimizer, params)
    plain.apply(500, opt, opt)
    assert not plain.active and plain.values(500) == {} and opt.param_groups[0]["lr"] == 0.1
    cfg = make_cfg("experiment=paper_mnist").optimizer
    paper, opt = optim.Schedule(cfg), optim.build(cfg, params)
    paper.apply(62500, opt, opt)
    assert paper.active and opt.param_groups[0]["lr"] == pytest.approx(0.1 / 1.000004**62500)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.6)
    assert paper.values(62500) == {"optim/lr": opt.param_groups[0]["lr"],
                                   "optim/momentum": opt.param_groups[0]["momentum"]}
    decay_only = optim.Schedule(make_cfg("optimizer.lr_decay=1.001").optimizer)  # momentum constant: no curve
    ramp_only = optim.Schedule(make_cfg("optimizer.final_momentum=0.7", "optimizer.momentum_ramp_steps=10").optimizer)
    assert set(decay_only.values(5)) == {"optim/lr"} and set(ramp_only.values(5)) == {"optim/momentum"}
    assert ramp_only.values(5)["optim/momentum"] == pytest.approx(0.6)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_the_eager_optimizers_update_and_save_exactly_as_torchs(name):
    # gan-cli's SGD/Adam skip torch's compiler guards: same updates, same state, interchangeable state_dicts
    ours_cls, theirs_cls = {"sgd": (optim.SGD, torch.optim.SGD), "adam": (optim.Adam, torch.optim.Adam)}[name]
    kwargs = {"sgd": dict(lr=0.1, momentum=0.5, weight_decay=1e-3), "adam": dict(lr=1e-2, betas=(0.5, 0.9))}[name]
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 1)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [ours_cls(nets[0].parameters(), **kwargs), theirs_cls(nets[1].parameters(), **kwargs)]
    x = torch.randn(32, 5)
    for _ in range(5):
        for net, opt in zip(nets, opts):
            opt.zero_grad(set_to_none=True)
            net(x).square().mean().backward()
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.equal(a, b)
    saved = opts[0].state_dict()
    torch.testing.assert_close(saved, opts[1].state_dict(), rtol=0, atol=0)
    fresh = theirs_cls(nets[1].parameters(), **kwargs)
    fresh.load_state_dict(saved)  # a checkpoint of ours loads into torch's class, and back
    ours_cls(nets[0].parameters(), **kwargs).load_state_dict(fresh.state_dict())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("overrides", [
    ["optimizer=adam", "optimizer.lr=3e-4"], ["optimizer=adam", "optimizer.beta1=0.9", "optimizer.weight_decay=0.01"],
    ["optimizer=sgd"], ["optimizer=sgd", "optimizer.nesterov=true", "optimizer.weight_decay=1e-3"],
    ["optimizer=sgd", "optimizer.momentum=0"]])
def test_a_cpu_run_steps_with_torchs_fused_kernel_to_the_float_rounding_of_its_plain_step(make_cfg, overrides, dtype):
    # one pass over each state instead of several; the numbers are those of torch's single-tensor step to the last
    # bit or so (the two round a few elements in 100,000 differently), also when the schedule changes lr and momentum
    cfg = make_cfg(*overrides).optimizer
    gen = torch.Generator().manual_seed(0)
    shapes = [(64, 1), (64,), (37, 64), (1, 37), (300, 200)]
    start = [torch.randn(s, generator=gen, dtype=dtype) for s in shapes]
    grads = [[torch.randn(s, generator=gen, dtype=dtype) for s in shapes] for _ in range(12)]
    params = [[t.clone().requires_grad_() for t in start] for _ in range(2)]
    ours = optim.build(cfg, params[0])
    plain = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[cfg.name](params[1], **{
        k: v for k, v in ours.defaults.items() if k != "fused"})
    assert ours.defaults["fused"] and not plain.defaults["fused"]
    for t, step in enumerate(grads):
        for opt, ps in ((ours, params[0]), (plain, params[1])):
            if t == 5:  # what optim.Schedule sets
                opt.param_groups[0].update(lr=opt.param_groups[0]["lr"] * 0.7,
                                           **({"momentum": 0.9} if cfg.name == "sgd" and cfg.momentum else {}))
            for p, g in zip(ps, step):
                p.grad = g.clone()
            opt.step()
    ulp = torch.finfo(dtype).eps
    for a, b in zip(*params):
        torch.testing.assert_close(a, b, rtol=8 * ulp, atol=8 * ulp)


def test_ttur_gives_each_network_its_own_rate_and_the_schedule_decays_both(make_cfg):
    # optimizer.d_lr / g_lr: separate rates; unset, both take optimizer.lr (today's commands unchanged)
    params = lambda: [torch.nn.Parameter(torch.zeros(1))]  # noqa: E731
    same = make_cfg("optimizer=adam").optimizer
    assert optim.base_lr(same, "D") == optim.base_lr(same, "G") == 0.0002
    cfg = make_cfg("optimizer=adam", "optimizer.d_lr=0.0004", "optimizer.g_lr=0.0001",
                   "optimizer.lr_decay=1.001").optimizer
    opt_G, opt_D = optim.build(cfg, params(), net="G"), optim.build(cfg, params(), net="D")
    assert opt_G.param_groups[0]["lr"] == 0.0001 and opt_D.param_groups[0]["lr"] == 0.0004
    schedule = optim.Schedule(cfg)
    schedule.apply(1000, opt_G, opt_D)
    assert opt_G.param_groups[0]["lr"] == pytest.approx(0.0001 / 1.001**1000)
    assert opt_D.param_groups[0]["lr"] == pytest.approx(0.0004 / 1.001**1000)
    assert set(schedule.values(1000)) == {"optim/lr_D", "optim/lr_G"}  # Adam: no momentum (its beta1 is fixed)
    assert schedule.values(1000)["optim/lr_D"] == opt_D.param_groups[0]["lr"]
    only_d = make_cfg("optimizer.d_lr=0.3").optimizer  # sgd: G keeps optimizer.lr
    assert (optim.base_lr(only_d, "D"), optim.base_lr(only_d, "G")) == (0.3, 0.1)


@pytest.mark.parametrize("value", ["0", "-1e-3"])
def test_a_learning_rate_out_of_range_is_one_line(make_cfg, value):
    from gan_cli.config import validate

    for key in ("d_lr", "g_lr"):
        with pytest.raises(UserError, match=rf"optimizer.{key}=\S+ is not allowed: "
                                            rf"optimizer.{key} must be a finite number in \(0, 10\]"):
            validate(make_cfg(f"optimizer.{key}={value}"))


def test_a_checkpoint_from_before_the_fused_kernels_resumes_with_its_own_arithmetic(make_cfg):
    # an optimizer saved by a run that stepped torch's single-tensor way goes on that way when resumed, to the bit
    cfg = make_cfg("optimizer=adam").optimizer
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(300, 200, generator=gen)
    grads = [torch.randn(300, 200, generator=gen) for _ in range(6)]
    old, resumed, fresh = (torch.nn.Parameter(start.clone()) for _ in range(3))
    plain = torch.optim.Adam([old], lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    for g in grads[:3]:
        old.grad = g.clone()
        plain.step()
    saved = copy.deepcopy(plain.state_dict())  # as a checkpoint holds it
    resumed.data.copy_(old.detach())
    fresh.data.copy_(old.detach())
    ours, other = optim.build(cfg, [resumed]), optim.build(cfg, [fresh])
    ours.load_state_dict(copy.deepcopy(saved))  # each its own copy: load_state_dict keeps the tensors it is given
    other.load_state_dict({**copy.deepcopy(saved), "param_groups": [{**saved["param_groups"][0], "fused": True}]})
    for g in grads[3:]:
        for p, opt in ((old, plain), (resumed, ours), (fresh, other)):
            p.grad = g.clone()
            opt.step()
    assert torch.equal(resumed, old)
    assert not torch.equal(fresh, old)  # the fused kernel rounds some of these numbers otherwise
