"""Image sets read from files: scikit-learn's bundled digits, and MNIST, Fashion-MNIST and CIFAR-10 in
torchvision's layout (each file checked whole before use)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple, Optional, Tuple

import torch

from gan_cli.config import UserError
from gan_cli.data.base import Data


def _images(name: str, x, y, x_val, x_test, y_test) -> Data:
    return Data(name=name, train=x, shape=tuple(x.shape[1:]), val=x_val, test=x_test, train_labels=y,
                test_labels=y_test)


def digits_file() -> Optional[Path]:
    """scikit-learn's bundled digits, ``sklearn/datasets/data/digits.csv.gz`` (what
    ``sklearn.datasets.load_digits`` reads), found without importing scikit-learn: its import costs
    about 1.5 s (SciPy with it), more than a short run's training. None where it is not there."""
    import importlib.util
    try:
        spec = importlib.util.find_spec("sklearn")
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(root, "datasets", "data", "digits.csv.gz")
        if path.is_file():
            return path
    return None


def load_digits() -> Tuple[Any, Any]:
    """(images (1797, 8, 8) with values 0-16, labels (1797,)) of scikit-learn's digits: its file read
    as ``load_digits`` reads it (gzip, comma-separated, the label last; identical arrays, checked in
    tests/test_data.py), or ``load_digits`` itself where the file is not found."""
    path = digits_file()
    if path is None:
        from sklearn.datasets import load_digits as sklearn_digits
        bunch = sklearn_digits()
        return bunch.images, bunch.target
    import gzip

    import numpy as np
    with gzip.open(path, "rt", encoding="utf-8") as f:
        table = np.loadtxt(f, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)


def digits(cfg) -> Data:
    images, labels = load_digits()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))  # a fixed permutation
    x = (torch.tensor(images, dtype=torch.float32).unsqueeze(1) / 16.0)[order]
    y = torch.tensor(labels)[order]
    held = x[-297:]  # 1,500 to train; the other 297 are both the validation and the test split
    return _images(cfg.name, x[:-297], y[:-297], held, held, y[-297:])


class Files(NamedTuple):
    """A torchvision dataset: its class, its folder under ``dataset.root``, the files that must be there."""

    cls: str
    folder: str
    needed: Tuple[str, ...]
    hold_out: int  # the last training examples that validate instead


_MNIST_FILES = ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")
_MNIST = Files("MNIST", "MNIST/raw", _MNIST_FILES, 10000)
_FASHION = Files("FashionMNIST", "FashionMNIST/raw", _MNIST_FILES, 10000)
_CIFAR10 = Files("CIFAR10", "cifar-10-batches-py", ("data_batch_1", "test_batch"), 5000)
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def check_idx(path: Path, ndim: int) -> int:
    """An IDX file (MNIST's format) whole: magic number 0x0000080N (unsigned bytes, N dimensions), N big-endian
    sizes, then exactly their product of bytes. Returns the number of items; a broken file is a UserError naming it."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4 + 4 * ndim)
    what = f"dataset file {path}"
    if size == 0:
        raise UserError(f"{what} is empty (0 bytes); download it again")
    if len(head) < 4 + 4 * ndim:
        raise UserError(f"{what} is truncated ({size} bytes, shorter than its header); download it again")
    magic = int.from_bytes(head[:4], "big")
    if magic != 0x0800 | ndim:
        raise UserError(f"{what} is not an MNIST-format (IDX) file: magic number {magic:#010x}, expected "
                        f"{0x0800 | ndim:#010x}; download it again")
    dims = [int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + math.prod(dims)
    if size != expected:
        raise UserError(f"{what} has {size} bytes but its header ({' x '.join(map(str, dims))}) says {expected}: "
                        "truncated or corrupt; download it again")
    return dims[0]


def check_files(files: Files, root: Path) -> None:
    """Every file of an MNIST-format or CIFAR set readable as its format says (UserError naming one that is not)."""
    where = root / files.folder
    if files.cls in ("MNIST", "FashionMNIST"):
        for split in ("train", "t10k"):
            present = {kind: where / f"{split}-{kind}-idx{n}-ubyte" for kind, n in (("images", 3), ("labels", 1))}
            if not all(p.is_file() for p in present.values()):
                continue  # torchvision names a missing file itself
            counts = {kind: check_idx(p, 3 if kind == "images" else 1) for kind, p in present.items()}
            if counts["images"] != counts["labels"]:
                raise UserError(f"dataset files {present['images']} and {present['labels']} disagree: "
                                f"{counts['images']} images but {counts['labels']} labels; download them again")
    else:
        import pickle
        for path in [where / name for name in CIFAR_FILES if (where / name).is_file()]:
            try:
                with open(path, "rb") as f:
                    batch = pickle.load(f, encoding="latin1")
                ok = isinstance(batch, dict) and "data" in batch and ("labels" in batch or "fine_labels" in batch)
            except Exception as err:  # unpickling a broken file raises almost anything
                raise UserError(f"dataset file {path} is not a CIFAR batch ({type(err).__name__}); "
                                "download it again") from None
            if not ok:
                raise UserError(f"dataset file {path} is not a CIFAR batch (no data / labels); download it again")


def torchvision(files: Files, cfg) -> Data:
    import torchvision.datasets as tvd
    cls = getattr(tvd, files.cls)
    root = str(Path(cfg.root).expanduser())
    if not cfg.download:
        check_files(files, Path(root))
    try:
        train, test = (cls(root, train=split, download=cfg.download) for split in (True, False))
    except (RuntimeError, OSError) as err:
        raise UserError(f"dataset={cfg.name} could not be read from dataset.root={cfg.root}: {err}") from None

    def pixels(ds):
        x = torch.as_tensor(ds.data)
        x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)  # CIFAR is (N, H, W, C)
        return x.float() / 255.0, torch.as_tensor(ds.targets)

    (x, y), (x_test, y_test) = pixels(train), pixels(test)
    hold = min(files.hold_out, x.shape[0] // 6)
    # MNIST as the paper: train[0:50000] trains, train[50000:60000] validates (no shuffling)
    return _images(cfg.name, x[:-hold], y[:-hold], x[-hold:], x_test, y_test)
