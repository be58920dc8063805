"""The offline feature classifier: accuracy, cache, and its real-vs-real floor."""

import pytest
import torch
from sklearn.datasets import load_digits

from gan_cli.features import (
    Classifier,
    default_cache_dir,
    get_classifier,
    image_metrics,
    real_floor,
)


@pytest.fixture(scope="module")
def digits():
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16
    y = torch.tensor(bunch.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return x[:1500], y[:1500], x[1500:], y[1500:]


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    cache = tmp_path_factory.mktemp("classifiers")
    model, info = get_classifier("digits", *digits, cache_dir=cache, steps=500)
    return model, info, cache


def test_classifier_reaches_stated_accuracy(trained):
    model, info, _ = trained
    assert info["test_accuracy"] >= 0.96 and not info["cached"]
    assert model.num_features == 128 and not model.training
    assert model.features(torch.rand(4, 1, 8, 8)).shape == (4, 128)


def test_classifier_is_cached_and_reloaded(trained, digits):
    model, info, cache = trained
    again, info_again = get_classifier("digits", *digits, cache_dir=cache, steps=500)
    assert info_again["cached"] and info_again["path"] == info["path"]
    assert info_again["test_accuracy"] == info["test_accuracy"]
    x = digits[2][:32]
    torch.testing.assert_close(again.features(x), model.features(x))
    assert len(list(cache.glob("digits-*.pt"))) == 1 and not list(cache.glob("*.tmp"))


def test_cache_key_follows_the_data_and_default_dir_the_env(trained, digits, monkeypatch, tmp_path):
    _, info, cache = trained
    x, y, tx, ty = digits
    _, other = get_classifier("digits", x[:600], y[:600], tx, ty, cache_dir=cache, steps=20)
    assert other["path"] != info["path"] and not other["cached"]
    monkeypatch.setenv("GAN_CLI_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "classifiers"


def test_classifier_rejects_non_square_images(digits):
    with pytest.raises(ValueError, match="divisible by 4"):
        get_classifier("bad", torch.rand(10, 1, 8, 6), torch.zeros(10).long(), digits[2], digits[3])


def test_classifier_handles_colour_and_mnist_sizes():
    for channels, size in ((3, 32), (1, 28)):
        assert Classifier(channels, size, 10)(torch.rand(2, channels, size, size)).shape == (2, 10)


def test_real_floor_is_below_bad_generators(trained, digits):
    model, _, _ = trained
    x, _, tx, _ = digits
    floor = real_floor(model, x, tx, kid_subsets=10)
    noise = image_metrics(model, x, torch.rand_like(tx), kid_subsets=10)
    one_digit = image_metrics(model, x, tx[:1].expand_as(tx), kid_subsets=10)
    assert set(floor) == {"fid", "kid", "kid_std", "precision", "recall"}
    assert floor["fid"] < 0.05 * noise["fid"] and floor["kid"] < noise["kid"] - 5 * noise["kid_std"]
    assert floor["precision"] > 0.8 and floor["recall"] > 0.8 and noise["recall"] < 0.1
    # collapse onto one real digit: perfect quality, no coverage
    assert one_digit["precision"] == 1.0 and one_digit["recall"] < 0.05

