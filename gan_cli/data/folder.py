"""A folder of your own images: read whole into memory when it fits, else streamed from disk."""

from __future__ import annotations

import logging
import math
import os
import struct
import sys
import warnings
from pathlib import Path
from typing import Iterator, Optional, Tuple

import torch

from gan_cli.config import UserError
from gan_cli.data import base
from gan_cli.data.base import Data

log = logging.getLogger("gan_cli")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")  # PIL modes of one-channel images


def undecodable() -> tuple:
    """What Pillow raises for a file it cannot read: not an image, truncated, corrupt, or a decompression bomb."""
    from PIL import Image
    return OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError


def read_image(path: str, channels: int, resolution: int) -> torch.Tensor:
    """One image file as uint8 (channels, resolution, resolution): converted to grayscale or RGB (16-bit
    samples scaled to 8 bits, not clipped), its centered square resized to ``resolution`` (PIL's bicubic
    filter, antialiased when it shrinks; not at all when it already fits). The square is cut from the source
    first, so a very long, thin image costs no more than its own pixels."""
    import numpy as np
    from PIL import Image
    with Image.open(path) as im:
        if im.mode.startswith("I"):  # 16-bit (or 32-bit integer) gray: by its depth, as 0-65535
            im = Image.fromarray((np.asarray(im, dtype=np.float64) / 257).clip(0, 255).round().astype(np.uint8))
        im = im.convert("L" if channels == 1 else "RGB")
    side = min(im.size)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    box = (left, top, left + side, top + side)
    im = im.crop(box) if side == resolution else im.resize((resolution, resolution), Image.Resampling.BICUBIC, box=box)
    x = torch.from_numpy(np.array(im, dtype=np.uint8))
    return x.unsqueeze(0) if channels == 1 else x.permute(2, 0, 1).contiguous()


def loader(dataset, workers: int, **kwargs) -> torch.utils.data.DataLoader:
    """A DataLoader whose workers start by the platform's own method, also inside a process of a pool that set
    another (a job of a joblib sweep runs in a loky worker, whose start method cannot start them)."""
    import multiprocessing

    standard = multiprocessing.get_all_start_methods()  # the platform's default first
    method = multiprocessing.get_start_method(allow_none=True)
    context = multiprocessing.get_context(standard[0]) if workers and method not in (None, *standard) else None
    return torch.utils.data.DataLoader(dataset, num_workers=workers, multiprocessing_context=context, **kwargs)


def _batch(items):  # the collate of ImageFiles.__getitems__, which already returns whole minibatches
    return items


class ImageFiles(torch.utils.data.Dataset):
    """The image files of a folder as uint8 tensors. A file that fails to decode is reported (with
    ``substitute``: replaced by the next readable file, so a streamed minibatch keeps its size)."""

    NAMED = 5  # skipped files named in warnings, per worker

    def __init__(self, files, channels: int, resolution: int, substitute: bool):
        self.files, self.channels, self.resolution, self.substitute = list(files), channels, resolution, substitute
        self.skipped = 0  # files that failed to decode here (each worker counts its own)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        for j in range(len(self.files)):
            path = self.files[(i + j) % len(self.files)]
            try:
                x = read_image(path, self.channels, self.resolution)
            except undecodable() as err:
                if not self.substitute:
                    return torch.zeros(self.channels, self.resolution, self.resolution, dtype=torch.uint8), False
                self.skipped += 1
                if self.skipped <= self.NAMED:  # about a file, not a caller: reported here (a few per worker)
                    more = " (further files that fail are not named)" if self.skipped == self.NAMED else ""
                    warnings.warn(f"dataset=folder: skipped {path}, which does not decode ({type(err).__name__}){more}",
                                  stacklevel=1)
                continue
            return (x, True) if not self.substitute else x
        return None  # no file decodes any more: the minibatch is None (Stream.batch says so)

    def __getitems__(self, indices):
        """A streamed minibatch as one uint8 tensor (one transfer from a worker, not one per image)."""
        items = [self[i] for i in indices]
        if not self.substitute:
            return items
        return None if any(x is None for x in items) else torch.stack(items)


class Stream:
    """Minibatches read from disk as training goes: a DataLoader of ``workers`` processes (uniform sampling with
    replacement, as in memory), pinned memory and prefetching on a GPU, uint8 to the device and float there."""

    PREFETCH = 4  # minibatches each worker keeps ready

    def __init__(self, files: "ImageFiles", device: torch.device, workers: int):
        self.files, self.device, self.workers = files, device, workers
        self._batches: Optional[Iterator] = None
        self._size = 0
        self._reference: Optional[torch.Tensor] = None

    def batch(self, m: int) -> torch.Tensor:
        """The next minibatch of m images, float pixels in [0, 1] on the device."""
        if self._batches is None or m != self._size:
            # the draw order: seeded from the training's random stream (so a seed gives one run)
            gen = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))
            sampler = torch.utils.data.RandomSampler(self.files, replacement=True, num_samples=sys.maxsize // 2,
                                                     generator=gen)
            batches = loader(
                self.files, self.workers, batch_size=m, pin_memory=self.device.type == "cuda",
                prefetch_factor=self.PREFETCH if self.workers else None, persistent_workers=self.workers > 0,
                generator=gen, sampler=sampler, drop_last=True, collate_fn=_batch)
            self._batches, self._size = iter(batches), m
        return self._decoded(next(self._batches)).to(self.device, non_blocking=True).float().div_(255)

    def _decoded(self, x: Optional[torch.Tensor]) -> torch.Tensor:
        if x is None:
            files = self.files.files
            raise UserError(f"dataset=folder: none of the {len(files)} image files decodes any more (e.g. {files[0]}): "
                            "they were moved, unmounted or damaged during the run; the last checkpoint is kept")
        return x

    def reference(self, n: int) -> torch.Tensor:
        """n images of the folder (a fixed random choice, read once), float pixels on the device."""
        if self._reference is None or len(self._reference) < min(n, len(self.files)):
            pick = torch.randperm(len(self.files), generator=torch.Generator().manual_seed(0))[:n].tolist()
            parts = loader(torch.utils.data.Subset(self.files, pick), self.workers, batch_size=256, collate_fn=_batch)
            self._reference = torch.cat([self._decoded(x) for x in parts]).to(self.device)
        return self._reference[:n].float().div(255)


def _scan(cfg) -> Tuple[list, int, int]:
    """The folder's readable image files (by their headers), their channels (1 or 3) and the unreadable
    files. Raises UserError when the folder holds none."""
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
        except undecodable():
            unreadable.append(str(path))
    if not readable:
        raise UserError(f"dataset.root={cfg.root}: none of its {len(files)} image files can be read (e.g. {files[0]})")
    return readable, cfg.channels if cfg.channels is not None else (1 if gray else 3), unreadable


def folder(cfg, device: torch.device = torch.device("cpu")) -> Data:
    """A folder of .png / .jpg images (flat, or ImageFolder's one subfolder per class, labels unused), at
    dataset.resolution, dataset.channels (null: RGB unless every file is grayscale); whole on the device when
    dataset.in_memory says so (auto: when the float32 images take at most a quarter of the device's free memory),
    else streamed."""
    files, channels, unreadable = _scan(cfg)
    r = int(cfg.resolution)
    shape = (channels, r, r)
    mode = str(cfg.in_memory).lower()  # true, false or auto (the config's check)
    in_memory = mode == "true" or (mode == "auto" and 4 * len(files) * math.prod(shape) * 4 <= base.free_memory(device))
    # dataset.workers, or (null) one per core but one, at most 8
    workers = int(cfg.workers) if cfg.workers is not None else max(0, min(8, (os.cpu_count() or 1) - 1))
    bad = list(unreadable)
    if in_memory:
        parts, oks = zip(*loader(ImageFiles(files, channels, r, substitute=False), workers, batch_size=256))
        ok = torch.cat(oks)
        bad += [files[i] for i in (~ok).nonzero().flatten().tolist()]
        if not bool(ok.any()):
            raise UserError(f"dataset.root={cfg.root}: none of its {len(files)} image files decodes (e.g. {files[0]})")
        x = torch.cat(parts)[ok].float().div_(255)
    if bad:
        log.warning("dataset.root=%s: skipped %d of %d image files that cannot be read (e.g. %s)", cfg.root, len(bad),
                    len(files) + len(unreadable), bad[0])
    if in_memory:
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
    return Data(name=cfg.name, train=None, shape=shape,
                stream=Stream(ImageFiles(files, channels, r, substitute=True), device, workers))
