"""Evaluation metrics for generative models: pure, batched functions on torch tensors.

Every function runs on the device of its inputs and computes in float64 where rounding matters.
Functions that return one number give a 0-dim tensor (no host synchronisation, safe to call inside
a training loop); functions that return a protocol report give a dict of Python numbers, ready to
be written as JSON.

References:
    Goodfellow et al. 2014, Generative Adversarial Nets, arXiv:1406.2661 (Proposition 1 and
        Theorem 1 of §4; the Parzen-window protocol of Table 1, after Breuleux et al. 2011).
    Srivastava et al. 2017, VEEGAN, arXiv:1705.07761; Lin et al. 2018, PacGAN, arXiv:1712.04086.
    Heusel et al. 2017, GANs trained by a two time-scale update rule, arXiv:1706.08500 (FID).
    Bińkowski et al. 2018, Demystifying MMD GANs, arXiv:1801.01401 (KID).
    Kynkäänniemi et al. 2019, Improved precision and recall metric, arXiv:1904.06991.
"""

import functools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

# ---------------------------------------------------------------------------------------------
# Parzen-window log-likelihood (Goodfellow et al. 2014, Table 1)
# ---------------------------------------------------------------------------------------------


def parzen_sigma_grid(device: torch.device | str | None = None) -> Tensor:
    """The paper's bandwidth grid: ``torch.logspace(-1, 0, 10)`` (0.1 ... 1), float64."""
    return torch.logspace(-1, 0, 10, dtype=torch.float64, device=device)


class _ParzenWindow:
    """An isotropic Gaussian Parzen window on the rows of ``centres``, prepared once for any number of
    query sets (:meth:`log_density`).

    Queries with many zero coordinates (MNIST's black background: 81 % of the test images' pixels, and
    a batch of 1,000 test images is non-zero on about 600 of the 784) take their products with the
    centres over those columns alone, uncentred: with m the centres' mean and μ' = μ - m,
    ‖x - μ‖² = ‖x - m‖² - 2x·μ' + (‖μ'‖² + 2m·μ'), and x·μ' is a sum over the columns where x is not
    zero. The same figures to float32 rounding (the terms are of the same size as the centred ones),
    with a quarter fewer multiplications on MNIST."""

    def __init__(self, centres: Tensor):
        centres = centres.flatten(1).to(torch.float64)
        self.mean = centres.mean(0)
        centres = centres - self.mean
        self.n, self.d = centres.shape
        sq_norms = centres.square().sum(1)
        self.sq_norms = sq_norms.float()  # ‖μ'‖²
        self.uncentred_norms = (sq_norms + 2 * (centres @ self.mean)).float()  # ‖μ'‖² + 2m·μ'
        self.centres = centres.float()
        self.buffers = _Buffers()  # one (batch, n) block written over and over, not allocated per batch

    @functools.cached_property
    def by_column(self) -> Tensor:
        """The centres as (d, n) rows, one per column: what a sparse batch gathers (made on first use)."""
        return self.centres.T.contiguous()

    def sparse_columns(self, batch: Tensor) -> Tensor | None:
        """The columns where some row of ``batch`` is not zero, where those are at most 90 % of them."""
        columns = _any(batch != 0, 0).nonzero()[:, 0]
        return columns if len(columns) <= 0.9 * self.d else None

    def log_density(self, x: Tensor, sigmas: Tensor, batch_size: int = 1000) -> Tensor:
        """Log-density of each row of ``x`` under the window, for every sigma of ``sigmas``.

        log p_σ(x) = logsumexp_i(-‖x - μ_i‖² / 2σ²) - log n - d·log(σ·√(2π)),

        with the n centres μ_i and d the flattened dimension. ‖x - μ‖² = ‖x‖² - 2x·μ + ‖μ‖² is computed
        with one float32 matrix product per batch of ``x``, on both sets centred by the mean of the centres
        (which keeps the norms, and so the rounding of the difference, small: on MNIST the log-likelihood
        agrees with an all-float64 computation to 1e-4 nats; queries with many zero coordinates are not
        centred, see the class); the squared distances are reused for every sigma. Each row's log-sum-exp
        is taken relative to its nearest centre, in float64 for that term and float32 for the sum of the
        exponentials (terms below e^-80 of the nearest one are counted as e^-80: a relative error under
        1e-30, and no float32 subnormals, whose arithmetic is many times slower). Returns a
        (len(sigmas), len(x)) float64 tensor.
        """
        sigmas = torch.as_tensor(sigmas, dtype=torch.float64, device=self.centres.device)
        log_norm = math.log(self.n) + self.d * torch.log(sigmas * math.sqrt(2 * math.pi))
        scales = (-0.5 / sigmas.square()).tolist()
        log_kernel_sums = []
        for batch in x.flatten(1).split(batch_size):
            centred = batch.to(torch.float64) - self.mean
            columns = self.sparse_columns(batch)
            sq_dist = self.buffers.get("sq_dist", (len(batch), self.n), self.centres)
            # ‖x - m‖² + the centres' terms, then the product added in place (no copy of a bias)
            norms = self.sq_norms if columns is None else self.uncentred_norms
            torch.add(centred.square().sum(1, keepdim=True).float(), norms, out=sq_dist)
            if columns is not None:  # the columns where some x is not zero: -2x·μ' + (‖μ'‖² + 2m·μ')
                sq_dist.addmm_(batch[:, columns].float(), self.by_column.index_select(0, columns), alpha=-2)
            else:  # -2(x - m)·μ' + ‖μ'‖²
                sq_dist.addmm_(centred.float(), self.centres.T, alpha=-2)
            nearest = sq_dist.amin(1, keepdim=True)
            excess = sq_dist.sub_(nearest)  # ‖x - μ_i‖² - min_i ‖x - μ_i‖² >= 0
            nearest = nearest[:, 0].clamp_min_(0).double()  # a distance, whatever the rounding
            term = self.buffers.get("term", excess.shape, excess)
            log_kernel_sums.append(torch.stack([
                nearest * scale + torch.mul(excess, scale, out=term).clamp_min_(-80).exp_().sum(1).log().double()
                for scale in scales]))
        return torch.cat(log_kernel_sums, dim=1) - log_norm[:, None]


class _Buffers:
    """Named scratch tensors reused across the blocks of a batched computation. A (1,000 × 10,000)
    float32 block is 40 MB, above glibc's largest mmap threshold (32 MiB): allocated afresh for each
    block, its pages are mapped and zeroed by the kernel on first touch every time, which on a 2-core
    CPU costs about as much as the arithmetic done on them."""

    def __init__(self):
        self._tensors: dict = {}

    def get(self, name: str, shape, like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """An uninitialised tensor of ``shape`` on ``like``'s device, of ``dtype`` (default ``like``'s),
        the same memory as the last call with this ``name`` when that had room enough."""
        shape, have = torch.Size(shape), self._tensors.get(name)
        if have is None or have.numel() < shape.numel():
            have = self._tensors[name] = torch.empty(shape.numel(), dtype=dtype or like.dtype, device=like.device)
        return have[: shape.numel()].view(shape)


def parzen_log_likelihood(
    samples: Tensor,
    val: Tensor,
    test: Tensor,
    sigmas: Tensor | None = None,
    batch_size: int = 1000,
) -> dict[str, float]:
    """Parzen-window log-likelihood of ``test`` under a kernel density fitted on ``samples``.

    The protocol of Goodfellow et al. 2014 (Table 1; parzen_ll.py in goodfeli/adversarial):
    the generator ``samples`` (10,000 in the paper) are the kernel centres; sigma is the value of
    ``sigmas`` (default :func:`parzen_sigma_grid`) with the best mean log-likelihood on ``val``
    (the first 1,000 validation images); the report is the mean log-likelihood of ``test`` and its
    standard error std/√N (population std, as numpy's default). Log-density: see
    :meth:`_ParzenWindow.log_density`. The estimator is unreliable in high dimension (Theis et al. 2016,
    arXiv:1511.01844); report it with its sigma, beside other metrics.

    Returns ``{"ll": mean, "se": std/√N, "sigma": chosen sigma}``.
    """
    if sigmas is None:
        sigmas = parzen_sigma_grid(samples.device)
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64, device=samples.device)
    window = _ParzenWindow(samples)
    val_ll = window.log_density(val, sigmas, batch_size).mean(1)
    sigma = sigmas[val_ll.argmax()]
    test_ll = window.log_density(test, sigma[None], batch_size)[0]
    se = test_ll.std(correction=0) / math.sqrt(len(test_ll))
    ll, se, sigma = torch.stack([test_ll.mean(), se, sigma]).tolist()
    return {"ll": ll, "se": se, "sigma": sigma}


# ---------------------------------------------------------------------------------------------
# Known-density data: JSD and the optimal discriminator (Goodfellow et al. 2014, §4)
# ---------------------------------------------------------------------------------------------


def grid_centres(lo: float, hi: float, bins: int, dim: int, device=None) -> Tensor:
    """Centres of the ``bins``^``dim`` cells of a regular grid over [lo, hi]^dim, (bins**dim, dim).

    Rows are in row-major order (the last coordinate varies fastest), the order of
    :func:`histogram_density`.
    """
    axis = lo + (torch.arange(bins, dtype=torch.float64, device=device) + 0.5) * (hi - lo) / bins
    return torch.cartesian_prod(*[axis] * dim).reshape(-1, dim)


def _histogram_counts(samples: Tensor, lo: float, hi: float, bins: int) -> Tensor:
    """Counts of ``samples`` (n,) or (n, d) per grid cell; those outside [lo, hi)^d are dropped."""
    points = samples.reshape(len(samples), -1).to(torch.float64)
    cell = torch.floor((points - lo) * (bins / (hi - lo))).long()
    inside = ((cell >= 0) & (cell < bins)).all(1)
    strides = bins ** torch.arange(points.shape[1] - 1, -1, -1, device=points.device)
    return torch.bincount((cell[inside] * strides).sum(1), minlength=bins ** points.shape[1])


def histogram_density(samples: Tensor, lo: float, hi: float, bins: int) -> Tensor:
    """Histogram density estimate on the cells of :func:`grid_centres`: count_j / (n·Δ^d).

    Δ = (hi - lo) / bins; n counts every sample, including those outside the grid.
    """
    dim = samples.reshape(len(samples), -1).shape[1]
    cell_volume = ((hi - lo) / bins) ** dim
    return _histogram_counts(samples, lo, hi, bins).double() / (len(samples) * cell_volume)


def d_star(p_data: Tensor, p_g: Tensor) -> Tensor:
    """Optimal D for a fixed G (Goodfellow et al. 2014, Prop. 1): D* = p_data / (p_data + p_g).

    Where both densities vanish the ratio is 0/0 and D* is set to ½ (either answer is optimal
    there, and ½ is the value at the global optimum p_g = p_data).
    """
    total = p_data + p_g
    return torch.where(total > 0, p_data / torch.where(total > 0, total, 1), 0.5)


class NeighbourTree:
    """A k-d tree of ``samples`` (scipy's, built once) for the k-nearest-neighbour density of their law:
    :meth:`log_density` at any queries, for several k in one search."""

    def __init__(self, samples: Tensor):
        from scipy.spatial import cKDTree

        data = samples.detach().reshape(len(samples), -1).double().cpu().numpy()
        self.n, self.d = data.shape
        # sliding-midpoint splits: faster to build than median splits and, for the same exact neighbours,
        # 0-15 % faster to search on the toy sets (measured: ring and grid, trained and untrained G)
        self.tree = cKDTree(data, balanced_tree=False)

    def log_density(self, queries: Tensor, ks: Sequence[int], exclude_self: bool = False) -> list:
        """[log q̂_k(x) for k in ``ks``], the k-nearest-neighbour density of the samples' law at each query,
        from one neighbour search (up to the largest k) for all of them.

        log q̂_k(x) = ψ(k) - log n - log V_d - d·log r_k(x), with r_k(x) the distance to the k-th nearest
        sample, V_d the volume of the unit d-ball and ψ the digamma function (Kozachenko & Leonenko 1987:
        unbiased in log space where q is locally flat). The radius adapts to the samples, so a narrow
        mixture (ring: std 0.01) is resolved as finely as its mass is dense. With ``exclude_self`` the
        queries are among the samples and each one's own point is skipped (n counts the others). A point
        mass gives r_k = 0 and log q̂ = +inf there. Each entry is (len(queries),) float64 on the queries'
        device; the search runs on the CPU (all cores)."""
        n = self.n - int(exclude_self)
        for k in ks:
            if not 1 <= k <= n:
                raise ValueError(f"k={k} needs 1 <= k <= {n} samples")
        points = queries.detach().reshape(len(queries), -1).double().cpu().numpy()
        dist, _ = self.tree.query(points, k=[k + int(exclude_self) for k in ks], workers=-1)
        r = torch.as_tensor(dist, dtype=torch.float64, device=queries.device).reshape(len(points), len(ks))
        log_unit_ball = self.d / 2 * math.log(math.pi) - math.lgamma(self.d / 2 + 1)
        return [torch.special.digamma(torch.tensor(float(k), dtype=torch.float64)).item() - math.log(n) - log_unit_ball
                - self.d * torch.log(r[:, i]) for i, k in enumerate(ks)]


def jsd_from_log_densities(log_p_real: Tensor, log_q_real: Tensor, log_p_fake: Tensor, log_q_fake: Tensor) -> Tensor:
    """JSD = ½ E_{x~p}[log 2p/(p+q)] + ½ E_{x~q}[log 2q/(p+q)], as means over samples of p
    (``*_real``) and of q (``*_fake``) of the given log-densities. Where q = +inf (a point mass) the
    term takes its limit, log 2."""
    on_real = math.log(2) + log_p_real - torch.logaddexp(log_p_real, log_q_real)
    on_fake = torch.where(torch.isinf(log_q_fake), torch.full_like(log_q_fake, math.log(2)),
                          math.log(2) + log_q_fake - torch.logaddexp(log_p_fake, log_q_fake))
    return (on_real.mean() + on_fake.mean()) / 2


def jsd_corrected(log_p_real: Tensor, log_q_real: Tensor, log_p_fake: Tensor, log_q_fake: Tensor,
                  floor: Tensor) -> Tensor:
    """Jensen-Shannon divergence (nats) between a known p_data and the law p_g of the generated samples,
    less the estimator's bias: :func:`jsd_from_log_densities` of p = p_data exact and q = p_g by its
    k-nearest-neighbour density (:meth:`NeighbourTree.log_density` of the generated samples, leave one
    out at those), minus ``floor``, clamped to [0, log 2]. ``floor`` is the same estimate with an
    independent real sample of the same size in place of the generated one (what a perfect generator
    would read: the bias of q̂'s noise at this size, about -0.015 at k = 10); it does not depend on G.
    With 50,000 samples and k = 10 a half-std generator reads 0.094 on mixture1d (quadrature: 0.0927),
    0.172 on ring and 0.166 on grid (0.1733), and one collapsed onto the centres 0.688-0.693 (log 2);
    with few samples per mode it reads low (grid, 2,000: 0.082)."""
    return (jsd_from_log_densities(log_p_real, log_q_real, log_p_fake, log_q_fake) - floor).clamp(0, math.log(2))


def d_star_mse_samples(d_real: Tensor, d_fake: Tensor, log_p_real: Tensor, log_q_real: Tensor,
                       log_p_fake: Tensor, log_q_fake: Tensor) -> Tensor:
    """E_{x ~ (p_data + p_g)/2}[(D(x) - D*(x))²], D* = p_data / (p_data + p_g) (Proposition 1).

    Estimated on equal numbers of real and generated samples (together, a sample of the mixture
    (p_data + p_g)/2: weighted where the mass lies), from D's values ``d_*`` = σ(logit) and the
    log-densities of p_data and p_g at those points (p_g: e.g. :meth:`NeighbourTree.log_density`).
    """
    d = torch.cat([d_real, d_fake]).double()
    log_ratio = torch.cat([log_p_real - log_q_real, log_p_fake - log_q_fake]).double()
    return (d - torch.sigmoid(log_ratio)).square().mean()  # σ(log p - log q) = p / (p + q)


# ---------------------------------------------------------------------------------------------
# Mode collapse on Gaussian mixtures (VEEGAN, PacGAN)
# ---------------------------------------------------------------------------------------------


def mode_metrics(samples: Tensor, centres: Tensor, std: float, n_required: int = 1) -> dict:
    """Mode coverage of ``samples`` on a mixture of isotropic Gaussians with common ``std``.

    Protocol of VEEGAN (Srivastava et al. 2017) as used by PacGAN (Lin et al. 2018):
      - each sample is assigned to its nearest centre (Euclidean distance);
      - it is high quality (HQ) if that distance is below 3·std;
      - modes covered = centres that are the nearest centre of at least ``n_required`` (default
        one) HQ samples;
      - reverse KL = KL(q‖u) = Σ_k q_k log(K·q_k), q the histogram of HQ samples over the K modes,
        u uniform; empty modes contribute 0 (0·log 0 = 0). With no HQ sample q is undefined and
        the reverse KL is reported as log K, its value for total collapse onto one mode.

    Returns ``{"modes_covered", "hq_fraction", "reverse_kl", "protocol"}``, the last a sentence
    stating the protocol and its parameters.
    """
    num_modes = len(centres)
    distances = torch.cdist(samples.to(torch.float64), centres.to(samples.device, torch.float64))
    nearest_distance, nearest = distances.min(1)
    high_quality = nearest_distance < 3 * std
    counts = torch.bincount(nearest[high_quality], minlength=num_modes)
    q = counts.double() / counts.sum().clamp_min(1)
    reverse_kl = torch.xlogy(q, q).sum() + math.log(num_modes)
    covered, hq_fraction, reverse_kl = torch.stack(
        [(counts >= n_required).sum(), high_quality.double().mean(), reverse_kl]
    ).tolist()
    protocol = (
        f"VEEGAN/PacGAN: {len(samples)} samples, high quality if within 3σ (σ={std:g}) of the "
        f"nearest of {num_modes} centres; a mode is covered by >= {n_required} high-quality "
        f"sample(s); reverse KL of the high-quality mode histogram vs uniform (log {num_modes} "
        "when none is high quality)"
    )
    return {
        "modes_covered": int(covered),
        "hq_fraction": hq_fraction,
        "reverse_kl": reverse_kl,
        "protocol": protocol,
    }


# ---------------------------------------------------------------------------------------------
# Feature-space sample quality: Fréchet distance, KID, precision / recall
# ---------------------------------------------------------------------------------------------


def _psd_sqrt(matrix: Tensor) -> Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix, by eigendecomposition."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return (eigenvectors * eigenvalues.clamp_min(0).sqrt()) @ eigenvectors.T


def gaussian_stats(feats: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(mean, unbiased covariance, its PSD square root) of an (n, d) feature set, float64: the
    reference side of :func:`frechet_distance`, computed once per reference set."""
    a = feats.to(torch.float64)
    cov = torch.cov(a.T)
    return a.mean(0), cov, _psd_sqrt(cov)


def frechet_distance(feat_a: Tensor, feat_b: Tensor, stats_a: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
    """Fréchet distance between Gaussians fitted to two feature sets (FID, Heusel et al. 2017).

    d² = ‖μ_a - μ_b‖² + Tr(C_a + C_b - 2(C_a^½ C_b C_a^½)^½),

    μ, C the sample mean and unbiased covariance of each (n, d) set (Dowson & Landau 1982 for
    the Fréchet distance of Gaussians). Tr((C_a C_b)^½) is computed as the sum of the square roots
    of the eigenvalues of the symmetric matrix C_a^½ C_b C_a^½, in float64: unlike a general
    matrix square root (scipy.linalg.sqrtm) it stays real, and rank-deficient covariances
    (e.g. ReLU features that are often zero) need no regularising offset. Its value agrees with
    torchmetrics' FrechetInceptionDistance fed with the same features; a function of feature
    tensors is used rather than that metric object so that one feature pass serves FID, KID and
    precision/recall alike.
    """
    mean_a, cov_a, sqrt_a = stats_a if stats_a is not None else gaussian_stats(feat_a)
    b = feat_b.to(torch.float64)
    cov_b = torch.cov(b.T)
    middle = sqrt_a @ cov_b @ sqrt_a
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    mean_term = (mean_a - b.mean(0)).square().sum()
    return mean_term + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt


def kid(
    feat_a: Tensor, feat_b: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0,
    cache: dict | None = None,
) -> dict[str, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with a cubic kernel.

    k(x, y) = (x·y / d + 1)³ on d-dimensional features;
    MMD²_u = Σ_{i≠j} k(a_i, a_j)/(m(m-1)) + Σ_{i≠j} k(b_i, b_j)/(m(m-1)) - 2 Σ_{i,j} k(a_i, b_j)/m²,
    averaged over ``subsets`` pairs of random subsets of m = ``subset_size`` rows (clipped to the
    smaller set), drawn without replacement. The draw uses its own generator seeded with
    ``seed`` (torchmetrics' KernelInceptionDistance draws from the global one), so repeated
    evaluations are reproducible and leave the caller's random state alone. The kernel values in
    float32, their sums in float64.

    Returns ``{"kid": mean, "kid_std": std over subsets}``.
    """
    # the kernel in float32 (features standardised to order one: relative rounding ~1e-7 per entry, far
    # below the figures' printed precision), its sums in float64
    a, b = feat_a.to(torch.float32), feat_b.to(torch.float32)
    m = min(subset_size, len(a), len(b))
    one = torch.ones((), dtype=torch.float32, device=a.device)

    def kernel(u: Tensor, v: Tensor) -> Tensor:
        return torch.addmm(one, u, v.T, alpha=1 / a.shape[1]).pow_(3)

    generator = torch.Generator().manual_seed(seed)
    # the a-side sums depend only on a and the subsets drawn: with ``cache`` (kept with a fixed
    # ``feat_a``, e.g. a run's real reference) they are computed once for each (len(b), m, ...)
    key = ("kid_within_a", len(b), m, subsets, seed)
    within_a = cache.get(key) if cache is not None else None
    first, estimates = within_a is None, []
    within_a = [] if first else within_a
    for i in range(subsets):
        x = a.index_select(0, torch.randperm(len(a), generator=generator)[:m].to(a.device))
        y = b.index_select(0, torch.randperm(len(b), generator=generator)[:m].to(b.device))
        if first:
            k_xx = kernel(x, x)
            within_a.append(k_xx.sum(dtype=torch.float64) - k_xx.diagonal().sum(dtype=torch.float64))
        k_yy, k_xy = kernel(y, y), kernel(x, y)
        within = ((within_a[i] + k_yy.sum(dtype=torch.float64) - k_yy.diagonal().sum(dtype=torch.float64))
                  / (m * (m - 1)))
        estimates.append(within - 2 * k_xy.sum(dtype=torch.float64) / m**2)
    if first and cache is not None:
        cache[key] = within_a
    estimates = torch.stack(estimates)
    mean, std = torch.stack([estimates.mean(), estimates.std(correction=0)]).tolist()
    return {"kid": mean, "kid_std": std}


def squared_distances(x: Tensor, y: Tensor, y_sq_norms: Tensor | None = None) -> Tensor:
    """‖x_i - y_j‖² for every pair of rows, as ‖x‖² - 2x·y + ‖y‖² with one matrix product (what
    ``torch.cdist`` computes before its square root), clamped at 0; ``y_sq_norms`` may be passed in."""
    if y_sq_norms is None:
        y_sq_norms = y.square().sum(1)
    return torch.addmm(y_sq_norms, x, y.T, alpha=-2).add_(x.square().sum(1, keepdim=True)).clamp_min_(0)


class _Screen:
    """Squared distances of float64 feature sets, screened in float32: one float32 matrix product per
    block gives every pair's squared distance within ``tol(i, j)`` = (d + 8)·2⁻²³·(‖x_i‖² + ‖y_j‖²) (a
    bound on the float32 rounding of ‖x‖² - 2x·y + ‖y‖² in any summation order); pairs whose answer that
    margin leaves open are computed exactly, as Σ (x - y)² in float64."""

    def __init__(self, x: Tensor, y: Tensor):
        self.x, self.y = x.to(torch.float64), y.to(torch.float64)
        self.x_sq, self.y_sq = self.x.square().sum(1), self.y.square().sum(1)
        self.x32, self.y32 = self.x.float(), self.y.float()
        self.x_sq32, self.y_sq32 = self.x_sq.float(), self.y_sq.float()
        self.unit = (x.shape[1] + 8) * 2.0**-23
        self.buffers = _Buffers()

    def block(self, rows: slice) -> tuple[Tensor, float]:
        """Float32 squared distances of the rows ``rows`` of x to every row of y (‖x‖² + ‖y‖², then
        -2x·y added in place; within the margin of the exact values, so possibly just below 0), and
        one margin that bounds their error (the largest of the block). The block is overwritten by
        the next call."""
        x32 = self.x32[rows]
        d2 = torch.add(self.x_sq32[rows, None], self.y_sq32, out=self.buffers.get("d2", (len(x32), len(self.y32)), x32))
        d2.addmm_(x32, self.y32.T, alpha=-2)
        return d2, self.unit * float(self.x_sq[rows].max() + self.y_sq.max())

    def exact(self, i: Tensor, j: Tensor) -> Tensor:
        """‖x_i - y_j‖² in float64 for the pairs (i[n], j[n])."""
        return (self.x.index_select(0, i) - self.y.index_select(0, j)).square().sum(-1)

    def exact_rows(self, rows: slice, j: Tensor) -> Tensor:
        """‖x_i - y_j[i, c]‖² in float64 for each row i in ``rows`` and each column c of ``j``."""
        y = self.y.index_select(0, j.flatten()).view(*j.shape, -1)
        return (self.x[rows, None, :] - y).square().sum(-1)


def _any(mask: Tensor, dim: int | None = None) -> Tensor:
    """``mask.any(dim)`` (a Python bool when ``dim`` is None), reduced as uint8: on CPU, torch's bool
    ``any`` over a (1,000 × 10,000) block takes about 10 ms, uint8 ``amax`` under 1 ms."""
    as_bytes = mask.view(torch.uint8)
    return bool(as_bytes.max()) if dim is None else as_bytes.amax(dim).bool()


def knn_sq_radii(feats: Tensor, k: int = 3, batch_size: int = 1000, extra: int = 8) -> Tensor:
    """Squared distance from each row to its k-th nearest other row (the row itself is the 0-th), float64.

    The k + 1 + ``extra`` nearest candidates of each row come from float32 distances (see _Screen);
    their exact distances give the k-th. A row whose candidates may miss a pair (the float32 gap to
    the last candidate is within the rounding margin) is computed exactly in full."""
    screen, n = _Screen(feats, feats), len(feats)
    width = min(k + 1 + extra, n)
    radii = []
    for start in range(0, n, batch_size):
        rows = slice(start, min(start + batch_size, n))
        d2, tol = screen.block(rows)
        values, cols = d2.topk(width, dim=1, largest=False)
        exact = screen.exact_rows(rows, cols).sort(1).values[:, k]
        unsure = values[:, -1] <= values[:, k] + 2 * tol if width < n else torch.zeros_like(exact, dtype=torch.bool)
        if unsure.any():
            block = screen.x[rows][unsure]
            nearest = squared_distances(block, screen.x, screen.x_sq).topk(k + 1, dim=1, largest=False)
            exact[unsure] = nearest.values[:, k]
        radii.append(exact)
    return torch.cat(radii)


def precision_recall_knn(
    real_feats: Tensor, fake_feats: Tensor, k: int = 3, batch_size: int = 1000, fake_sets: int = 1,
    real_sq_radii: Tensor | None = None,
) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds.

    The manifold of a set X is the union of balls B(x, r_k(x)), r_k(x) the distance from x to
    its k-th nearest neighbour in X (itself excluded; k = 3 in the paper):
      precision = fraction of fake samples inside the manifold of the real set,
      recall    = fraction of real samples inside the manifold of the fake set.
    Recall depends on the number of fakes (their radii shrink as it grows): with ``fake_sets`` > 1
    the fakes are that many disjoint sets of equal size (consecutive rows), each with its own
    manifold, and recall is the mean of theirs; precision does not depend on that grouping.
    Squared pairwise distances are screened in float32 with a proven rounding margin, and the pairs
    that margin leaves open are decided in float64 (so the answer is float64's), ``batch_size`` rows
    at a time; each block of real-to-fake distances serves both precision and recall.
    Returns ``{"precision", "recall"}``.
    """
    if len(fake_feats) % fake_sets:
        raise ValueError(f"cannot split {len(fake_feats)} fakes into {fake_sets} sets of equal size")
    real, fake = real_feats.to(torch.float64), fake_feats.to(torch.float64)
    # squared radii, compared with squared distances (a distance equal to a radius is inside)
    real_r2 = knn_sq_radii(real, k, batch_size) if real_sq_radii is None else real_sq_radii  # may be cached
    size = len(fake) // fake_sets
    fake_r2 = torch.cat([knn_sq_radii(part, k, batch_size) for part in fake.chunk(fake_sets)])
    real_r2_32, fake_r2_32 = real_r2.float(), fake_r2.float()
    screen = _Screen(real, fake)
    fake_inside = torch.zeros(len(fake), dtype=torch.bool, device=fake.device)
    real_inside = torch.zeros(len(real), fake_sets, dtype=torch.bool, device=fake.device)  # in each set's manifold
    set_of = torch.arange(len(fake), device=fake.device) // size
    for start in range(0, len(real), batch_size):
        rows = slice(start, min(start + batch_size, len(real)))
        d2, tol = screen.block(rows)
        # precision: fake j inside the ball of real i; recall: real i inside the ball of fake j
        for radius2, radius2_exact, precision_side in ((real_r2_32[rows, None], lambda i, j: real_r2[i], True),
                                                      (fake_r2_32[None, :], lambda i, j: fake_r2[j], False)):
            # comparisons into reused masks, reduced as uint8 (amax): several times faster than bool any()
            sure = torch.le(d2, radius2 - tol, out=screen.buffers.get("sure", d2.shape, d2, torch.bool))
            if precision_side:
                fake_inside |= _any(sure, 0)
            else:
                real_inside[rows] |= _any(sure.view(len(d2), fake_sets, size), 2)
            maybe = torch.le(d2, radius2 + tol, out=screen.buffers.get("maybe", d2.shape, d2, torch.bool))
            maybe ^= sure  # within the margin (sure implies maybe): decided exactly
            if _any(maybe):
                open_rows = _any(maybe, 1).nonzero()[:, 0]  # usually a few: nonzero() on them alone
                open_pairs = maybe.index_select(0, open_rows).nonzero()
                i, j = open_rows[open_pairs[:, 0]] + start, open_pairs[:, 1]
                inside = screen.exact(i, j) <= radius2_exact(i, j)
                if precision_side:
                    fake_inside[j[inside]] = True
                else:
                    real_inside[i[inside], set_of[j[inside]]] = True
    recall = real_inside.double().mean()
    precision, recall = torch.stack([fake_inside.double().mean(), recall]).tolist()
    return {"precision": precision, "recall": recall}
