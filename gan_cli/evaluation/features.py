"""An offline feature space for image metrics: a small CNN classifier of the real data.

Inception-based FID needs pretrained weights fetched over the network. Instead, a small classifier
is trained once on the real training split with a fixed seed and cached; its penultimate layer is
the feature space for the Fréchet distance, KID and k-NN precision/recall (the domain-classifier
variant of FID used for MNIST-like data). Its test accuracy is reported with it, and so should be
the real-vs-real floor (:func:`real_floor`), measured at the same sample sizes as the figures it
sits beside (:func:`compare`). These values are not comparable with published Inception-FID values.
"""

import hashlib
import logging
import math
import os
import time
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from gan_cli.evaluation.metrics import frechet_distance, gaussian_stats, kid, knn_sq_radii, precision_recall_knn
from gan_cli.game.optim import Adam
from gan_cli.runs import rundir

log = logging.getLogger("gan_cli")


class Classifier(nn.Module):
    """CNN for (N, C, S, S) images in [0, 1], S divisible by 4 (8×8, 28×28, 32×32).

    Two blocks of (3×3 convolution, ReLU, 2×2 max-pooling) with ``width`` and 2·``width``
    channels, a ReLU layer of ``num_features`` units (the feature layer), and a linear layer to
    the class logits.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        num_features: int = 128,
        width: int = 16,
    ):
        super().__init__()
        self.num_features = num_features
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * (image_size // 4) ** 2, num_features),
            nn.ReLU(),
        )
        self.head = nn.Linear(num_features, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate-layer activations, (N, num_features)."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits, (N, num_classes)."""
        return self.head(self.body(x))


def default_cache_dir() -> Path:
    """Where trained classifiers are kept: ``$GAN_CLI_CACHE/classifiers`` when that variable is
    set, else ``$XDG_CACHE_HOME/gan-cli/classifiers``, else ``~/.cache/gan-cli/classifiers``."""
    root = os.environ.get("GAN_CLI_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "gan-cli"
    )
    return Path(root).expanduser() / "classifiers"


def _cache_key(model: nn.Module, *parts) -> str:
    """Short hash of the architecture and everything else that determines the trained weights."""
    return hashlib.sha256(repr((repr(model), *parts)).encode()).hexdigest()[:16]


def _train(model, x, y, seed: int, steps: int, batch_size: int, lr: float, progress=None) -> None:
    """Adam with a cosine-decayed learning rate; minibatches from seeded per-epoch permutations;
    ``progress(done, steps)`` twenty times along the way."""
    generator = torch.Generator().manual_seed(seed)
    epochs = math.ceil(steps * batch_size / len(x))
    order = torch.cat([torch.randperm(len(x), generator=generator) for _ in range(epochs)])
    batches = order[: steps * batch_size].view(steps, batch_size).to(x.device)
    optimizer = Adam(model.parameters(), lr=lr)  # torch's Adam without its compiler guards (gan_cli.optim.eager)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    model.train()
    every = max(1, steps // 20)
    for i, idx in enumerate(batches):
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if progress is not None and ((i + 1) % every == 0 or i + 1 == steps):
            progress(i + 1, steps)
    model.eval()


@torch.no_grad()
def _accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``x`` whose most likely class is ``y``."""
    batches = zip(x.split(batch_size), y.split(batch_size))
    return sum((model(xb).argmax(1) == yb).sum() for xb, yb in batches).item() / len(y)


def get_classifier(
    name: str,
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    steps: int = 1000,
    batch_size: int = 128,
    lr: float = 2e-3,
    progress=None,
) -> tuple[Classifier, dict]:
    """The classifier of a dataset, trained on first use and loaded from the cache afterwards.

    ``train_x``/``test_x`` are (N, C, S, S) float images in [0, 1], ``*_y`` integer labels.
    Training: ``steps`` Adam steps on minibatches of ``batch_size`` with weights initialised and
    batches drawn from ``seed`` (the caller's random state is left untouched). The state_dict and
    the test accuracy are saved to ``<cache_dir>/<name>-<hash>.pt`` (``cache_dir`` defaults to
    :func:`default_cache_dir`), the hash covering the architecture, data shapes and sums, seed and
    training settings; written atomically (rundir.replacing), read with ``weights_only=True``.

    Returns the model (eval mode, frozen, on ``device``, default that of ``train_x``) and
    ``{"name", "test_accuracy", "train_seconds", "cached", "path"}``; ``cached`` tells whether the
    weights were loaded rather than trained, ``train_seconds`` is the time the training took.
    Training (once) is announced in the log, and ``progress(done, steps)`` follows it.
    """
    if train_x.dim() != 4 or train_x.shape[-1] != train_x.shape[-2] or train_x.shape[-1] % 4:
        raise ValueError(f"images must be (N, C, S, S) with S divisible by 4, got {tuple(train_x.shape)}")
    device = torch.device(device) if device is not None else train_x.device
    num_classes = int(train_y.max()) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Classifier(train_x.shape[1], train_x.shape[-1], num_classes)
    model.to(device)
    fingerprint = (tuple(train_x.shape), tuple(test_x.shape), train_x.double().sum().item(), train_y.sum().item(),
                   test_x.double().sum().item())
    key = _cache_key(model, fingerprint, seed, steps, batch_size, lr)
    path = Path(cache_dir or default_cache_dir()).expanduser() / f"{name}-{key}.pt"
    cached = path.exists()
    if cached:
        saved = torch.load(path, map_location=device, weights_only=True)
        model.load_state_dict(saved["state_dict"])
        model.eval()
    else:
        log.info("training the feature classifier for %s (once, cached in %s)", name, path.parent)
        start = time.perf_counter()
        _train(model, train_x.to(device), train_y.to(device), seed, steps, batch_size, lr, progress)
        saved = {"test_accuracy": _accuracy(model, test_x.to(device), test_y.to(device)),
                 "train_seconds": time.perf_counter() - start,
                 "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}}
        with rundir.replacing(path) as tmp:
            torch.save(saved, tmp)
        log.info("feature classifier for %s: test accuracy %.4f, trained in %.0f s", name, saved["test_accuracy"],
                 saved["train_seconds"])
    info = {"name": name, "test_accuracy": saved["test_accuracy"], "train_seconds": saved["train_seconds"],
            "cached": cached, "path": str(path)}
    # channels-last convolutions and pooling: the same features (to float32 rounding), several times faster
    return model.requires_grad_(False).to(memory_format=torch.channels_last), info


@torch.inference_mode()
def extract_features(model: Classifier, images: Tensor, batch_size: int = 250) -> Tensor:
    """``model.features`` of (N, C, S, S) images in [0, 1], computed on the model's device in
    channels-last layout, ``batch_size`` images at a time. The features agree to float32 rounding
    whatever the batch size (on a 2-core x86 CPU bit for bit from 50 images a batch). 250 MNIST images
    make 12.5 MB activations, which the allocator reuses; 1,000 make 50 MB ones, mapped afresh for
    every batch, which took twice as long on that CPU."""
    device = next(model.parameters()).device
    layout = torch.channels_last if images.dim() == 4 else torch.contiguous_format
    return torch.cat([model.features(batch.to(device).contiguous(memory_format=layout))
                      for batch in images.split(batch_size)]).clone()  # clone: an ordinary tensor


class Reference(NamedTuple):
    """The real reference set in feature space, computed once: the features, and the per-dimension mean
    and std that standardise every set for KID (std 1 where the reference is constant: a dead unit).
    ``cache`` keeps what every comparison with it would recompute: its Gaussian statistics (FID),
    its standardised features and the kernel sums of its KID subsets, its k-NN radii (precision)."""

    features: Tensor
    mean: Tensor
    std: Tensor
    cache: dict

    def cached(self, key, compute):
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def standardise(self, feats: Tensor) -> Tensor:
        """(feats - mean) / std, float64."""
        return (feats.to(torch.float64) - self.mean) / self.std


def reference(model: Classifier, images: Tensor, batch_size: int = 250) -> Reference:
    """The :class:`Reference` of real ``images``."""
    feats = extract_features(model, images, batch_size)
    std = feats.to(torch.float64).std(0)
    return Reference(feats, feats.to(torch.float64).mean(0), torch.where(std > 0, std, torch.ones_like(std)), {})


def compare(
    ref: Reference,
    feats: Tensor,
    size: int,
    k: int = 3,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    batch_size: int = 1000,
) -> dict[str, float]:
    """FID, KID and k-NN precision/recall of the feature set ``feats`` against the reference, at sets of ``size``.

    FID and recall grow as the sets shrink (MNIST real vs real: FID 1.85 at 10,000 vs 10,000, 7.44
    at 1,500 vs 10,000, 28.1 at 1,500 vs 297), so figures compared with each other (a run and its
    floor) must use the same sizes. ``feats`` is split into len(feats) // ``size`` disjoint sets of
    ``size`` rows (the rest is left out): FID and recall are the means over the sets; precision
    does not depend on the grouping. KID (:func:`~gan_cli.metrics.kid`, unbiased at any size) is on
    features standardised by the reference's per-dimension mean and std, so the cubic kernel's
    argument x·y/d is of order one whatever the scale of each feature; its subsets have
    min(``kid_subset_size``, size, len(reference)) rows, drawn from all the sets. FID and
    precision/recall (k-th neighbour ``k``; Kynkäänniemi et al. 2019) are on the raw features.
    Returns ``{"fid", "kid", "kid_std", "precision", "recall"}``.
    """
    sets = len(feats) // size
    if sets < 1:
        raise ValueError(f"{len(feats)} samples cannot make a set of {size}")
    feats = feats[: sets * size]
    stats = ref.cached("gaussian", lambda: gaussian_stats(ref.features))
    fid = torch.stack([frechet_distance(ref.features, part, stats) for part in feats.split(size)]).mean()
    standardised = ref.cached("standardised", lambda: ref.standardise(ref.features))
    sq_radii = ref.cached(("sq_radii", k), lambda: knn_sq_radii(ref.features.to(torch.float64), k, batch_size))
    return {
        "fid": fid.item(),
        **kid(standardised, ref.standardise(feats), kid_subsets, min(kid_subset_size, size), cache=ref.cache),
        **precision_recall_knn(ref.features, feats, k, batch_size, fake_sets=sets, real_sq_radii=sq_radii),
    }


def image_metrics(
    model: Classifier,
    real_images: Tensor,
    fake_images: Tensor,
    size: int | None = None,
    **kwargs,
) -> dict[str, float]:
    """:func:`compare` of ``fake_images`` with ``real_images`` as the reference, in ``model``'s feature
    space, at sets of ``size`` (default: all the fakes, one set). ``kwargs`` go to :func:`compare`.
    Returns ``{"fid", "kid", "kid_std", "precision", "recall"}``.
    """
    ref, fake = reference(model, real_images), extract_features(model, fake_images)
    return compare(ref, fake, size or len(fake), **kwargs)


def real_floor(
    model: Classifier, train_x: Tensor, test_x: Tensor, n: int = 10000, **kwargs
) -> dict[str, float]:
    """:func:`image_metrics` of the first ``n`` test images against the first ``n`` training images.

    The real-vs-real floor: what a perfect generator would score with samples of the same size
    (``min(n, len(test_x))`` against the same reference). ``kwargs`` go to :func:`compare`.
    """
    return image_metrics(model, train_x[:n], test_x[:n], **kwargs)
