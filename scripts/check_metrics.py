"""Check the evaluation metrics against reference figures on real data.

1. Parzen-window protocol of Goodfellow et al. 2014 (Table 1) with 10,000 REAL training digits as
   the "samples": MNIST train[0:10000] are the kernel centres, sigma is chosen on
   train[50000:51000], the score is the mean log-likelihood of the 10,000 test digits.
   Expected: about 241 ± 2.
2. Real-vs-real floors of FID / KID / precision / recall in the feature space of the domain
   classifier, on scikit-learn's digits (fixed permutation with seed 0: 1,500 train, 297 test) and
   on MNIST (train[0:10000] vs the 10,000 test digits), with the classifiers' test accuracies and
   training times.

Usage: python scripts/check_metrics.py [--mnist-root PATH] [--cache-dir PATH]
"""

import argparse
import time
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torchvision.datasets import MNIST

from gan_cli.features import get_classifier, real_floor
from gan_cli.metrics import parzen_log_likelihood

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_mnist(root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST images as (N, 1, 28, 28) floats in [0, 1] and their labels (torchvision layout)."""
    dataset = MNIST(root=str(root), train=train, download=False)
    return dataset.data.unsqueeze(1).float() / 255, dataset.targets


def load_digits_split() -> tuple[torch.Tensor, ...]:
    """scikit-learn digits as (N, 1, 8, 8) in [0, 1]; seed-0 permutation, 1,500 train / 297 test."""
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16
    y = torch.tensor(bunch.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return x[:1500], y[:1500], x[1500:], y[1500:]


def report_floor(name, train_x, train_y, test_x, test_y, n, cache_dir) -> None:
    model, info = get_classifier(name, train_x, train_y, test_x, test_y, cache_dir=cache_dir)
    source = "loaded from cache" if info["cached"] else "trained now"
    print(
        f"{name}: classifier test accuracy {info['test_accuracy']:.4f}, "
        f"training took {info['train_seconds']:.1f} s ({source}: {info['path']})"
    )
    start = time.perf_counter()
    floor = real_floor(model, train_x, test_x, n=n)
    sizes = f"train[:{min(n, len(train_x))}] vs test[:{min(n, len(test_x))}]"
    print(
        f"{name}: real-vs-real floor, {sizes}: "
        + ", ".join(f"{key} {value:.4g}" for key, value in floor.items())
        + f" ({time.perf_counter() - start:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist-root", type=Path, default=REPO_ROOT / "../shared/data")
    parser.add_argument("--cache-dir", type=Path, default=None, help="classifier cache folder")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    train_x, train_y = load_mnist(args.mnist_root.resolve(), train=True)
    test_x, test_y = load_mnist(args.mnist_root.resolve(), train=False)

    start = time.perf_counter()
    parzen = parzen_log_likelihood(train_x[:10000], train_x[50000:51000], test_x)
    print(
        f"parzen (MNIST, 10,000 real training digits as samples): "
        f"{parzen['ll']:.2f} ± {parzen['se']:.2f}, sigma {parzen['sigma']:.4f} "
        f"({time.perf_counter() - start:.1f} s)"
    )

    report_floor("digits", *load_digits_split(), n=10000, cache_dir=args.cache_dir)
    report_floor("mnist", train_x, train_y, test_x, test_y, n=10000, cache_dir=args.cache_dir)


if __name__ == "__main__":
    main()
