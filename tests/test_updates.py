"""The updates' statistics: what the D/ tags report for each loss."""

import pytest
import torch

from gan_cli import data as datasets
from gan_cli.losses import PAIRS as LOSSES
from gan_cli.updates import GAN, Stats


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_d_tags_show_a_probability_only_where_d_is_one(make_cfg, loss):
    """sigma(a) for the cross-entropy losses; D's raw output otherwise (least squares: the estimate with
    targets 1 / 0; hinge: the score with margins +1 / -1; wasserstein_gp: the critic's score)."""
    cfg = make_cfg("device=cpu", f"loss={loss}")
    torch.manual_seed(0)
    gan = GAN(cfg, datasets.load(cfg.dataset, torch.device("cpu")), torch.device("cpu"))
    a = torch.tensor([-3.0, 0.0, 0.5, 2.0])
    expected = torch.sigmoid(a) if loss in ("minimax", "nonsaturating", "maximum_likelihood") else a
    assert torch.equal(gan.score(a), expected)
    step = gan.d_step(16)
    window = dict(zip(Stats.D_TAGS, step.values.tolist()))
    assert window["D/real_mean"] == pytest.approx(step.real.mean().item())
    assert window["D/fake_mean"] == pytest.approx(step.fake.mean().item())
