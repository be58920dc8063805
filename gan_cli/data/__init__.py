"""The choices of ``dataset=``: each set's loader, the knobs it reads and what it is, registered with
the settings; and loading the chosen one onto the training device."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Optional, Tuple

import torch

from gan_cli.config import Knob, UserError, entry, flag, free, integer, one_of, real, reals, register, share, text
from gan_cli.data import folder, images, toys
from gan_cli.data.base import Data, free_memory, noise

__all__ = ["Data", "Dataset", "DATASETS", "check_available", "free_memory", "load", "noise", "spec"]


class Dataset(NamedTuple):
    """A choice of ``dataset=``: how to load it, the knobs it reads and what it is."""

    load: Callable[..., Data]  # the dataset config node -> Data on the CPU (streams=True: and the device)
    families: Tuple[str, ...]  # metric families that fit it: image, rgb, density (known p_data), modes (ring, grid)
    about: str = ""
    knobs: Mapping[str, Knob] = {}  # the dataset.* settings it reads
    dim: Optional[int] = None  # point sets: the dimension of a sample (None: images)
    files: Optional[images.Files] = None  # torchvision sets: what must be under dataset.root (can be downloaded)
    streams: bool = False  # may stream from disk: its loader also takes the training device
    check: Optional[Callable[[Any], None]] = None  # the run config -> UserError where its knobs do not fit together


ROOT = {"root": text("data", "the folder that holds MNIST/, FashionMNIST/, cifar-10-batches-py/ (folder: the images)",
                     "path")}
FILES = {**ROOT, "download": flag(False, "let torchvision fetch the files (needs the network)")}
FOLDER = {**ROOT,
          "resolution": integer(32, 4, 1024, "each image's centered square resized to this side"),
          "channels": one_of(None, (1, 3), "1 (grayscale) or 3 (RGB)", null="RGB unless every file is grayscale"),
          "in_memory": one_of("auto", ("auto", "true", "false"),
                              "true: whole on the device; false: streamed from disk; auto: in memory if it fits"),
          "workers": integer(None, 0, 64, "DataLoader worker processes", null="one per CPU core but one, at most 8")}
STD = {"std": real(0.01, 0, 100, "standard deviation of every component", lo_open=True)}


def _same_length(cfg) -> None:
    ds = cfg.dataset
    if len(ds.means) != len(ds.weights):
        raise UserError(f"dataset.means={list(ds.means)} / dataset.weights={list(ds.weights)} are not allowed: "
                        "give as many positive weights as means")


def _torchvision(files: images.Files, about: str, families: Tuple[str, ...] = ("image",)) -> Dataset:
    return Dataset(partial(images.torchvision, files), families, about, FILES, files=files)


share("dataset", {"recipe": free({}, "settings it trains with, applied where the command line, the preset and the "
                                   "loss's recipe chose nothing")})
# The choices of dataset=. A new dataset is a loader and one register(...) here (its knobs beside it),
# and a YAML file in conf/dataset/ where it has defaults of its own.
DATASETS = {name: register("dataset", name, d) for name, d in {
    "digits": Dataset(images.digits, ("image",),
                      "scikit-learn's 1,797 8x8 digits, 1,500 train / 297 held out (bundled: no download)"),
    "mnist": _torchvision(images._MNIST, "MNIST in torchvision's layout under dataset.root (download=true fetches it)"),
    "fashion_mnist": _torchvision(images._FASHION, "Fashion-MNIST, the same way"),
    "cifar10": _torchvision(images._CIFAR10, "CIFAR-10, the same way (RGB)", ("image", "rgb")),
    "folder": Dataset(folder.folder, ("rgb",), "your own images: a folder of .png / .jpg files (see Your own images)",
                      FOLDER, streams=True),
    "ring": Dataset(toys.ring, ("density", "modes"), "8 Gaussians on a circle of radius 1, std 0.01 (PacGAN)",
                    {"n_modes": integer(8, 1, 1000, "number of Gaussians on the circle"),
                     "radius": real(1.0, 0, 1000, "circle radius", lo_open=True), **STD}, dim=2),
    "grid": Dataset(toys.grid, ("density", "modes"), "25 Gaussians on {-4..4}^2, std 0.05 (PacGAN)",
                    {"spacing": real(2.0, 0, 1000, "distance between neighbouring centres", lo_open=True), **STD},
                    dim=2),
    "mixture1d": Dataset(toys.mixture1d, ("density",), "two Gaussians on a line (the paper's Figure 1)",
                         {"means": reals([-2.0, 2.0], -1000, 1000, "the components' means"),
                          "weights": reals([0.5, 0.5], 0, 1e6, "their mixing weights", lo_open=True), **STD},
                         dim=1, check=_same_length),
    "dirac": Dataset(toys.dirac, (), "all data at the point 0 (the Dirac-GAN)", dim=1),
}.items()}


def spec(name: str) -> Dataset:
    """The entry of ``dataset=name``; an unknown name is a UserError that lists the choices."""
    return entry("dataset", name)


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
        raise UserError(f"dataset.root={cfg.root} holds no {cfg.name}: looked for {where / missing[0]}; "
                        f"pass dataset.root=<folder that contains {files.folder.split('/')[0]}/> "
                        "or dataset.download=true to fetch it")


def load(cfg, device: torch.device) -> Data:
    """Build the dataset named by ``cfg`` (the dataset config node) on ``device``."""
    check_available(cfg)
    entry = spec(cfg.name)
    data = entry.load(cfg, device) if entry.streams else entry.load(cfg)
    return data if data.stream is not None else data.to(device)
