"""The updates' statistics: what the D/ tags report for each loss."""

import pytest
import torch

from gan_cli import data as datasets
from gan_cli.game.losses import LOSSES
from gan_cli.game.updates import GAN, Stats, reads_jointly


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_d_tags_show_a_probability_only_where_d_is_one(make_cfg, loss):
    """sigma(a) for the cross-entropy losses; D's raw output otherwise (least squares: the estimate with
    targets 1 / 0; hinge: the score with margins +1 / -1; wasserstein_gp: the critic's score)."""
    cfg = make_cfg("device=cpu", f"loss={loss}")
    torch.manual_seed(0)
    gan = GAN(cfg, datasets.load(cfg.dataset, torch.device("cpu")), torch.device("cpu"))
    a = torch.tensor([-3.0, 0.0, 0.5, 2.0])
    expected = torch.sigmoid(a) if loss in ("minimax", "nonsaturating", "maximum_likelihood") else a
    assert torch.equal(gan.loss.score(a), expected)
    step = gan.d_step(16)
    window = dict(zip(Stats.D_TAGS, step.values.tolist()))
    assert window["game/D_real"] == pytest.approx(step.real.mean().item())
    assert window["game/D_fake"] == pytest.approx(step.fake.mean().item())


def _updates(cfg, steps=4):
    """The D and G losses of ``steps`` alternating updates from seed 0, and the final parameters."""
    device = torch.device("cpu")
    torch.manual_seed(0)
    gan = GAN(cfg, datasets.load(cfg.dataset, device), device)
    values = []
    for _ in range(steps):
        values.append(gan.d_step(cfg.batch_size).values[0])
        values.append(gan.g_step(cfg.batch_size)[0])
    return torch.stack(values), [p.detach().clone() for net in gan.nets for p in net.parameters()]


def test_d_reads_real_and_fake_in_one_call_only_without_batch_statistics():
    assert reads_jointly(torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 1)))
    assert not reads_jointly(torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1)))


def test_one_call_of_d_on_real_and_fake_gives_the_two_calls_updates(make_cfg):
    # no dropout (ring's mlp): the joint call is the same function of the same minibatch
    cfg = make_cfg("device=cpu", "dataset=ring")
    joint, joint_params = _updates(cfg)
    torch.manual_seed(0)
    separate_gan = GAN(cfg, datasets.load(cfg.dataset, torch.device("cpu")), torch.device("cpu"))
    separate_gan.joint = False
    values = []
    for _ in range(4):
        values.append(separate_gan.d_step(cfg.batch_size).values[0])
        values.append(separate_gan.g_step(cfg.batch_size)[0])
    torch.testing.assert_close(torch.stack(values), joint, rtol=1e-5, atol=1e-6)


def test_the_logged_gradient_norms_are_torch_s_total_norms(make_cfg):
    """grad/D and grad/G: each update's gradient norm, as torch.nn.utils.get_total_norm gives it; D's frozen in a G
    update and trained again after it."""
    cfg = make_cfg("device=cpu", "dataset=ring")
    torch.manual_seed(0)
    gan = GAN(cfg, datasets.load(cfg.dataset, torch.device("cpu")), torch.device("cpu"))
    d = gan.d_step(cfg.batch_size)
    expected = torch.nn.utils.get_total_norm([p.grad for p in gan.D.parameters()])
    assert 0 < d.values[5] == pytest.approx(expected.item(), rel=1e-6)
    g = gan.g_step(cfg.batch_size)
    assert 0 < g[1] == pytest.approx(torch.nn.utils.get_total_norm([p.grad for p in gan.G.parameters()]).item(),
                                     rel=1e-6)
    assert all(p.requires_grad for p in gan.D.parameters())
    assert gan._grad_norm([]) == 0


def test_bf16_updates_follow_the_fp32_ones_and_keep_float32_state(make_cfg):
    fp32, params32 = _updates(make_cfg("device=cpu", "dataset=ring"))
    bf16, params16 = _updates(make_cfg("device=cpu", "dataset=ring", "precision=bf16"))
    assert all(p.dtype == torch.float32 for p in params16)  # autocast: parameters and optimizer stay float32
    # bfloat16 keeps 8 bits of mantissa: the losses agree to about 1 %, and they are not identical
    torch.testing.assert_close(bf16, fp32, rtol=2e-2, atol=2e-2)
    assert not torch.equal(bf16, fp32)


@pytest.mark.slow
def test_compiled_updates_match_the_eager_ones(make_cfg):
    # torch.compile on the CPU (on a GPU the same path adds CUDA graphs: tests/test_gpu.py)
    eager, eager_params = _updates(make_cfg("device=cpu", "dataset=ring"))
    compiled, compiled_params = _updates(make_cfg("device=cpu", "dataset=ring", "compile=true"))
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    for a, b in zip(compiled_params, eager_params):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
