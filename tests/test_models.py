"""Networks per architecture: the paper's maxout nets, dcgan shapes, the Dirac game, the registry."""

import pytest
import torch

from gan_cli import data as datasets
from gan_cli.config import UserError
from gan_cli.game import models

from .conftest import choices_in_conf


def test_dcgan_builds_for_cifar_sized_images():
    fake = datasets.Data(name="cifar10", train=torch.rand(10, 3, 32, 32), shape=(3, 32, 32))
    arch = type("A", (), dict(name="dcgan", g_hidden=8, d_hidden=8, d_dropout_input=0.0, d_dropout_hidden=0.0,
                             g_init_range=0,
                             d_init_range=0, g_output_bias_from_data=False))
    G, D = models.build(arch, fake, 16)
    x = G(torch.randn(4, 16))
    assert x.shape == (4, 3, 32, 32) and D(x).shape == (4,)


def test_paper_maxout_networks(make_cfg):
    cfg = make_cfg("arch=maxout")
    data = datasets.load(cfg.dataset, torch.device("cpu"))
    G, D = models.build(cfg.arch, data, 100)
    first = G.body[0]
    assert first.weight.abs().max() <= 0.05 and first.out_features == 1200
    maxouts = [m for m in D.modules() if isinstance(m, models.Maxout)]
    assert [(m.units, m.pieces) for m in maxouts] == [(240, 5), (240, 5)]
    assert max(m.linear.weight.abs().max().item() for m in maxouts) <= 0.005
    dropouts = [m.p for m in D.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts[0] == pytest.approx(0.2) and 0.5 in dropouts
    # output bias = logit of the pixel means: sigmoid(bias) reproduces them
    means = data.train.flatten(1).mean(0)
    bias = G.body[-1].bias
    assert torch.allclose(torch.sigmoid(bias), means, atol=1e-5)
    # pixels that are always 0 start where pylearn2 puts them: logit(1e-7) = -16.1, not -6.9 (a 1e-3 clip)
    blank = means == 0
    assert blank.any() and torch.allclose(bias[blank], torch.tensor(-16.118), atol=1e-3)



def test_every_arch_choice_is_one_hydra_composes():
    assert set(models.ARCHS) == choices_in_conf("arch")


@pytest.mark.parametrize("arch,dataset,message", [
    ("nope", "digits", "arch=nope is not an architecture; choose one of: mlp"),
    ("dcgan", "ring", "arch=dcgan is convolutional and needs an image dataset, but dataset=ring"),
    ("dirac", "ring", "arch=dirac needs 1-D data, but dataset=ring"),
    ("dirac", "digits", "arch=dirac needs 1-D data"),
])
def test_an_arch_that_does_not_fit_is_named(arch, dataset, message):
    entry = datasets.DATASETS[dataset]
    with pytest.raises(UserError, match=message):
        models.check(arch, dataset, is_image=entry.dim is None, dim=entry.dim)


def test_fitting_archs_pass_the_check():
    models.check("dirac", "mixture1d", is_image=False, dim=1)
    models.check("dcgan", "digits", is_image=True, dim=None)
    models.check("mlp", "ring", is_image=False, dim=2)


def test_the_dirac_game_exposes_its_point_and_others_have_none(make_cfg):
    cfg = make_cfg("experiment=dirac")
    data = datasets.load(cfg.dataset, torch.device("cpu"))
    nets = models.build(cfg.arch, data, cfg.z_dim)
    G, D = nets  # a Nets unpacks into the two networks
    assert nets.has_point and nets.point().tolist() == [cfg.arch.theta0, cfg.arch.psi0]
    assert G(torch.zeros(3, 1)).tolist() == [[1.0]] * 3 and D(torch.ones(2, 1)).tolist() == [1.0, 1.0]
    with torch.no_grad():
        G.body.theta.fill_(0.25)
    assert nets.point().tolist() == [0.25, 1.0]
    mlp = models.build(make_cfg().arch, datasets.load(make_cfg().dataset, torch.device("cpu")), 100)
    assert not mlp.has_point and mlp.point() is None


@pytest.mark.parametrize("dataset, expected", [("digits", [0.2, 0.5, 0.5]), ("ring", [0.0, 0.0, 0.0]),
                                               ("mixture1d", [0.0, 0.0, 0.0])])
def test_mlp_dropout_is_the_papers_on_images_and_none_on_points(make_cfg, dataset, expected):
    cfg = make_cfg(f"dataset={dataset}", "arch=mlp")
    data = datasets.load(cfg.dataset, torch.device("cpu"))
    _, D = models.build(cfg.arch, data, 2)
    assert [m.p for m in D.modules() if isinstance(m, torch.nn.Dropout)] == expected
    # a value the user sets is kept, on points too
    cfg = make_cfg(f"dataset={dataset}", "arch=mlp", "arch.d_dropout_input=0.1", "arch.d_dropout_hidden=0.3")
    _, D = models.build(cfg.arch, datasets.load(cfg.dataset, torch.device("cpu")), 2)
    assert [m.p for m in D.modules() if isinstance(m, torch.nn.Dropout)] == [0.1, 0.3, 0.3]


@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
@pytest.mark.parametrize("shape", [(1000, 1000), (250, 4, 10, 100)])
def test_cpu_dropout_drops_p_of_the_elements_and_keeps_the_mean(p, shape):
    torch.manual_seed(0)
    drop = models.Dropout(p).train()
    x = torch.ones(shape)
    y = drop(x)
    n = x.numel()
    dropped = (y == 0).double().mean().item()
    assert abs(dropped - p) < 5 * (p * (1 - p) / n) ** 0.5  # a Bernoulli(p) rate, within 5 sd
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - p)), rtol=1e-6)  # scaled by 1 / keep rate
    assert abs(y.double().mean().item() - 1) < 5 * (p / (1 - p) / n) ** 0.5  # E[y] = x
    # the rate is the same in every part of the tensor (each element its own 32 bits, no stripes)
    per_row = (y.reshape(shape[0], -1) == 0).double().mean(1)
    sd = (p * (1 - p) / (n // shape[0])) ** 0.5  # of one row's rate
    assert 0.8 * sd < per_row.std().item() < 1.2 * sd
    assert (per_row - p).abs().max().item() < 6 * sd


def test_cpu_dropout_follows_the_seed_and_passes_gradients_through_the_mask():
    drop = models.Dropout(0.5).train()
    x = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(1)
    y1 = drop(x)
    torch.manual_seed(1)
    y2 = drop(x)
    assert torch.equal(y1, y2)  # the global generator (torch.manual_seed, a checkpoint's RNG state) governs it
    assert not torch.equal(y1, drop(x))  # a fresh mask per call
    y1.sum().backward()
    mask = (y1 != 0).float()
    assert torch.allclose(x.grad, 2 * mask)
    assert torch.equal(drop.eval()(x), x)  # eval mode: identity
    # the bits are uniform: drop rate of p for p near the ends, and p = 0 / 1 fall back to nn.Dropout
    torch.manual_seed(2)
    z = torch.ones(2_000_000)
    assert (models.Dropout(0.001).train()(z) == 0).double().mean().item() == pytest.approx(0.001, abs=1.2e-4)
    assert torch.equal(models.Dropout(0.0).train()(z), z)
    assert (models.Dropout(1.0).train()(z) == 0).all()
