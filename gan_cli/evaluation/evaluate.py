"""What a generator has learned: theory/ diagnostics (known-density data, the Dirac-GAN's point) and eval/ metrics
(mode coverage, Parzen window, FID / KID / precision / recall in a classifier's feature space, Inception FID / KID).
METRICS is the one table of facts about each family (which runs have it, which way each tag is better, how it is
measured). Sampling uses the evaluator's own generator: evaluating never changes the run's random stream."""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gan_cli import config
from gan_cli import data as datasets
from gan_cli.config import Knob, UserError, flag, integer, text
from gan_cli.evaluation import metrics
from gan_cli.game import losses, models

LOG4 = math.log(4.0)
SPREAD = {"kid_std": "spread/kid_std"}  # features.compare's figures that are a spread, not a figure of merit
HIGHER, LOWER = "higher", "lower"  # which way a tag is better (eval.best_by follows it)
FIXED = "fixed"  # a tag whose value does not change over a run (a size, a floor): metrics.json and a text card
log = logging.getLogger("gan_cli")


class Evaluator:
    """Measures G and D (a models.Nets) on ``data`` as the run config ``cfg`` says."""

    def __init__(self, cfg, data: datasets.Data, device: torch.device):
        self.cfg, self.data, self.device = cfg.eval, data, device
        self.probability = reads_points_as_probability(cfg)
        self.prior, self.z_dim, self.seed = cfg.prior, cfg.z_dim, cfg.seed
        self.families = families(cfg)
        self.generator = torch.Generator(device=device)
        self._classifier, self._floor = None, {}
        self.classifier_info: Dict[str, object] = {}
        self.progress: Optional[Callable[[int, int], None]] = None  # the classifier's training, (done, steps)
        # called as theory/'s neighbour searches start (they release the interpreter lock): work to overlap them
        self.searching: Callable[[], None] = lambda: None
        # theory's real samples (and what depends on them alone); features.Reference; inception.InceptionMetrics
        self._real = self._reference = self._inception = self._images = self.curves = None
        self.seconds: Dict[str, float] = {}  # the last evaluation's wall time per metric family
        if data.has_density:  # the grid of the Figure 1 curves (1-D data)
            pad = 5 * data.std + (1.0 if data.dim == 1 else 0.2)
            self.lo, self.hi = float(data.centres.min()) - pad, float(data.centres.max()) + pad

    @torch.no_grad()
    def generate(self, G, n: int, batch: int = 5000) -> torch.Tensor:
        """n samples of G in eval mode (batch norm uses running statistics)."""
        with models.evaluating(G):
            return torch.cat([G(datasets.noise(self.prior, min(batch, n - i), self.z_dim, self.device,
                                               generator=self.generator)) for i in range(0, n, batch)])

    @torch.no_grad()
    def _logits(self, D, x: torch.Tensor) -> torch.Tensor:
        with models.evaluating(D):  # no dropout: the discriminator as a function
            return torch.cat([D(b) for b in x.split(5000)])

    def _generated_images(self, G) -> torch.Tensor:
        if self._images is None:
            self._images = self.generate(G, self.cfg.n_samples)
        return self._images

    def theory(self, nets) -> Dict[str, float]:
        """theory/ scalars for known-density data; for 1-D data also the Figure 1 curves."""
        G, D = nets
        n, data = self.cfg.theory_samples, self.data
        fake = self.generate(G, n)
        # a real sample, and a second one: the estimator's floor
        real, other = (data.sample(n, generator=self.generator) for _ in range(2))
        # the same real samples at every evaluation (seeded afresh, G's noise drawn first): what depends on them
        # alone is kept from the first
        if self._real is None or not all(map(torch.equal, self._real["samples"], (real, other))):
            self._real = {"samples": (real, other)}
        cache = self._real
        # p_g by its k-NN density: k for the JSD at every point, k* for D* at the first m (one search)
        k, m = self.cfg.knn, min(n, 10000)
        k_star = self.cfg.knn_d_star if self.probability else None  # D* (and V-hat) only where D is a probability
        log_p_real, log_p_fake = data.log_prob(real).double(), data.log_prob(fake).double()
        fakes = metrics.NeighbourTree(fake)
        self.searching()
        q_real, q_r = _knn_head(fakes, real, k, k_star, m)
        q_fake, q_f = _knn_head(fakes, fake, k, k_star, m, exclude_self=True)
        if "floor" not in cache:  # the JSD of a second real sample: what a perfect G would read
            cache["others"] = others = metrics.NeighbourTree(other)
            o_real, cache["r_other"] = _knn_head(others, real, k, k_star, m)
            o_other = others.log_density(other, [k], exclude_self=True)[0]
            cache["floor"] = metrics.jsd_from_log_densities(log_p_real, o_real, data.log_prob(other).double(), o_other)
        jsd = metrics.jsd_corrected(log_p_real, q_real, log_p_fake, q_fake, cache["floor"])
        out = {"eval/jsd": jsd, "eval/jsd_floor": cache["floor"], "theory/c_of_g": -LOG4 + 2 * jsd}
        if k_star is not None:
            a_real, a_fake = self._logits(D, real), self._logits(D, fake)
            # V-hat = mean log D(x) + mean log(1 - D(G(z))), on logits
            out["eval/value"] = -F.softplus(-a_real).mean() - F.softplus(a_fake).mean()
            out["theory/d_gap"] = out["theory/c_of_g"] - out["eval/value"]  # C(G) - V-hat >= 0: D's distance from D*
            # D* from k*-NN densities of BOTH laws (p_data's: the second real sample), samples of equal size, so
            # their smoothing cancels where p_g = p_data; m = 10,000 of each suffice
            p_f = cache["others"].log_density(fake[:m], [k_star])[0]
            out["eval/d_star_mse"] = metrics.d_star_mse_samples(
                torch.sigmoid(a_real[:m]), torch.sigmoid(a_fake[:m]), cache["r_other"], q_r, p_f, q_f)
            if data.dim == 1:
                grid = metrics.grid_centres(self.lo, self.hi, self.cfg.bins_1d, data.dim, device=self.device).float()
                p_data = data.log_prob(grid).double().exp()
                p_g = metrics.histogram_density(fake, self.lo, self.hi, self.cfg.bins_1d)
                self.curves = {"x": grid.squeeze(1), "p_data": p_data, "D_star": metrics.d_star(p_data, p_g),
                               "p_g": p_g, "D": torch.sigmoid(self._logits(D, grid)).double()}
        values = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=self.device) for v in out.values()])
        return dict(zip(out.keys(), values.tolist()))

    def modes(self, nets) -> Dict[str, float]:
        report = metrics.mode_metrics(self.generate(nets.G, self.cfg.mode_samples), self.data.centres, self.data.std)
        return {**{f"eval/{k}": report[k] for k in ("modes_covered", "hq_fraction", "reverse_kl")},
                "eval/mode_samples": self.cfg.mode_samples, "eval/hq_threshold_std": 3.0}

    def parzen(self, nets) -> Dict[str, float]:
        # the paper's protocol: n samples as centres, sigma on 1,000 validation images, test mean +- se
        parzen = metrics.parzen_log_likelihood(self._generated_images(nets.G), self.data.val[:1000], self.data.test)
        return {"eval/parzen_ll": parzen["ll"], "spread/parzen_se": parzen["se"],
                "spread/parzen_sigma": parzen["sigma"], "eval/parzen_samples": self.cfg.n_samples}

    def features(self, nets) -> Dict[str, float]:
        from gan_cli.evaluation import features

        d = self.data
        n_ref, size, _ = feature_sizes(self.cfg.n_samples, len(d.train), len(d.test))
        if self._classifier is None:  # the dataset's cached classifier, the real reference and its floor: once
            self._classifier, self.classifier_info = features.get_classifier(
                d.name, d.train, d.train_labels, d.test, d.test_labels, cache_dir=self.cfg.cache_dir,
                device=self.device, steps=self.cfg.classifier_steps, progress=self.progress)
            self._reference = features.reference(self._classifier, d.train[:n_ref])
            floor = features.compare(self._reference, features.extract_features(self._classifier, d.test[:size]), size)
            self._floor = {f"eval/{k}_floor": v for k, v in floor.items() if k != "kid_std"}
        fake = features.extract_features(self._classifier, self._generated_images(nets.G))
        quality = features.compare(self._reference, fake, size)  # the floor's sizes
        return {**{SPREAD.get(k, f"eval/{k}"): v for k, v in quality.items()}, **self._floor,
                "eval/classifier_accuracy": float(self.classifier_info["test_accuracy"]),
                "eval/reference_samples": n_ref, "eval/feature_samples": size}

    def inception(self, nets) -> Dict[str, float]:
        from gan_cli.evaluation import inception

        if self._inception is None:  # the real images' features: once per run
            self._inception = inception.InceptionMetrics(inception.load(self.cfg.inception_weights),
                                                         self.data.reference(self.cfg.n_samples), self.device)
        return self._inception.compare(self._generated_images(nets.G))

    def run(self, nets) -> Tuple[Dict[str, float], Optional[Dict[str, torch.Tensor]]]:
        """Every metric that fits the run: (scalars by tag, Figure 1 curves or None)."""
        self.generator.manual_seed(self.seed)
        finite = torch.isfinite(self.generate(nets.G, 256)).all()
        self.generator.manual_seed(self.seed)  # the same noise at every evaluation
        if not finite:
            log.warning("G produces non-finite samples: evaluation skipped (lower optimizer.lr?)")
            return {}, None
        self._images, self.curves, self.seconds = None, None, {}
        scalars: Dict[str, float] = {}
        for family in (f for f in applicable(self.families) if f.enabled(self.cfg)):
            start = time.perf_counter()
            scalars.update(family.measure(self, nets))  # returns Python numbers: the device is synchronised
            self.seconds[family.name] = time.perf_counter() - start
        self._images = None
        return scalars, self.curves

    def measure(self, nets, average=None, also_raw: bool = False):
        """(figures, Figure 1 curves, G's own curves) of G's moving average (``average``, a game.ema.EMA, once
        started) or G itself. With an average and ``also_raw``, G itself too (same noise): its ranked figures
        under raw/ (floors, sizes and constants are the average's), its curves the third item (else None)."""
        figures, curves = self.run(nets if average is None else nets.with_G(average.generator()))
        if average is None or not also_raw:
            return figures, curves, None
        raw, raw_curves = self.run(nets)
        return {**figures, **{f"raw/{t}": v for t, v in raw.items() if direction(t) is not None}}, curves, raw_curves

    def protocol(self) -> Dict[str, str]:
        """How each figure was measured, in words (for gan-eval's JSON file and the log)."""
        return {m.name: m.protocol(self) for m in applicable(self.families)
                if m.protocol is not None and m.enabled(self.cfg)}


def _knn_head(tree: metrics.NeighbourTree, x: torch.Tensor, k: int, k_star: Optional[int], m: int,
              exclude_self: bool = False) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(log q-hat at every point of x with k neighbours, at its first m with k_star: one search; else None)."""
    if k_star is None:
        return tree.log_density(x, [k], exclude_self)[0], None
    head, head_star = tree.log_density(x[:m], [k, k_star], exclude_self)
    if len(x) > m:
        head = torch.cat([head, tree.log_density(x[m:], [k], exclude_self)[0]])
    return head, head_star


def _features_protocol(ev: Evaluator) -> str:
    n_ref, size, sets = feature_sizes(ev.cfg.n_samples, len(ev.data.train), len(ev.data.test))
    samples = (f"{size} samples" if sets == 1 else
               f"{size} samples (the mean over {sets} disjoint sets of {size} of the {ev.cfg.n_samples} samples)")
    return (f"penultimate layer of a small CNN trained on the real training split (seed 0); the first {n_ref} "
            f"training images vs {samples}, *_floor the same {n_ref} vs the first {size} test images (same sizes: "
            "FID and recall depend on them); FID and precision/recall (k=3) on the raw features, KID (cubic kernel, "
            f"subsets of {min(1000, n_ref, size)}) on features standardised by the reference's per-dimension mean "
            "and std; not comparable with Inception FID")


class Metric(NamedTuple):
    """A family of figures measured together, everything about it in one place (registered by :func:`register`)."""

    name: str  # its key in the protocol texts (gan-eval's JSON file, train.log)
    applies: str  # which runs have it: a dataset family (image, rgb, density, modes; data.DATASETS) or "point"
    tags: Dict[str, Optional[str]]  # tag -> HIGHER or LOWER is better; None: neither; FIXED: a constant of the run
    measure: Callable[[Evaluator, object], Dict[str, float]]  # (the evaluator, the networks) -> scalars by tag
    protocol: Optional[Callable[[Evaluator], str]] = None
    probability: Tuple[str, ...] = ()  # tags measured only when D is a probability (cross-entropy losses)
    auto: Optional[str] = None  # the tag that eval.best_by=auto picks on runs that have this family
    knobs: Mapping[str, Knob] = {}  # the eval.* settings it reads (its on/off switch among them)
    switch: Optional[str] = None  # the flag among its knobs that turns it on or off (None: always on)
    samples: Callable[[object], int] = lambda cfg: 0  # generated samples it holds at once, by the eval config node
    check: Optional[Callable[[object], None]] = None  # the run config -> UserError where its knobs do not fit
    about: str = ""

    def enabled(self, cfg) -> bool:
        return self.switch is None or (cfg[self.switch] is not None and cfg[self.switch] is not False)


METRICS = config.CHOICES["eval"].values()  # every metric family, in the order registered (a live view)


def register(metric: Metric) -> Metric:
    """Add a metric family (replacing one of the same name): measured on runs of ``metric.applies``, knobs in eval.*."""
    return config.register("eval", metric.name, metric)


def _theory_sizes(cfg) -> None:
    ev = cfg.eval
    for key in ("knn", "knn_d_star"):
        if ev[key] >= ev.theory_samples:
            raise UserError(f"eval.{key}={ev[key]} is not allowed: it must be an integer in [1, eval.theory_samples) "
                            f"= [1, {ev.theory_samples})")


def _cache_writable(cfg) -> None:
    """The feature classifier's cache can be written (checked before training, not at the first evaluation)."""
    if "image" not in families(cfg) or not cfg.eval.features:
        return
    from gan_cli.evaluation import features

    named = f"eval.cache_dir={cfg.eval.cache_dir}" if cfg.eval.cache_dir else \
        f"GAN_CLI_CACHE={os.environ['GAN_CLI_CACHE']}" if os.environ.get("GAN_CLI_CACHE") else None
    path = Path(cfg.eval.cache_dir or features.default_cache_dir()).expanduser()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        why = f"{existing} is a file" if not existing.is_dir() else f"{existing} is not writable"
        raise UserError(f"{named or 'the classifier cache ' + str(path)} cannot hold the feature classifier's cache: "
                        f"{why}; set eval.cache_dir=<a folder you can write> (or eval.features=false)")


def _inception_file(cfg) -> None:
    """eval.inception_weights is a file of those weights, on an RGB set."""
    if cfg.eval.inception_weights is None:
        return
    rgb = [name for name, entry in config.choices("dataset").items() if "rgb" in entry.families]
    if "rgb" not in datasets.spec(cfg.dataset.name).families:
        raise UserError(f"eval.inception_weights is for RGB image sets ({', '.join(rgb)}); dataset={cfg.dataset.name} "
                        "is not one: leave it unset")
    from gan_cli.evaluation import inception

    inception.load(cfg.eval.inception_weights)  # a missing or foreign file, or no torchmetrics: one line now


config.share("eval", {
    "best_by": text("auto", "the figure that keeps checkpoints/best.pt (auto: eval/fid, eval/jsd or eval/distance)",
                    longest=200),
    "n_samples": integer(10000, 1, 200_000, "image sets: generated samples for Parzen (the paper: 10,000), FID/KID/PR"),
})
for _metric in (
    Metric("parzen", "image", {"eval/parzen_ll": HIGHER, "spread/parzen_se": None, "spread/parzen_sigma": None,
                               "eval/parzen_samples": FIXED}, Evaluator.parzen, lambda ev: (
               f"Goodfellow et al. 2014: {ev.cfg.n_samples} samples as centres, sigma from logspace(-1, 0, 10) by the "
               "first 1,000 validation images, mean +- std/sqrt(N) on the test split"
               + (f" ({ev.data.name}: the {len(ev.data.test)} held-out images are both)"
                  if ev.data.val is ev.data.test else "")),
           switch="parzen", samples=lambda cfg: cfg.n_samples,
           knobs={"parzen": flag(True, "image sets: the paper's Parzen-window log-likelihood")},
           about="the paper's Parzen-window log-likelihood of the test images"),
    Metric("features", "image", {"eval/fid": LOWER, "eval/kid": LOWER, "spread/kid_std": None, "eval/precision": HIGHER,
                                 "eval/recall": HIGHER, "eval/fid_floor": FIXED, "eval/kid_floor": FIXED,
                                 "eval/precision_floor": FIXED, "eval/recall_floor": FIXED,
                                 "eval/classifier_accuracy": FIXED, "eval/reference_samples": FIXED,
                                 "eval/feature_samples": FIXED},
           Evaluator.features, _features_protocol, auto="eval/fid", switch="features",
           samples=lambda cfg: cfg.n_samples, check=_cache_writable,
           knobs={"features": flag(True, "image sets: FID / KID / precision / recall in a classifier's feature space"),
                  "classifier_steps": integer(1000, 1, 100_000,
                                              "training steps of that classifier (once; then cached)"),
                  "cache_dir": text(None, "folder of cached classifiers", "path", null="~/.cache/gan-cli/classifiers")},
           about="FID, KID, precision and recall in the feature space of a small classifier"),
    Metric("inception", "rgb", {"eval/inception_fid": LOWER, "eval/inception_kid": LOWER,
                                "spread/inception_kid_std": None, "eval/inception_samples": FIXED},
           Evaluator.inception, lambda ev: (
               f"Inception-v3 pool features (torch-fidelity's FID network, weights {ev.cfg.inception_weights}), images "
               f"as uint8 RGB resized to 299x299; {ev.cfg.n_samples} samples vs up to {ev.cfg.n_samples} training "
               "images (a fixed random choice); torchmetrics FID, and KID over 100 subsets of min(1000, N); "
               "comparable with published figures at the same sample sizes (CIFAR-10 papers: 50,000 each, "
               "eval.n_samples=50000)"),
           auto="eval/inception_fid", switch="inception_weights",
           samples=lambda cfg: cfg.n_samples, check=_inception_file,
           knobs={"inception_weights": text(None, "RGB sets: Inception FID / KID from this LOCAL weights file "
                                                  "(torch-fidelity's pt_inception-2015-12-05-6726825d.pth)", "path",
                                            null="off")},
           about="Inception FID and KID (a local weights file)"),
    Metric("theory", "density", {"eval/jsd": LOWER, "eval/jsd_floor": FIXED, "theory/c_of_g": None,
                                 "eval/value": LOWER, "theory/d_gap": None, "eval/d_star_mse": LOWER},
           Evaluator.theory, lambda ev: (
               f"{ev.cfg.theory_samples} generator and real samples; p_data exact, p_g by its k-nearest-neighbour "
               f"density (k={ev.cfg.knn} for JSD, k={ev.cfg.knn_d_star} for D*); eval/jsd is the mean of log "
               "2p/(p+q) over real and log 2q/(p+q) over generated samples minus eval/jsd_floor, the same estimate "
               "with a second real sample in place of G's (its bias at this size); d_star_mse is mean (D - D*)^2 over "
               "both samples (weighted by p_data + p_g); d_gap = C(G) - V-hat; D in eval mode"),
           probability=("eval/value", "theory/d_gap", "eval/d_star_mse"),
           auto="eval/jsd", samples=lambda cfg: cfg.theory_samples, check=_theory_sizes,
           knobs={"theory_samples": integer(50000, 2, 1_000_000, "known-density data: samples for JSD, V-hat and D*"),
                  "knn": integer(10, 1, 10_000, "neighbours of the k-NN density of p_g in the JSD"),
                  "knn_d_star": integer(200, 1, 10_000, "the same for D* = p_data / (p_data + p_g)"),
                  "bins_1d": integer(200, 2, 100_000, "1-D data: histogram cells of p_g in the Figure 1 curves")},
           about="V-hat against C(G) and -log 4, the JSD to p_data, D against D*"),
    Metric("modes", "modes", {"eval/modes_covered": HIGHER, "eval/hq_fraction": HIGHER, "eval/reverse_kl": LOWER,
                              "eval/mode_samples": FIXED, "eval/hq_threshold_std": FIXED},
           Evaluator.modes, lambda ev: (f"VEEGAN/PacGAN: {ev.cfg.mode_samples} samples, high quality within 3 std "
                                        f"(std={ev.data.std:g}) of the nearest of {len(ev.data.centres)} centres"),
           samples=lambda cfg: cfg.mode_samples,
           knobs={"mode_samples": integer(2500, 1, 1_000_000, "ring / grid: samples for the mode metrics (2,500)")},
           about="modes covered, high-quality fraction, reverse KL (VEEGAN / PacGAN)"),
    # the game's state as a point (the Dirac-GAN's (theta, psi)): its distance to (0, 0)
    Metric("distance", "point", {"eval/distance": LOWER},
           lambda ev, nets: {"eval/distance": nets.point().norm().item()}, auto="eval/distance",
           about="the Dirac-GAN's distance to its equilibrium"),
):
    register(_metric)


def feature_sizes(n_samples: int, n_train: int, n_test: int) -> Tuple[int, int, int]:
    """(reference, size, sets): the first ``reference`` training images against ``size`` held-out images (the
    floor) or the mean over ``sets`` disjoint sets of ``size`` samples (digits: 297 held-out images)."""
    reference, size = min(n_samples, n_train), min(n_samples, n_test)
    return reference, size, n_samples // size


def families(cfg) -> Tuple[str, ...]:
    """The metric families of a run: its dataset's, plus "point" when its architecture has one."""
    return datasets.spec(cfg.dataset.name).families + (("point",) if models.spec(cfg.arch.name).point else ())


def applicable(run_families: Iterable[str]) -> Tuple[Metric, ...]:
    return tuple(m for m in METRICS if m.applies in tuple(run_families))


def reads_points_as_probability(cfg) -> bool:
    """D(x) = sigma(a(x)) is a probability at each x (V-hat, d_gap, D* apply): cross-entropy loss and pack = 1."""
    return losses.get(cfg.loss).probability and cfg.pack == 1


def rankable(run_families: Iterable[str], probability: bool) -> Tuple[str, ...]:
    """The tags that can choose checkpoints/best.pt on such a run."""
    return tuple(tag for m in applicable(run_families) for tag, better in m.tags.items()
                 if better in (HIGHER, LOWER) and (probability or tag not in m.probability))


def direction(tag: str) -> Optional[str]:
    """HIGHER or LOWER: which way ``tag`` is better; None for a tag that is not ranked."""
    better = next((m.tags[tag] for m in METRICS if tag in m.tags), None)
    return better if better in (HIGHER, LOWER) else None


def constants(scalars: Dict[str, float]) -> Tuple[Dict[str, float], Dict[str, float]]:
    """(the curves, the constants: sizes, floors, written once) of an evaluation's figures."""
    fixed = {tag for m in METRICS for tag, kind in m.tags.items() if kind == FIXED}
    return ({k: v for k, v in scalars.items() if k not in fixed}, {k: v for k, v in scalars.items() if k in fixed})


# old tags of ranked figures, still read where a setting names one (eval.best_by, optimized_metric)
RENAMED = {"theory/jsd": "eval/jsd", "theory/value": "eval/value", "theory/d_star_mse": "eval/d_star_mse",
           "theory/distance": "eval/distance"}


def upgrade(cfg) -> List[str]:
    """Settings that name a figure by its old tag, renamed in ``cfg`` in place; a line for each (a warning)."""
    out = []
    for key in ("eval.best_by", "optimized_metric"):
        try:
            old = OmegaConf.select(cfg, key, default=None)
        except OmegaConfBaseException:  # ${no.such.key}: the config's check names it
            continue
        if old in RENAMED:
            OmegaConf.update(cfg, key, RENAMED[old])
            out.append(f"{key}={old} is now named {RENAMED[old]} (read as that)")
    return out


def best_metric(choice: str, run_families: Iterable[str]) -> Optional[str]:
    """The metric that picks checkpoints/best.pt: ``auto`` is FID, JSD or the Dirac distance."""
    return next((m.auto for m in applicable(run_families) if m.auto is not None), None) if choice == "auto" else choice


def is_better(tag: str, new: float, old: Optional[float]) -> bool:
    return math.isfinite(new) if old is None else (new > old if direction(tag) == HIGHER else new < old)


def check(cfg) -> None:
    """Each metric's checks; eval.best_by and optimized_metric must name a figure the run measures (UserError)."""
    for metric in (m for m in METRICS if m.check is not None):
        metric.check(cfg)
    ranked = rankable(families(cfg), reads_points_as_probability(cfg))
    for key, allowed in (("eval.best_by", ("auto",) + ranked), ("optimized_metric", ranked)):
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and value not in allowed:
            raise UserError(f"{key}={value} is not measured on dataset={cfg.dataset.name} "
                            f"with loss={cfg.loss.name}; choose one of: {', '.join(allowed)}")
