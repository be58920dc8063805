"""An offline feature space for FID, KID and k-NN precision/recall: the penultimate layer of a small CNN trained
once (seeded, cached) on the real training split, as FID is often done for MNIST-like data. Report its test accuracy
and the real-vs-real floor (:func:`real_floor`); the figures are not comparable with published Inception FIDs."""

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
    """CNN for (N, C, S, S) images in [0, 1], S divisible by 4: two blocks of (3×3 convolution, ReLU, 2×2
    max-pooling), ``width`` and 2·``width`` channels, a ReLU feature layer, a linear layer to the class logits."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, num_features: int = 128, width: int = 16):
        super().__init__()
        self.num_features = num_features
        self.body = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Flatten(), nn.Linear(2 * width * (image_size // 4) ** 2, num_features), nn.ReLU())
        self.head = nn.Linear(num_features, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def default_cache_dir() -> Path:
    """``$GAN_CLI_CACHE/classifiers``, else ``$XDG_CACHE_HOME/gan-cli/classifiers``, else ``~/.cache/...``."""
    root = os.getenv("GAN_CLI_CACHE") or Path(os.getenv("XDG_CACHE_HOME") or Path.home() / ".cache", "gan-cli")
    return Path(root).expanduser() / "classifiers"


def get_classifier(name: str, train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
                   cache_dir: str | Path | None = None, seed: int = 0, device: torch.device | str | None = None,
                   steps: int = 1000, batch_size: int = 128, lr: float = 2e-3,
                   progress=None) -> tuple[Classifier, dict]:
    """The classifier of (N, C, S, S) images in [0, 1], trained on first use from ``seed`` (the caller's random
    state untouched: Adam, cosine-decayed lr, minibatches from seeded permutations, ``progress(done, steps)`` 20
    times), then cached with its test accuracy in ``<cache_dir>/<name>-<hash>.pt`` (the hash covers the
    architecture, the data's shapes and sums and the settings). Returns the model (eval mode, frozen, on
    ``device``) and ``{"name", "test_accuracy", "train_seconds", "cached" (loaded, not trained), "path"}``."""
    if train_x.dim() != 4 or train_x.shape[-1] != train_x.shape[-2] or train_x.shape[-1] % 4:
        raise ValueError(f"images must be (N, C, S, S) with S divisible by 4, got {tuple(train_x.shape)}")
    device = torch.device(device) if device is not None else train_x.device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Classifier(train_x.shape[1], train_x.shape[-1], int(train_y.max()) + 1).to(device)
    fingerprint = (tuple(train_x.shape), tuple(test_x.shape), train_x.double().sum().item(), train_y.sum().item(),
                   test_x.double().sum().item())
    key = hashlib.sha256(repr((repr(model), fingerprint, seed, steps, batch_size, lr)).encode()).hexdigest()[:16]
    path = Path(cache_dir or default_cache_dir()).expanduser() / f"{name}-{key}.pt"
    cached = path.exists()
    if cached:
        saved = torch.load(path, map_location=device, weights_only=True)
        model.load_state_dict(saved["state_dict"])
    else:
        log.info("training the feature classifier for %s (once, cached in %s)", name, path.parent)
        start, x, y = time.perf_counter(), train_x.to(device), train_y.to(device)
        generator = torch.Generator().manual_seed(seed)
        order = torch.cat([torch.randperm(len(x), generator=generator)
                           for _ in range(math.ceil(steps * batch_size / len(x)))])
        optimizer = Adam(model.parameters(), lr=lr)  # torch's Adam without its compiler guards (gan_cli.optim.eager)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        every = max(1, steps // 20)
        for i, idx in enumerate(order[: steps * batch_size].view(steps, batch_size).to(device)):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if progress is not None and ((i + 1) % every == 0 or i + 1 == steps):
                progress(i + 1, steps)
        model.eval()
        with torch.no_grad():  # the fraction of test images whose most likely class is their label
            batches = zip(test_x.to(device).split(1000), test_y.to(device).split(1000))
            accuracy = sum((model(xb).argmax(1) == yb).sum() for xb, yb in batches).item() / len(test_y)
        saved = {"test_accuracy": accuracy, "train_seconds": time.perf_counter() - start,
                 "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}}
        with rundir.replacing(path) as tmp:
            torch.save(saved, tmp)
        log.info("feature classifier for %s: test accuracy %.4f, trained in %.0f s", name, accuracy,
                 saved["train_seconds"])
    info = {"name": name, "test_accuracy": saved["test_accuracy"], "train_seconds": saved["train_seconds"],
            "cached": cached, "path": str(path)}
    # eval mode; channels-last convolutions and pooling: the same features (to float32 rounding), several times faster
    return model.eval().requires_grad_(False).to(memory_format=torch.channels_last), info


@torch.inference_mode()
def extract_features(model: Classifier, images: Tensor, batch_size: int = 250) -> Tensor:
    """``model.features`` of images in [0, 1], channels-last, ``batch_size`` at a time: 250 MNIST images make 12.5 MB
    activations, which the allocator reuses; 1,000 make 50 MB ones, mapped afresh each batch (twice as slow)."""
    device = next(model.parameters()).device
    layout = torch.channels_last if images.dim() == 4 else torch.contiguous_format
    return torch.cat([model.features(batch.to(device).contiguous(memory_format=layout))
                      for batch in images.split(batch_size)]).clone()  # clone: an ordinary tensor


class Reference(NamedTuple):
    """The real set's features, the per-dimension mean and std that standardise every set for KID (std 1 for a dead
    unit), and ``cache`` of what every comparison would recompute."""

    features: Tensor
    mean: Tensor
    std: Tensor
    cache: dict

    def cached(self, key, compute):
        if key not in self.cache:
            self.cache[key] = compute()
        return self.cache[key]

    def standardise(self, feats: Tensor) -> Tensor:
        return (feats.to(torch.float64) - self.mean) / self.std


def reference(model: Classifier, images: Tensor) -> Reference:
    feats = extract_features(model, images)
    std = feats.to(torch.float64).std(0)
    return Reference(feats, feats.to(torch.float64).mean(0), torch.where(std > 0, std, torch.ones_like(std)), {})


def compare(ref: Reference, feats: Tensor, size: int, k: int = 3, kid_subsets: int = 100, kid_subset_size: int = 1000,
            batch_size: int = 1000) -> dict[str, float]:
    """FID, KID (and kid_std), precision and recall of ``feats`` against the reference, at sets of ``size``.

    FID and recall grow as the sets shrink (MNIST real vs real: FID 1.85 at 10,000 vs 10,000, 28.1 at 1,500 vs
    297), so a run and its floor must use the same sizes: ``feats`` makes len(feats) // ``size`` disjoint sets
    (the rest left out), FID and recall the means over them. KID (unbiased at any size) is on features
    standardised by the reference's mean and std (the cubic kernel's x·y/d of order one whatever each feature's
    scale); FID and precision/recall on the raw features."""
    sets = len(feats) // size
    if sets < 1:
        raise ValueError(f"{len(feats)} samples cannot make a set of {size}")
    feats = feats[: sets * size]
    stats = ref.cached("gaussian", lambda: gaussian_stats(ref.features))
    fid = torch.stack([frechet_distance(ref.features, part, stats) for part in feats.split(size)]).mean()
    standardised = ref.cached("standardised", lambda: ref.standardise(ref.features))
    sq_radii = ref.cached(("sq_radii", k), lambda: knn_sq_radii(ref.features.to(torch.float64), k, batch_size))
    return {"fid": fid.item(),
            **kid(standardised, ref.standardise(feats), kid_subsets, min(kid_subset_size, size), cache=ref.cache),
            **precision_recall_knn(ref.features, feats, k, batch_size, fake_sets=sets, real_sq_radii=sq_radii)}


def image_metrics(model: Classifier, real_images: Tensor, fake_images: Tensor, size: int | None = None,
                  **kwargs) -> dict[str, float]:
    """:func:`compare` of the images' features at sets of ``size`` (default: one set)."""
    ref, fake = reference(model, real_images), extract_features(model, fake_images)
    return compare(ref, fake, size or len(fake), **kwargs)


def real_floor(model: Classifier, train_x: Tensor, test_x: Tensor, n: int = 10000, **kwargs) -> dict[str, float]:
    """A perfect generator's score: the first ``n`` test vs training images."""
    return image_metrics(model, train_x[:n], test_x[:n], **kwargs)
