"""Datasets: the paper's splits, the toy mixtures, the noise priors, and the registry of choices."""

import math

import pytest
import torch

from gan_cli import data as datasets
from gan_cli.config import UserError
from gan_cli.data import images, toys

from .conftest import choices_in_conf


def test_mnist_split_follows_the_paper(make_cfg, tiny_mnist):
    data = datasets.load(make_cfg("dataset=mnist", f"dataset.root={tiny_mnist}").dataset, torch.device("cpu"))
    # 120 training images: the last sixth (20) validates, as train[50000:60000] does for real MNIST
    assert data.train.shape == (100, 1, 28, 28) and data.val.shape == (20, 1, 28, 28)
    assert data.test.shape == (30, 1, 28, 28)
    assert 0.0 <= data.train.min() and data.train.max() <= 1.0


def test_ring_has_eight_distinct_modes():
    centres = toys.ring_centres(8, 1.0)
    assert torch.cdist(centres, centres).add(torch.eye(8) * 10).min() > 0.7
    assert torch.allclose(centres.norm(dim=1), torch.ones(8))
    assert toys.grid_centres(2.0).shape == (25, 2)


def test_noise_priors_have_unit_variance():
    torch.manual_seed(0)
    u = datasets.noise("uniform", 20000, 10, "cpu")
    assert u.abs().max() <= math.sqrt(3) and u.var().item() == pytest.approx(1.0, abs=0.03)
    assert datasets.noise("normal", 20000, 10, "cpu").var().item() == pytest.approx(1.0, abs=0.03)



def test_every_dataset_choice_has_a_loader_and_a_yaml():
    assert set(datasets.DATASETS) == choices_in_conf("dataset")


def test_an_unknown_dataset_names_the_choices():
    with pytest.raises(UserError, match="dataset=nope is not a dataset; choose one of: digits, mnist"):
        datasets.spec("nope")


@pytest.mark.parametrize("name", sorted(datasets.DATASETS))
def test_registry_facts_match_the_loaded_data(make_cfg, tiny_mnist, name):
    entry = datasets.DATASETS[name]
    if name == "cifar10":  # torchvision checks CIFAR's md5 sums: no tiny stand-in files
        assert entry.files is not None and entry.dim is None and entry.families == ("image", "rgb")
        return
    root = tiny_mnist
    if name == "folder":  # a folder of images (tests/test_folder.py has the rest)
        from .test_folder import write_folder

        root = write_folder(tiny_mnist / "images", n=4)
    data = datasets.load(make_cfg(f"dataset={name}", f"dataset.root={root}").dataset, torch.device("cpu"))
    assert data.name == name and data.is_image == (entry.dim is None)
    # image: the classifier metrics and Parzen (labels, splits); rgb: the Inception metrics
    assert bool({"image", "rgb"} & set(entry.families)) == data.is_image
    assert ("density" in entry.families) == data.has_density
    if entry.dim is not None:
        assert data.dim == entry.dim and data.sample(5).shape == (5, entry.dim)
        assert math.isclose(data.weights.sum().item(), 1.0, rel_tol=1e-6)


def test_moving_data_keeps_shared_splits_shared(make_cfg):
    data = datasets.load(make_cfg("dataset=digits").dataset, torch.device("cpu"))
    assert data.val is data.test  # digits: the 297 held-out images validate and test
    moved = data.to("meta")
    assert moved.train.device.type == "meta" and moved.val is moved.test and moved.val is not data.val


def test_a_missing_image_folder_names_the_file_to_put_there(make_cfg, tmp_path):
    with pytest.raises(UserError, match="FashionMNIST/raw/train-images-idx3-ubyte"):
        datasets.check_available(make_cfg("dataset=fashion_mnist", f"dataset.root={tmp_path}").dataset)
    datasets.check_available(make_cfg("dataset=ring").dataset)  # nothing to look for


def test_digits_are_scikit_learns_without_importing_it(monkeypatch):
    # the bundled file read directly (scikit-learn's import costs ~1.5 s): the same arrays as
    # load_digits, and load_digits itself where the file is not found
    import numpy as np
    from sklearn.datasets import load_digits

    reference = load_digits()
    assert images.digits_file() is not None
    pixels, labels = images.load_digits()
    assert pixels.shape == (1797, 8, 8) and np.array_equal(pixels, reference.images)
    assert np.array_equal(labels, reference.target) and labels.dtype == reference.target.dtype
    monkeypatch.setattr(images, "digits_file", lambda: None)
    pixels, labels = images.load_digits()
    assert np.array_equal(pixels, reference.images) and np.array_equal(labels, reference.target)
