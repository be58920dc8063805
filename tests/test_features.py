"""The offline feature classifier: accuracy, cache, and its real-vs-real floor."""

import pytest
import torch
from torch import nn

from gan_cli.evaluation.features import (
    Classifier,
    default_cache_dir,
    extract_features,
    get_classifier,
    image_metrics,
    real_floor,
)


@pytest.fixture(scope="session")
def digits():
    from sklearn.datasets import load_digits  # (a second to import: here, not at collection)

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16
    y = torch.tensor(bunch.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return x[:1500], y[:1500], x[1500:], y[1500:]


@pytest.fixture(scope="session")
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
    noise = image_metrics(model, x, torch.rand(tx.shape, generator=torch.Generator().manual_seed(1)), kid_subsets=10)
    one_digit = image_metrics(model, x, tx[:1].expand_as(tx), kid_subsets=10)
    assert set(floor) == {"fid", "kid", "kid_std", "precision", "recall"}
    assert floor["fid"] < 0.05 * noise["fid"] and floor["kid"] < noise["kid"] - 5 * noise["kid_std"]
    assert floor["precision"] > 0.8 and floor["recall"] > 0.8 and noise["recall"] < 0.1
    # collapse onto one real digit: perfect quality, no coverage
    assert one_digit["precision"] == 1.0 and one_digit["recall"] < 0.05



class Passthrough(nn.Module):
    """A 'classifier' whose features are its inputs: metrics on synthetic feature sets."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def features(self, x):
        return x


def unevenly_scaled(n, generator, shift=0.0):
    """16 features, 4 of them uninformative and 30 times wider than the rest, all offset by 5
    (classifier features are ReLU outputs of uneven scale, far from zero mean)."""
    x = torch.randn(n, 16, generator=generator)
    x[:, 4:] += shift
    x[:, :4] *= 30
    return x + 5


def test_kid_of_two_real_slices_is_small_beside_a_different_law():
    gen = torch.Generator().manual_seed(0)
    reference = unevenly_scaled(2000, gen)
    slices = [unevenly_scaled(1000, gen) for _ in range(5)]
    different = unevenly_scaled(1000, gen, shift=0.25)  # a quarter std off in 12 of the 16 features
    model = Passthrough()
    same = torch.tensor([image_metrics(model, reference, s, kid_subsets=20)["kid"] for s in slices])
    apart = image_metrics(model, reference, different, kid_subsets=20)["kid"]
    # raw features: the wide uninformative ones swamp the cubic kernel (real vs real read up to 1.8x apart)
    assert same.abs().max() < 0.1 * apart and same.std() < 0.05 * apart
    assert same.std() < 0.01  # standardised features: the kernel's argument is of order one


def test_kid_does_not_depend_on_the_scale_or_offset_of_each_feature():
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(600, 8, generator=gen).double(), 0.2 + torch.randn(300, 8, generator=gen).double()
    scale, offset = torch.logspace(-2, 2, 8).double(), torch.linspace(-50, 50, 8).double()
    model = Passthrough()
    plain = image_metrics(model, real, fake, kid_subsets=5)
    rescaled = image_metrics(model, real * scale + offset, fake * scale + offset, kid_subsets=5)
    assert rescaled["kid"] == pytest.approx(plain["kid"], rel=1e-6)
    assert rescaled["kid_std"] == pytest.approx(plain["kid_std"], rel=1e-6)


def test_the_metrics_at_a_sample_size_average_disjoint_sets_of_that_size():
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(500, 6, generator=gen), 0.3 + torch.randn(650, 6, generator=gen)
    model = Passthrough()
    sized = image_metrics(model, real, fake, size=200, kid_subsets=10)  # 3 sets of 200; 50 fakes left out
    sets = [image_metrics(model, real, part, kid_subsets=10) for part in fake[:600].split(200)]
    for key in ("fid", "precision", "recall"):
        assert sized[key] == pytest.approx(sum(s[key] for s in sets) / 3, rel=1e-9), key
    assert image_metrics(model, real, fake)["fid"] < sized["fid"]  # FID's bias shrinks with the sample size


def test_real_floor_compares_the_reference_with_as_many_held_out_images_as_the_run_with_fakes(trained, digits):
    model, _, _ = trained
    x, _, tx, _ = digits  # 1,500 training and 297 held-out digits
    floor = real_floor(model, x, tx, n=1000, kid_subsets=10)
    # a "generator" that replays the held-out digits: at the floor's sizes it reads exactly the floor
    replay = image_metrics(model, x[:1000], tx.repeat(3, 1, 1, 1), size=len(tx), kid_subsets=10)
    for key in ("fid", "precision", "recall"):
        assert replay[key] == pytest.approx(floor[key], rel=1e-9), key


def test_features_do_not_depend_on_the_batch_size(trained, digits):
    """extract_features works through the images in batches (250 by default, for speed); an image's
    features agree to float32 rounding whatever batch it falls in (on this CPU bit for bit from 50
    images a batch): the digits classifier on its test images, and an MNIST-sized one on 1,100
    images (a last batch of 100)."""
    model = trained[0]
    test_x = digits[2]
    torch.manual_seed(0)
    mnist_sized = Classifier(1, 28, 10).eval().to(memory_format=torch.channels_last)
    for net, images in ((model, test_x), (mnist_sized, torch.rand(1100, 1, 28, 28))):
        whole = extract_features(net, images, batch_size=len(images))
        assert whole.shape == (len(images), 128) and whole.abs().sum() > 0
        for batch_size in (1, 7, 100, 250, 1000):
            torch.testing.assert_close(extract_features(net, images, batch_size=batch_size), whole,
                                       rtol=1e-5, atol=1e-5)


def test_the_reference_side_computed_once_gives_the_same_figures():
    """compare() keeps the reference's FID statistics, standardised features, KID subset sums and k-NN
    radii between evaluations: the figures are bit for bit those computed from scratch."""
    from gan_cli.evaluation.features import Reference, compare
    from gan_cli.evaluation.metrics import frechet_distance, kid, precision_recall_knn

    torch.manual_seed(0)
    real, fake = torch.randn(600, 16).relu(), torch.randn(600, 16).relu() * 1.2
    std = real.double().std(0)
    ref = Reference(real, real.double().mean(0), torch.where(std > 0, std, torch.ones_like(std)), {})
    scratch = {"fid": torch.stack([frechet_distance(real, p) for p in fake.split(200)]).mean().item(),
               **kid(ref.standardise(real), ref.standardise(fake), 100, 200),
               **precision_recall_knn(real, fake, 3, 1000, fake_sets=3)}
    first = compare(ref, fake, 200)
    assert ref.cache  # something was kept
    assert first == scratch and compare(ref, fake, 200) == scratch
    other = fake.flip(0) * 0.9  # a second evaluation, other samples: still the from-scratch figures
    assert compare(ref, other, 200) == {
        "fid": torch.stack([frechet_distance(real, p) for p in other.split(200)]).mean().item(),
        **kid(ref.standardise(real), ref.standardise(other), 100, 200),
        **precision_recall_knn(real, other, 3, 1000, fake_sets=3)}


def test_training_the_classifier_is_announced_and_reports_progress(tmp_path, caplog):
    import logging

    from gan_cli.evaluation.features import get_classifier

    torch.manual_seed(0)
    x, y = torch.rand(64, 1, 8, 8), torch.arange(64) % 4
    seen = []
    with caplog.at_level(logging.INFO, logger="gan_cli"):
        _, info = get_classifier("tiny", x, y, x, y, cache_dir=tmp_path, steps=40, batch_size=16,
                                 progress=lambda done, total: seen.append((done, total)))
    assert not info["cached"] and seen[-1] == (40, 40) and len(seen) == 20
    assert f"training the feature classifier for tiny (once, cached in {tmp_path})" in caplog.text
    assert "feature classifier for tiny: test accuracy" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gan_cli"):
        _, again = get_classifier("tiny", x, y, x, y, cache_dir=tmp_path, steps=40, batch_size=16)
    assert again["cached"] and "training the feature classifier" not in caplog.text
