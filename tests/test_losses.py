"""Loss variants against hand-computed values, including the sign of each gradient."""

import math

import pytest
import torch
from omegaconf import OmegaConf

from gan_cli.config import UserError
from gan_cli.game import losses
from gan_cli.game.losses import LOSSES

from .conftest import choices_in_conf

LN2 = math.log(2.0)


def pair(name, **extra):
    return losses.get(OmegaConf.create({"name": name, "gp_weight": 10.0, "max_logit": 20.0, "d_scale": 1.0, **extra}))


def grad_of(fn, a):
    a = torch.tensor(a, dtype=torch.float64, requires_grad=True)
    fn(a).backward()
    return a.grad


def test_cross_entropy_d_loss_hand_values():
    # a = 0 -> D = 1/2: -log(1/2) - log(1/2) = 2 log 2 (the value at the global optimum)
    assert losses.d_cross_entropy(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(2 * LN2)
    # a_real = 2, a_fake = -1: -log sigma(2) - log(1 - sigma(-1))
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected = -math.log(sig(2.0)) - math.log(1 - sig(-1.0))
    assert losses.d_cross_entropy(torch.tensor([2.0]), torch.tensor([-1.0])).item() == pytest.approx(expected, rel=1e-6)


def test_minimax_is_the_true_saturating_loss():
    a = torch.tensor([-3.0, 0.0, 2.0])
    # log(1 - sigma(a)) = -softplus(a)
    expected = torch.log(1 - torch.sigmoid(a)).mean()
    assert pair("minimax").g(a).item() == pytest.approx(expected.item(), rel=1e-6)
    # and it is NOT the non-saturating -log D(G(z))
    assert pair("minimax").g(a).item() != pytest.approx(pair("nonsaturating").g(a).item())


def test_generator_gradient_signs_and_saturation():
    # all generator losses must push the fake logit UP (negative gradient w.r.t. a_fake)
    for name in LOSSES:
        g = grad_of(pair(name).g, [-2.0])
        assert g.item() < 0, name
    # saturation: at a confident rejection (a = -10) minimax's gradient is ~ -sigma(-10), tiny;
    # the non-saturating one is ~ -(1 - sigma(-10)) ~ -1
    assert abs(grad_of(pair("minimax").g, [-10.0]).item()) == pytest.approx(1 / (1 + math.exp(10)), rel=1e-6)
    assert grad_of(pair("nonsaturating").g, [-10.0]).item() == pytest.approx(-(1 - 1 / (1 + math.exp(10))), rel=1e-6)


def test_discriminator_gradient_signs():
    # every D loss must push real logits up and fake logits down
    for name in ("minimax", "least_squares", "hinge", "wasserstein_gp"):
        d = pair(name).d
        a_real = torch.tensor([0.0], requires_grad=True)
        a_fake = torch.tensor([0.5], requires_grad=True)
        d(a_real, a_fake).backward()
        assert a_real.grad.item() < 0 and a_fake.grad.item() > 0, name


def test_maximum_likelihood_value_and_stable_clamp():
    g = pair("maximum_likelihood").g
    assert g(torch.tensor([0.0, math.log(3.0)])).item() == pytest.approx(-0.5 * (1 + 3) / 2)
    # d/da of -1/2 exp(a) = -1/2 exp(a)
    assert grad_of(g, [1.0]).item() == pytest.approx(-0.5 * math.e)
    huge = g(torch.tensor([1e4]))
    assert torch.isfinite(huge) and huge.item() == pytest.approx(-0.5 * math.exp(20.0), rel=1e-5)


def test_least_squares_and_hinge_hand_values():
    lsq, hinge = pair("least_squares"), pair("hinge")
    assert lsq.d(torch.tensor([1.0]), torch.tensor([0.0])).item() == 0.0
    assert lsq.d(torch.tensor([3.0]), torch.tensor([2.0])).item() == pytest.approx(0.5 * 4 + 0.5 * 4)
    assert lsq.g(torch.tensor([-1.0])).item() == pytest.approx(2.0)
    assert hinge.d(torch.tensor([0.5]), torch.tensor([-0.5])).item() == pytest.approx(0.5 + 0.5)
    assert hinge.d(torch.tensor([2.0]), torch.tensor([-3.0])).item() == 0.0
    assert hinge.g(torch.tensor([1.5, 0.5])).item() == pytest.approx(-1.0)


def test_wasserstein_critic_loss():
    w = pair("wasserstein_gp")
    assert w.critic and w.penalty_weight == 10.0
    assert w.d(torch.tensor([3.0, 1.0]), torch.tensor([0.5])).item() == pytest.approx(0.5 - 2.0)


def test_gradient_penalty_full_sample_norm():
    # a(x) = <w, x> over the WHOLE flattened (C, H, W) sample: grad = w everywhere, so the
    # penalty is (||w||_2 - 1)^2 whatever the interpolation weight is
    w = torch.randn(2, 3, 3)
    critic = lambda x: (x * w).flatten(1).sum(1)  # noqa: E731
    real, fake = torch.rand(5, 2, 3, 3), torch.rand(5, 2, 3, 3)
    gp = losses.gradient_penalty(critic, real, fake)
    assert gp.item() == pytest.approx((w.norm() - 1).pow(2).item(), rel=1e-5)


def test_gradient_penalty_one_epsilon_per_sample():
    # a(x) = ||x||^2 / 2: grad = x_hat. With real = 1 and fake = 0 everywhere, x_hat = eps (constant
    # over the sample) iff eps is drawn once per sample; a per-pixel eps would vary within a sample.
    seen = {}

    def critic(x):
        seen["x_hat"] = x.detach()
        return 0.5 * x.pow(2).flatten(1).sum(1)

    torch.manual_seed(0)
    losses.gradient_penalty(critic, torch.ones(6, 1, 4, 4), torch.zeros(6, 1, 4, 4))
    x_hat = seen["x_hat"].flatten(1)
    assert torch.allclose(x_hat, x_hat[:, :1].expand_as(x_hat))  # constant within each sample
    assert x_hat[:, 0].unique().numel() == 6  # different across samples


def test_every_loss_choice_is_one_hydra_composes():
    assert set(LOSSES) == choices_in_conf("loss")


def test_what_each_pair_says_about_d():
    # the cross-entropy D losses make sigma(a) an estimate of p_data / (p_data + p_g)
    assert {name for name in LOSSES if pair(name).probability} == {"minimax", "nonsaturating", "maximum_likelihood"}
    assert {name for name in LOSSES if pair(name).critic} == {"wasserstein_gp"}
    assert pair("wasserstein_gp").penalty_weight == 10.0 and pair("hinge").penalty_weight == 0.0
    assert pair("nonsaturating", d_scale=0.5).d_scale == 0.5


def test_an_unknown_loss_names_the_choices():
    with pytest.raises(UserError, match="loss=nope is not a loss; choose one of: minimax, nonsaturating"):
        pair("nope")


# (game/D_real, game/D_fake, D's loss) of a window where D has won, and of one where it has not, per loss
WON = {
    "minimax": ((0.995, 0.004, 5.9), (0.9, 0.1, 0.2)),
    "nonsaturating": ((0.995, 0.004, 5.9), (0.995, 0.02, 0.03)),
    "maximum_likelihood": ((0.999, 0.001, 7.0), (0.98, 0.004, 0.03)),
    # least squares: the window's D loss 1/2 E(a_real - 1)^2 + 1/2 E a_fake^2 below 0.01
    "least_squares": ((0.98, 0.03, 0.008), (1.0, 0.0, 0.02)),
    # hinge: every hinge term inactive, i.e. the window's D loss exactly 0 (means alone cannot say "every")
    "hinge": ((1.6, -1.7, 0.0), (1.6, -1.7, 0.01)),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_says_when_d_has_won(name):
    won = pair(name).won
    if name == "wasserstein_gp":  # a critic's scores have no scale to saturate at: no criterion
        assert won is None and pair(name).critic
        return
    fires, quiet = WON[name]
    assert won(*fires) and won(*quiet) is None


def test_least_squares_d_has_won_within_rms_0_1_of_its_targets_and_hinge_when_no_term_is_active():
    a_real, a_fake = torch.full((100,), 1 - 0.09), torch.full((100,), 0.09)
    assert pair("least_squares").won(0.91, 0.09, losses.d_least_squares(a_real, a_fake).item())
    a_real, a_fake = torch.full((100,), 1 - 0.11), torch.full((100,), 0.11)
    assert pair("least_squares").won(0.89, 0.11, losses.d_least_squares(a_real, a_fake).item()) is None
    # hinge: one active term in the window is enough for D to keep learning
    a_real = torch.tensor([1.5, 2.0, 0.999])
    assert losses.d_hinge(a_real, -a_real.flip(0)).item() > 0
