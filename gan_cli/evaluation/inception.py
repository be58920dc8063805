"""Inception FID and KID (published GAN numbers' feature space) from a LOCAL weights file,
``eval.inception_weights=/path/to/pt_inception-2015-12-05-6726825d.pth``: torch-fidelity's port of the FID paper's
Inception-v3 reads the pixels as uint8 RGB; torchmetrics' FID and KID keep the real features between evaluations.
Needs ``pip install 'gan-cli[inception]'``."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Dict

import torch
from torch import nn

from gan_cli.config import UserError, first_line

WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"  # torch-fidelity's release file of the FID Inception
SOURCE = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + WEIGHTS
FEATURES = 2048


def _libraries():
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance
        from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE
    except ImportError:
        _TORCH_FIDELITY_AVAILABLE = False
    if not _TORCH_FIDELITY_AVAILABLE:
        raise UserError("eval.inception_weights needs torchmetrics and torch-fidelity: "
                        "pip install 'gan-cli[inception]'")
    return FrechetInceptionDistance, KernelInceptionDistance


def network(path: str) -> nn.Module:
    """torch-fidelity's FID Inception-v3 with the weights of ``path``: uint8 (N, 3, H, W) -> (N, 2048)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"eval.inception_weights={path}: no such file; give the path of {WEIGHTS} (torch-fidelity's "
                        f"FID Inception weights, fetched beforehand from {SOURCE}: nothing is downloaded at run time)")
    _libraries()
    from torchmetrics.image.fid import NoTrainInceptionV3

    try:
        return NoTrainInceptionV3(name="inception-v3-compat", features_list=[str(FEATURES)],
                                  feature_extractor_weights_path=str(p))
    except Exception as err:  # not a state dict, or another network's
        raise UserError(f"eval.inception_weights={path} does not hold the FID Inception's weights "
                        f"({first_line(err)[:160]})") from None


def as_uint8_rgb(x: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] as uint8 RGB images (grayscale repeated), as the network reads image files."""
    x = (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


class InceptionMetrics:
    """FID and KID against one set of real images, whose features are computed once."""

    def __init__(self, net: nn.Module, real: torch.Tensor, device: torch.device, batch: int = 200):
        FID, KID = _libraries()
        self.net, self.device, self.batch = net.to(device).eval(), device, batch
        self.real = self.features(real)
        identity = nn.Identity()  # the metrics' feature extractor: they are handed features
        identity.num_features = self.real.shape[1]
        self.fid = FID(feature=identity, reset_real_features=False).to(device)
        self.kid_metric = lambda subset: KID(feature=identity, reset_real_features=False, subset_size=subset).to(device)
        self.fid.update(self.real, real=True)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        out = [self.net(as_uint8_rgb(b.to(self.device))).reshape(len(b), -1) for b in images.split(self.batch)]
        return torch.cat(out).double()

    def compare(self, fake: torch.Tensor) -> Dict[str, float]:
        """eval/inception_fid, eval/inception_kid (mean and std over subsets of min(1000, N) images)."""
        feats = self.features(fake)
        self.fid.reset()  # the real features stay (reset_real_features=False)
        self.fid.update(feats, real=False)
        with warnings.catch_warnings():  # "will save all extracted features": it is handed N x 2048 features
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            kid = self.kid_metric(min(1000, len(self.real), len(feats)))
        kid.update(self.real, real=True)
        kid.update(feats, real=False)
        with torch.random.fork_rng(devices=[]):  # its subsets: the same at every evaluation, no other draw changed
            torch.manual_seed(0)
            kid_mean, kid_std = kid.compute()
        return {"eval/inception_fid": float(self.fid.compute()), "eval/inception_kid": float(kid_mean),
                "spread/inception_kid_std": float(kid_std), "eval/inception_samples": len(feats)}


@functools.cache
def load(path: str) -> nn.Module:
    """:func:`network`, loaded once per process (the run's check loads it before training)."""
    return network(path)
