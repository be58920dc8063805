"""What a generator has learned, measured offline: theory/ diagnostics and eval/ metrics.

* Known-density data (mixture1d, ring, grid): the value estimate V-hat against C(G) = -log 4 +
  2 JSD and its minimum -log 4, the Jensen-Shannon divergence to p_data (with its floor), the
  distance of D to the optimal D* = p_data / (p_data + p_g), and for 1-D data the curves of the
  paper's Figure 1.
* Mixtures of modes (ring, grid): modes covered, high-quality fraction, reverse KL (VEEGAN/PacGAN).
* Image sets: the paper's Parzen-window log-likelihood, and FID / KID / precision / recall in the
  feature space of a small classifier trained once on the real data (offline; see features.py).

All sampling here uses the evaluator's own random generator, so evaluating never changes the
training run's random stream (a resumed run still matches an uninterrupted one).
"""

from __future__ import annotations

import logging
import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from . import data as datasets, features, metrics, models
from .config import PROBABILITY_LOSSES, metric_kinds

LOG4 = math.log(4.0)
log = logging.getLogger("gan_cli")

# eval.best_by: metrics where a larger value is better; every other one is minimised
HIGHER_IS_BETTER = {"eval/parzen_ll", "eval/precision", "eval/recall", "eval/modes_covered", "eval/hq_fraction"}


def kinds(data: datasets.Data) -> Tuple[str, ...]:
    return metric_kinds(data.name)


def best_metric(choice: str, data: datasets.Data) -> str:
    """The metric that picks checkpoints/best.pt: ``auto`` is FID, JSD or the Dirac distance."""
    if choice == "auto":
        return {"image": "eval/fid", "density": "theory/jsd", "dirac": "theory/distance"}[kinds(data)[0]]
    return choice


def is_better(tag: str, new: float, old: Optional[float]) -> bool:
    if old is None:
        return math.isfinite(new)
    return new > old if tag in HIGHER_IS_BETTER else new < old


class Evaluator:
    """Measures a (G, D) pair on ``data`` as the eval config node says."""

    def __init__(self, cfg, data: datasets.Data, device: torch.device, loss_name: str, prior: str, z_dim: int,
                 seed: int = 0):
        self.cfg, self.data, self.device = cfg, data, device
        self.loss_name, self.prior, self.z_dim = loss_name, prior, z_dim
        self.generator = torch.Generator(device=device)
        self.seed = seed
        self._classifier = None
        self.classifier_info: Dict[str, object] = {}
        self._floor: Dict[str, float] = {}
        if data.has_density:
            c = data.centres
            pad = 5 * data.std + (1.0 if data.dim == 1 else 0.2)
            self.lo, self.hi = float(c.min()) - pad, float(c.max()) + pad
            self.bins = cfg.bins_1d if data.dim == 1 else cfg.bins_2d

    # -- helpers --------------------------------------------------------------------------------
    def _noise(self, n: int) -> torch.Tensor:
        return datasets.noise(self.prior, n, self.z_dim, self.device, generator=self.generator)

    @torch.no_grad()
    def generate(self, G, n: int, batch: int = 5000) -> torch.Tensor:
        """n samples of G in eval mode (batch norm uses running statistics)."""
        was_training = G.training
        G.eval()
        out = torch.cat([G(self._noise(min(batch, n - i))) for i in range(0, n, batch)])
        G.train(was_training)
        return out

    @torch.no_grad()
    def _logits(self, D, x: torch.Tensor) -> torch.Tensor:
        was_training = D.training
        D.eval()  # no dropout: the discriminator as a function
        out = torch.cat([D(b) for b in x.split(5000)])
        D.train(was_training)
        return out

    # -- theory ---------------------------------------------------------------------------------
    def theory(self, G, D) -> Tuple[Dict[str, float], Optional[Dict[str, torch.Tensor]]]:
        """theory/ scalars for known-density data, and the Figure 1 curves for 1-D data."""
        n, data = self.cfg.theory_samples, self.data
        fake = self.generate(G, n)
        real = data.sample(n, generator=self.generator)
        out = {
            "theory/jsd": metrics.jsd_estimate(data.log_prob, fake, self.lo, self.hi, self.bins),
            "theory/jsd_floor": metrics.jsd_estimate(data.log_prob, real, self.lo, self.hi, self.bins),
        }
        out["theory/c_of_g"] = -LOG4 + 2 * out["theory/jsd"]
        curves = None
        if self.loss_name in PROBABILITY_LOSSES:
            a_real, a_fake = self._logits(D, real), self._logits(D, fake)
            # V-hat = mean log D(x) + mean log(1 - D(G(z))), on logits
            out["theory/value"] = -F.softplus(-a_real).mean() - F.softplus(a_fake).mean()
            grid = metrics.grid_centres(self.lo, self.hi, self.bins, data.dim, device=self.device).float()
            p_data = data.log_prob(grid).double().exp()
            p_g = metrics.histogram_density(fake, self.lo, self.hi, self.bins)
            d_grid = torch.sigmoid(self._logits(D, grid)).double()
            # weighted by where the mass lies, (p_data + p_g) / 2: D is arbitrary where both vanish
            out["theory/d_star_mse"] = metrics.d_star_mse(d_grid, p_data, p_g, weights=p_data + p_g)
            if data.dim == 1:
                curves = {"x": grid.squeeze(1), "p_data": p_data, "p_g": p_g, "D": d_grid,
                          "D_star": metrics.d_star(p_data, p_g)}
        values = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=self.device) for v in out.values()]).tolist()
        scalars = dict(zip(out.keys(), values))
        scalars["theory/optimum"] = -LOG4
        return scalars, curves

    # -- sample quality -------------------------------------------------------------------------
    def modes(self, G) -> Dict[str, float]:
        report = metrics.mode_metrics(self.generate(G, self.cfg.mode_samples), self.data.centres, self.data.std)
        return {"eval/modes_covered": report["modes_covered"], "eval/hq_fraction": report["hq_fraction"],
                "eval/reverse_kl": report["reverse_kl"], "eval/mode_samples": self.cfg.mode_samples,
                "eval/hq_threshold_std": 3.0}

    def classifier(self):
        """The dataset's cached feature classifier (trained on first use), and its real-vs-real floor."""
        if self._classifier is None:
            d = self.data
            self._classifier, self.classifier_info = features.get_classifier(
                d.name, d.train, d.train_labels, d.test, d.test_labels, cache_dir=self.cfg.cache_dir,
                device=self.device, steps=self.cfg.classifier_steps)
            floor = features.real_floor(self._classifier, d.train, d.test, n=self.cfg.n_samples)
            self._floor = {f"eval/{k}_floor": v for k, v in floor.items() if k != "kid_std"}
        return self._classifier

    def images(self, G) -> Dict[str, float]:
        d, n = self.data, self.cfg.n_samples
        fake = self.generate(G, n)
        out: Dict[str, float] = {}
        if self.cfg.parzen:
            # the paper's protocol: n samples as centres, sigma on 1,000 validation images, test mean +- se
            parzen = metrics.parzen_log_likelihood(fake, d.val[:1000], d.test)
            out.update({"eval/parzen_ll": parzen["ll"], "eval/parzen_se": parzen["se"],
                        "eval/parzen_sigma": parzen["sigma"], "eval/parzen_samples": n})
        if self.cfg.features:
            model = self.classifier()
            quality = features.image_metrics(model, d.train[:n], fake)
            out.update({f"eval/{k}": v for k, v in quality.items()})
            out.update(self._floor)
            out["eval/classifier_accuracy"] = float(self.classifier_info["test_accuracy"])
        return out

    def run(self, G, D) -> Tuple[Dict[str, float], Optional[Dict[str, torch.Tensor]]]:
        """Every metric that fits the dataset: (scalars by tag, Figure 1 curves or None)."""
        self.generator.manual_seed(self.seed)  # the same noise at every evaluation
        if not torch.isfinite(self.generate(G, 256)).all():
            log.warning("G produces non-finite samples: evaluation skipped (lower optimizer.lr?)")
            self.generator.manual_seed(self.seed)
            return {}, None
        self.generator.manual_seed(self.seed)
        scalars: Dict[str, float] = {}
        curves = None
        kind = kinds(self.data)
        if "image" in kind:
            scalars.update(self.images(G))
        if "density" in kind:
            theory, curves = self.theory(G, D)
            scalars.update(theory)
        if "modes" in kind:
            scalars.update(self.modes(G))
        if "dirac" in kind:
            scalars["theory/distance"] = models.dirac_point(G, D).norm().item()
        return scalars, curves

    def protocol(self) -> Dict[str, str]:
        """How each figure was measured, in words (for eval.json and the log)."""
        text: Dict[str, str] = {}
        kind = kinds(self.data)
        if "density" in kind:
            text["theory"] = (
                f"{self.cfg.theory_samples} generator and real samples; p_g by a histogram of {self.bins}"
                f"{'' if self.data.dim == 1 else ' x ' + str(self.bins)} cells on [{self.lo:.3g}, {self.hi:.3g}]"
                f"{'' if self.data.dim == 1 else '^2'} (plus one cell outside), p_data exact; theory/jsd_floor is the "
                "same estimator on real samples; d_star_mse weighted by p_data + p_g; D in eval mode")
        if "modes" in kind:
            text["modes"] = (f"VEEGAN/PacGAN: {self.cfg.mode_samples} samples, high quality within 3 std "
                             f"(std={self.data.std:g}) of the nearest of {len(self.data.centres)} centres")
        if "image" in kind:
            text["parzen"] = (f"Goodfellow et al. 2014: {self.cfg.n_samples} samples as centres, sigma from "
                              "logspace(-1, 0, 10) by the first 1,000 validation images, mean +- std/sqrt(N) on the test split"
                              + (" (digits: the 297 held-out images are both)" if self.data.name == "digits" else ""))
            text["features"] = (f"penultimate layer of a small CNN trained on the real training split (seed 0); FID/KID/"
                                f"precision/recall (k=3) of {self.cfg.n_samples} samples vs up to {self.cfg.n_samples} "
                                "training images; *_floor = training vs test images; not comparable with Inception FID")
        return text
