"""Check the evaluation metrics against reference figures on real data, with the runner's own splits.

1. Parzen-window protocol of Goodfellow et al. 2014 (Table 1) with 10,000 REAL training digits as
   the "samples": MNIST train[0:10000] are the kernel centres, sigma is chosen on the first 1,000
   validation digits (train[50000:51000]), the score is the mean log-likelihood of the 10,000 test
   digits. Expected: about 241 ± 2.
2. Real-vs-real floors of FID / KID / precision / recall in the feature space of the classifier
   that gan-train and gan-eval use (the same splits, the same cache): digits (1,500 train / 297
   held out) and MNIST (train[0:50000] trains the classifier; floor: train[0:10000] vs the 10,000
   test digits), with the classifiers' test accuracies and training times.

Usage: python scripts/check_metrics.py [--mnist-root PATH] [--cache-dir PATH]
"""

import argparse
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from gan_cli import data as datasets
from gan_cli.config import schema
from gan_cli.evaluation.features import get_classifier, real_floor
from gan_cli.evaluation.metrics import parzen_log_likelihood

REPO_ROOT = Path(__file__).resolve().parents[1]


def load(name: str, root: Path) -> datasets.Data:
    cfg = OmegaConf.merge(OmegaConf.structured(schema("dataset")), {"name": name, "root": str(root)})
    return datasets.load(cfg, torch.device("cpu"))


def report_floor(data: datasets.Data, n: int, cache_dir) -> None:
    model, info = get_classifier(data.name, data.train, data.train_labels, data.test, data.test_labels,
                                 cache_dir=cache_dir)
    source = "loaded from cache" if info["cached"] else "trained now"
    print(f"{data.name}: classifier test accuracy {info['test_accuracy']:.4f}, "
          f"training took {info['train_seconds']:.1f} s ({source}: {info['path']})")
    start = time.perf_counter()
    floor = real_floor(model, data.train, data.test, n=n)
    sizes = f"train[:{min(n, len(data.train))}] vs test[:{min(n, len(data.test))}]"
    print(f"{data.name}: real-vs-real floor, {sizes}: "
          + ", ".join(f"{key} {value:.4g}" for key, value in floor.items())
          + f" ({time.perf_counter() - start:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist-root", type=Path, default=REPO_ROOT / "../shared/data")
    parser.add_argument("--cache-dir", type=Path, default=None, help="classifier cache folder")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    mnist = load("mnist", args.mnist_root.resolve())

    start = time.perf_counter()
    parzen = parzen_log_likelihood(mnist.train[:10000], mnist.val[:1000], mnist.test)
    print(f"parzen (MNIST, 10,000 real training digits as samples): "
          f"{parzen['ll']:.2f} ± {parzen['se']:.2f}, sigma {parzen['sigma']:.4f} "
          f"({time.perf_counter() - start:.1f} s)")

    report_floor(load("digits", args.mnist_root), n=10000, cache_dir=args.cache_dir)
    report_floor(mnist, n=10000, cache_dir=args.cache_dir)


if __name__ == "__main__":
    main()
