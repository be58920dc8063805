#!/usr/bin/env python
"""Write an image set as a folder of PNG files in torchvision's ImageFolder layout (one subfolder per
class), to try ``dataset=folder`` on known data or to benchmark streaming against holding it in memory.

    python scripts/export_images.py OUT --dataset mnist --root ../shared/data [--n 60000]
    python scripts/export_images.py OUT --dataset digits
    python scripts/export_images.py OUT --dataset noise --n 5000   # CIFAR-shaped: 32x32 RGB, uniform noise
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def images(dataset: str, root: str, n=None):
    """(uint8 images (N, H, W) or (N, H, W, 3), labels (N,)) of MNIST's training split, scikit-learn's
    digits, or ``n`` CIFAR-shaped images of uniform noise (for benchmarks: only their shape matters)."""
    if dataset == "noise":
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (n or 5000, 32, 32, 3), dtype=np.uint8), np.zeros(n or 5000, dtype=np.int64)
    if dataset == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return (bunch.images * (255 / 16)).round().astype(np.uint8), bunch.target
    import torchvision.datasets as tvd

    ds = tvd.MNIST(root, train=True, download=False)
    return ds.data.numpy(), ds.targets.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="the folder to write (created)")
    parser.add_argument("--dataset", choices=("mnist", "digits", "noise"), default="mnist")
    parser.add_argument("--root", default="data", help="mnist: the folder that holds MNIST/raw")
    parser.add_argument("--n", type=int, default=None, help="only the first N images")
    args = parser.parse_args()
    x, y = images(args.dataset, args.root, args.n)
    n = len(x) if args.n is None else min(args.n, len(x))
    out = Path(args.out)
    for i in range(n):
        folder = out / str(int(y[i]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i]).save(folder / f"{i:06d}.png")
    print(f"wrote {n} images to {out}")


if __name__ == "__main__":
    main()
