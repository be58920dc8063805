"""Datasets as tensors on the training device, and minibatch sampling there.

Image sets are held whole on the device as float pixels in [0, 1], shape (N, C, H, W); a minibatch
is ``x[torch.randint(...)]`` (uniform sampling with replacement, no Python per sample). A folder of
images too large for that streams from disk instead (:class:`Stream`). Toy sets have a known
density: minibatches are drawn fresh from the mixture, and ``log_prob`` gives log p_data.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Optional, Tuple

import torch

from .config import UserError, choose

log = logging.getLogger("gan_cli")


@dataclass
class Data:
    """What the loop and the monitor need to know about a dataset."""

    name: str
    train: Optional[torch.Tensor]  # image sets: (N, C, H, W) on the device; toy sets: None
    shape: tuple  # shape of one sample: (C, H, W) or (d,)
    val: Optional[torch.Tensor] = None  # held-out split (image sets)
    test: Optional[torch.Tensor] = None
    train_labels: Optional[torch.Tensor] = None
    test_labels: Optional[torch.Tensor] = None
    centres: Optional[torch.Tensor] = None  # toy sets: (modes, d)
    weights: Optional[torch.Tensor] = None  # toy sets: mixing weights (modes,)
    std: float = 0.0  # toy sets: std of every component
    stream: Optional["Stream"] = None  # a folder streamed from disk (train is None then)

    def to(self, device) -> "Data":
        """The same dataset with every tensor on ``device`` (a tensor shared by two splits stays shared)."""
        tensors = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if isinstance(getattr(self, f.name), torch.Tensor)}
        moved: dict = {}
        for t in tensors.values():
            if id(t) not in moved:
                moved[id(t)] = t.to(device)
        return dataclasses.replace(self, **{name: moved[id(t)] for name, t in tensors.items()})

    @property
    def is_image(self) -> bool:
        return self.train is not None or self.stream is not None

    def reference(self, n: int) -> torch.Tensor:
        """``n`` real training images (a fixed choice, the same every call), float pixels on the device."""
        if self.stream is not None:
            return self.stream.reference(n)
        pick = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(0))[:n]
        return self.train[pick.to(self.train.device)]

    def pixel_mean(self) -> torch.Tensor:
        """Each pixel's mean over the training images (a streamed set: over up to 10,000 of them)."""
        x = self.train if self.stream is None else self.stream.reference(10000)
        return x.flatten(1).double().mean(0)

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    def sample(self, m: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """A fresh minibatch of m real examples, drawn on the device."""
        if self.stream is not None:
            return self.stream.batch(m)
        if self.is_image:
            return self.train[torch.randint(self.train.shape[0], (m,), device=self.train.device, generator=generator)]
        comp = torch.multinomial(self.weights, m, replacement=True, generator=generator)
        eps = torch.randn(m, self.centres.shape[1], device=self.centres.device, generator=generator)
        return self.centres[comp] + self.std * eps

    @property
    def has_density(self) -> bool:
        """A toy set with a density (dirac's delta(0) has none)."""
        return not self.is_image and self.std > 0

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p_data(x) of a toy set (isotropic Gaussian mixture), shape (n,)."""
        d = self.centres.shape[1]
        sq = torch.cdist(x, self.centres).pow(2)  # (n, modes)
        log_comp = -sq / (2 * self.std**2) - d * math.log(self.std * math.sqrt(2 * math.pi))
        return torch.logsumexp(log_comp + self.weights.log(), dim=1)


def ring_centres(n_modes: int, radius: float) -> torch.Tensor:
    """Centres at angles 2*pi*i/n, i = 0..n-1 (not linspace(0, 2*pi, n), which repeats a mode)."""
    angle = 2 * math.pi * torch.arange(n_modes, dtype=torch.float64) / n_modes
    return (radius * torch.stack([angle.cos(), angle.sin()], dim=1)).float()


def grid_centres(spacing: float) -> torch.Tensor:
    """The 25 centres {-2s, -s, 0, s, 2s}^2 (PacGAN: s = 2)."""
    axis = spacing * torch.arange(-2, 3, dtype=torch.float32)
    return torch.cartesian_prod(axis, axis)


# -- point sets with a known law ---------------------------------------------------------------


def _mixture(name: str, centres: torch.Tensor, weights: torch.Tensor, std: float) -> Data:
    """An isotropic Gaussian mixture (std 0: point masses at the centres)."""
    return Data(name=name, train=None, shape=(centres.shape[1],), centres=centres, weights=weights / weights.sum(), std=std)


def _ring(cfg) -> Data:
    return _mixture(cfg.name, ring_centres(cfg.n_modes, cfg.radius), torch.ones(cfg.n_modes), float(cfg.std))


def _grid(cfg) -> Data:
    centres = grid_centres(cfg.spacing)
    return _mixture(cfg.name, centres, torch.ones(len(centres)), float(cfg.std))


def _mixture1d(cfg) -> Data:
    centres = torch.tensor(list(cfg.means), dtype=torch.float32).unsqueeze(1)
    return _mixture(cfg.name, centres, torch.tensor(list(cfg.weights), dtype=torch.float32), float(cfg.std))


def _dirac(cfg) -> Data:
    """p_data = delta(0): the Dirac-GAN of Mescheder et al. (2018)."""
    return _mixture(cfg.name, torch.zeros(1, 1), torch.ones(1), 0.0)


# -- image sets ---------------------------------------------------------------------------------


def _split(x: torch.Tensor, y: torch.Tensor, hold_out: int, seed: int = 0):
    """Last ``hold_out`` examples of a fixed permutation become the validation split."""
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    return x[:-hold_out], y[:-hold_out], x[-hold_out:], y[-hold_out:]


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


def _digits(cfg) -> Data:
    images, labels = load_digits()
    x = torch.tensor(images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(labels)
    # 1,500 to train; the other 297 are both the validation and the test split
    x_train, y_train, x_test, y_test = _split(x, y, 297)
    return _images(cfg.name, x_train, y_train, x_test, x_test, y_test)


class Files(NamedTuple):
    """A torchvision dataset: its class, its folder under ``dataset.root``, the files that must be there."""

    cls: str
    folder: str
    needed: Tuple[str, ...]
    hold_out: int  # the last training examples that validate instead


IDX_FILES = {"train-images-idx3-ubyte": 3, "train-labels-idx1-ubyte": 1, "t10k-images-idx3-ubyte": 3,
             "t10k-labels-idx1-ubyte": 1}  # MNIST's files and their number of dimensions
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def check_idx(path: Path, ndim: int) -> int:
    """An IDX file (MNIST's format) whole: magic number 0x0000080N (unsigned bytes, N dimensions),
    N big-endian sizes, then exactly their product of bytes. Returns the number of items; a broken
    file is a UserError naming it."""
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
                raise UserError(f"dataset files {present['images']} and {present['labels']} disagree: {counts['images']} "
                                f"images but {counts['labels']} labels; download them again")
    else:
        import pickle

        for name in CIFAR_FILES:
            path = where / name
            if not path.is_file():
                continue
            try:
                with open(path, "rb") as f:
                    batch = pickle.load(f, encoding="latin1")
                ok = isinstance(batch, dict) and "data" in batch and ("labels" in batch or "fine_labels" in batch)
            except Exception as err:  # unpickling a broken file raises almost anything
                raise UserError(f"dataset file {path} is not a CIFAR batch ({type(err).__name__}); download it again") from None
            if not ok:
                raise UserError(f"dataset file {path} is not a CIFAR batch (no data / labels); download it again")


def _torchvision(files: Files, cfg) -> Data:
    import torchvision.datasets as tvd

    cls = getattr(tvd, files.cls)
    root = str(Path(cfg.root).expanduser())
    if not cfg.download:
        check_files(files, Path(root))
    try:
        train = cls(root, train=True, download=cfg.download)
        test = cls(root, train=False, download=cfg.download)
    except (RuntimeError, OSError) as err:
        raise UserError(f"dataset={cfg.name} could not be read from dataset.root={cfg.root}: {err}") from None

    def pixels(ds):
        x = torch.as_tensor(ds.data)
        x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)  # CIFAR is (N, H, W, C)
        return x.float() / 255.0, torch.as_tensor(ds.targets)

    x, y = pixels(train)
    x_test, y_test = pixels(test)
    hold = min(files.hold_out, x.shape[0] // 6)
    # MNIST as the paper: train[0:50000] trains, train[50000:60000] validates (no shuffling)
    return _images(cfg.name, x[:-hold], y[:-hold], x[-hold:], x_test, y_test)


# -- a folder of images -------------------------------------------------------------------------

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # PIL modes of one-channel images
BOOLEAN = {"true": True, "false": False, "auto": None}  # dataset.in_memory


def read_image(path: str, channels: int, resolution: int) -> torch.Tensor:
    """One image file as uint8 (channels, resolution, resolution): converted to grayscale or RGB, its
    shorter side resized to ``resolution`` (PIL's bicubic filter, antialiased when it shrinks; not at
    all when it already fits), then center-cropped."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB")
    w, h = im.size
    if min(w, h) != resolution:
        scale = resolution / min(w, h)
        w, h = max(resolution, round(w * scale)), max(resolution, round(h * scale))
        im = im.resize((w, h), Image.Resampling.BICUBIC)
    left, top = (w - resolution) // 2, (h - resolution) // 2
    if (w, h) != (resolution, resolution):
        im = im.crop((left, top, left + resolution, top + resolution))
    x = torch.from_numpy(np.array(im, dtype=np.uint8))
    return x.unsqueeze(0) if channels == 1 else x.permute(2, 0, 1).contiguous()


def _batch(items):
    """A DataLoader's collate for ImageFiles.__getitems__, which already returns whole minibatches."""
    return items


class ImageFiles(torch.utils.data.Dataset):
    """The image files of a folder as uint8 tensors. A file that fails to decode is reported (with
    ``substitute``: replaced by the next readable file, so a streamed minibatch keeps its size)."""

    def __init__(self, files, channels: int, resolution: int, substitute: bool):
        self.files, self.channels, self.resolution, self.substitute = list(files), channels, resolution, substitute

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        for j in range(len(self.files)):
            path = self.files[(i + j) % len(self.files)]
            try:
                x = read_image(path, self.channels, self.resolution)
            except Exception as err:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError ...
                if not self.substitute:
                    return torch.zeros(self.channels, self.resolution, self.resolution, dtype=torch.uint8), False
                import warnings

                warnings.warn(f"dataset=folder: skipped {path}, which does not decode ({type(err).__name__})")
                continue
            return (x, True) if not self.substitute else x
        raise RuntimeError("dataset=folder: no file of the folder decodes any more")

    def __getitems__(self, indices):
        """A streamed minibatch as one uint8 tensor (one transfer from a worker, not one per image)."""
        items = [self[i] for i in indices]
        return torch.stack(items) if self.substitute else items


def _workers(cfg) -> int:
    """DataLoader workers: dataset.workers, or (null) one per core but one, at most 8."""
    if cfg.workers is not None:
        return int(cfg.workers)
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device`` now (the GPU's free memory; the system's MemAvailable for the CPU)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def fits_in_memory(n: int, shape: tuple, device: torch.device) -> bool:
    """dataset.in_memory=auto: whether n images of ``shape`` as float32 take at most a quarter of the
    training device's free memory (the rest is for the networks, the evaluation and everything else)."""
    return 4 * n * math.prod(shape) <= free_memory(device) // 4


class Stream:
    """Minibatches of a folder read from disk as training goes: a DataLoader with ``workers``
    processes (uniform sampling with replacement, as the in-memory sets), pinned memory and
    prefetching on a GPU, uint8 pixels to the device and float there."""

    PREFETCH = 4  # minibatches each worker keeps ready

    def __init__(self, files: "ImageFiles", device: torch.device, workers: int):
        self.files, self.device, self.workers = files, device, workers
        self._batches: Optional[Iterator] = None
        self._size = 0
        self._reference: Optional[torch.Tensor] = None

    def _loader(self, m: int, generator: torch.Generator, **kwargs) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            self.files, batch_size=m, num_workers=self.workers, pin_memory=self.device.type == "cuda",
            prefetch_factor=self.PREFETCH if self.workers else None, persistent_workers=self.workers > 0,
            generator=generator, **kwargs)

    def batch(self, m: int) -> torch.Tensor:
        """The next minibatch of m images, float pixels in [0, 1] on the device."""
        if self._batches is None or m != self._size:
            # the draw order: seeded from the training's random stream (so a seed gives one run)
            seed = int(torch.randint(2**62, (1,)))
            gen = torch.Generator().manual_seed(seed)
            sampler = torch.utils.data.RandomSampler(self.files, replacement=True, num_samples=sys.maxsize // 2,
                                                     generator=gen)
            self._batches, self._size = iter(self._loader(m, gen, sampler=sampler, drop_last=True, collate_fn=_batch)), m
        x = next(self._batches)
        return x.to(self.device, non_blocking=True).float().div_(255)

    def reference(self, n: int) -> torch.Tensor:
        """n images of the folder (a fixed random choice, read once), float pixels on the device."""
        if self._reference is None or len(self._reference) < min(n, len(self.files)):
            pick = torch.randperm(len(self.files), generator=torch.Generator().manual_seed(0))[:n].tolist()
            subset = torch.utils.data.Subset(self.files, pick)
            loader = torch.utils.data.DataLoader(subset, batch_size=256, num_workers=self.workers, collate_fn=_batch)
            self._reference = torch.cat(list(loader)).to(self.device)
        return self._reference[:n].float().div(255)


def _scan(cfg) -> Tuple[list, int, int]:
    """The folder's readable image files (by their headers), their channels (1 or 3) and how many
    files were skipped. Raises UserError when the folder holds none."""
    from PIL import Image

    root = Path(cfg.root).expanduser()
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"dataset.root={cfg.root} holds no image files ({', '.join(IMAGE_SUFFIXES)}, in it or its "
                        "subfolders); pass dataset.root=<folder of images>")
    readable, unreadable, gray = [], [], True
    for path in files:
        try:
            with Image.open(path) as im:
                gray = gray and im.mode in GRAY_MODES
            readable.append(str(path))
        except Exception:
            unreadable.append(str(path))
    if not readable:
        raise UserError(f"dataset.root={cfg.root}: none of its {len(files)} image files can be read (e.g. {files[0]})")
    channels = cfg.channels if cfg.channels is not None else (1 if gray else 3)
    return readable, channels, unreadable


def _folder(cfg, device: torch.device = torch.device("cpu")) -> Data:
    """A folder of .png / .jpg images (flat, or torchvision's ImageFolder layout: one subfolder per
    class, the labels unused), at dataset.resolution, grayscale or RGB (dataset.channels, or detected:
    RGB unless every file is grayscale). Whole on the device when dataset.in_memory says so (auto: when
    it fits, see fits_in_memory), else streamed."""
    files, channels, unreadable = _scan(cfg)
    r = int(cfg.resolution)
    shape = (channels, r, r)
    in_memory = BOOLEAN[str(cfg.in_memory).lower()]
    if in_memory is None:
        in_memory = fits_in_memory(len(files), shape, device)
    workers = _workers(cfg)
    bad = list(unreadable)
    if in_memory:
        images = ImageFiles(files, channels, r, substitute=False)
        loader = torch.utils.data.DataLoader(images, batch_size=256, num_workers=workers)
        parts, oks = zip(*loader)
        ok = torch.cat(oks)
        bad += [files[i] for i in (~ok).nonzero().flatten().tolist()]
        if not bool(ok.any()):
            raise UserError(f"dataset.root={cfg.root}: none of its {len(files)} image files decodes (e.g. {files[0]})")
        x = torch.cat(parts)[ok]
    if bad:
        log.warning("dataset.root=%s: skipped %d of %d image files that cannot be read (e.g. %s)", cfg.root, len(bad),
                    len(files) + len(unreadable), bad[0])
    if in_memory:
        x = x.float().div_(255)
        log.info("dataset=folder: %d images of %s held in memory", len(x), "x".join(map(str, shape)))
        return Data(name=cfg.name, train=x, shape=shape)
    threads = ""
    # on the CPU the workers decode on cores of their own and training keeps the rest (OMP_NUM_THREADS, when
    # set, is the user's choice and stays: a heavy network whose decoding is light may want every core)
    if device.type == "cpu" and workers > 0 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - workers))
        threads = f"; training uses {torch.get_num_threads()} CPU threads"
    log.info("dataset=folder: %d images of %s streamed from disk by %d workers%s", len(files),
             "x".join(map(str, shape)), workers, threads)
    stream = Stream(ImageFiles(files, channels, r, substitute=True), device, workers)
    return Data(name=cfg.name, train=None, shape=shape, stream=stream)


# -- the choices of dataset= --------------------------------------------------------------------


class Dataset(NamedTuple):
    """A choice of ``dataset=``: how to load it and what it is (a new dataset: a loader, an entry, a YAML)."""

    load: Callable[..., Data]  # the dataset config node -> Data on the CPU (streams=True: and the device)
    families: Tuple[str, ...]  # metric families that fit it: image, density (known p_data), modes (ring, grid)
    dim: Optional[int] = None  # point sets: the dimension of a sample (None: images)
    files: Optional[Files] = None  # torchvision sets: what must be under dataset.root
    streams: bool = False  # may stream from disk: its loader also takes the training device


_MNIST_FILES = ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte")
_MNIST = Files("MNIST", "MNIST/raw", _MNIST_FILES, 10000)
_FASHION = Files("FashionMNIST", "FashionMNIST/raw", _MNIST_FILES, 10000)
_CIFAR10 = Files("CIFAR10", "cifar-10-batches-py", ("data_batch_1", "test_batch"), 5000)

DATASETS = {
    "digits": Dataset(_digits, ("image",)),
    "mnist": Dataset(partial(_torchvision, _MNIST), ("image",), files=_MNIST),
    "fashion_mnist": Dataset(partial(_torchvision, _FASHION), ("image",), files=_FASHION),
    "cifar10": Dataset(partial(_torchvision, _CIFAR10), ("image", "rgb"), files=_CIFAR10),
    "folder": Dataset(_folder, ("rgb",), streams=True),
    "ring": Dataset(_ring, ("density", "modes"), dim=2),
    "grid": Dataset(_grid, ("density", "modes"), dim=2),
    "mixture1d": Dataset(_mixture1d, ("density",), dim=1),
    "dirac": Dataset(_dirac, (), dim=1),
}


def spec(name: str) -> Dataset:
    """The entry of ``dataset=name``; an unknown name is a UserError that lists the choices."""
    return choose(DATASETS, name, "dataset", "a dataset")


def check_available(cfg) -> None:
    """Fail early, naming the folder, when an image set's files are not where cfg says."""
    if spec(cfg.name).streams:
        if not Path(cfg.root).expanduser().is_dir():
            raise UserError(f"dataset.root={cfg.root} is not a folder; pass dataset.root=<folder of .png/.jpg images>")
        return
    files = spec(cfg.name).files
    if files is None or cfg.download:
        return
    where = Path(cfg.root).expanduser() / files.folder
    missing = [f for f in files.needed if not (where / f).exists()]
    if missing:
        raise UserError(
            f"dataset.root={cfg.root} holds no {cfg.name}: looked for {where / missing[0]}; "
            f"pass dataset.root=<folder that contains {files.folder.split('/')[0]}/> or dataset.download=true to fetch it"
        )


def load(cfg, device: torch.device) -> Data:
    """Build the dataset named by ``cfg`` (the dataset config node) on ``device``."""
    check_available(cfg)
    entry = spec(cfg.name)
    if entry.streams:
        data = entry.load(cfg, device)
        return data if data.stream is not None else data.to(device)
    return entry.load(cfg).to(device)


def noise(kind: str, m: int, z_dim: int, device, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """z ~ p_z: uniform on (-sqrt 3, sqrt 3) (unit variance, the paper's choice) or standard normal."""
    if kind == "uniform":
        return (torch.rand(m, z_dim, device=device, generator=generator) * 2 - 1) * math.sqrt(3.0)
    return torch.randn(m, z_dim, device=device, generator=generator)

