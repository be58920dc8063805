"""Each estimator against a known answer: analytic densities, closed forms, hand-built sets."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from gan_cli.evaluation.metrics import (
    NeighbourTree,
    _ParzenWindow,
    d_star,
    frechet_distance,
    grid_centres,
    histogram_density,
    jsd_corrected,
    jsd_from_log_densities,
    kid,
    knn_sq_radii,
    mode_metrics,
    parzen_log_likelihood,
    parzen_sigma_grid,
    precision_recall_knn,
)


def gaussian_log_density(mean: float, std: float):
    return lambda x: torch.distributions.Normal(mean, std).log_prob(x).sum(1)


# --- Parzen window -----------------------------------------------------------------------------


def test_parzen_window_log_density_matches_direct_mixture_formula():
    gen = torch.Generator().manual_seed(0)
    centres, x = torch.randn(50, 3, generator=gen), torch.randn(7, 3, generator=gen)
    sigmas = torch.tensor([0.3, 1.0], dtype=torch.float64)
    kernels = torch.distributions.Normal(centres.double()[None, None], sigmas[:, None, None, None])
    direct = kernels.log_prob(x.double()[None, :, None]).sum(-1).logsumexp(-1) - math.log(50)
    # float32 squared distances: agreement to float32 rounding
    window = _ParzenWindow(centres)
    torch.testing.assert_close(window.log_density(x, sigmas, batch_size=3), direct, rtol=1e-6, atol=1e-5)


def test_parzen_log_likelihood_matches_float64_on_images():
    # MNIST-like: 784 pixels in [0, 1], a narrow bandwidth (where the rounding of the squared
    # distances weighs most); the reference is the all-float64 formula, with torch's logsumexp
    gen = torch.Generator().manual_seed(0)
    protos = (torch.rand(20, 784, generator=gen) < 0.2).float()
    def images(n):
        noisy = protos[torch.randint(20, (n,), generator=gen)] + 0.15 * torch.randn(n, 784, generator=gen)
        return noisy.clamp(0, 1)
    samples, val, test = images(3000), images(300), images(1000)
    sigmas = parzen_sigma_grid()
    def float64_density(x, sigma_values):
        sq = torch.cdist(x.double(), samples.double()).square()
        return torch.stack([torch.logsumexp(sq / (-2 * s**2), 1) - math.log(len(samples))
                            - 784 * math.log(s * math.sqrt(2 * math.pi)) for s in sigma_values.tolist()])
    sigma = sigmas[float64_density(val, sigmas).mean(1).argmax()]
    exact = float64_density(test, sigma[None])[0]
    result = parzen_log_likelihood(samples, val, test)
    assert result["sigma"] == pytest.approx(sigma.item())
    assert result["ll"] == pytest.approx(exact.mean().item(), abs=1e-3)
    assert result["se"] == pytest.approx(exact.std(correction=0).item() / math.sqrt(len(test)), rel=1e-5)
    torch.testing.assert_close(_ParzenWindow(samples).log_density(test, sigma[None])[0], exact, rtol=0, atol=5e-3)


def test_parzen_on_images_with_a_black_background_matches_float64():
    # MNIST-like: strokes on a black background, so that a batch is non-zero on only some of the
    # pixels and the products are taken over those columns alone (uncentred); dense generator samples
    gen = torch.Generator().manual_seed(1)
    protos = torch.zeros(10, 28, 28)
    protos[:, 6:22, 8:20] = (torch.rand(10, 16, 12, generator=gen) < 0.4).float()
    def images(n, noise):
        picked = protos[torch.randint(10, (n,), generator=gen)]
        return (picked + noise * torch.randn(n, 28, 28, generator=gen) * (picked > 0)).clamp(0, 1).flatten(1)
    samples = (images(2000, 0.2) + 0.02 * torch.rand(2000, 784, generator=gen)).clamp(0, 1)  # nowhere zero
    val, test = images(300, 0.2), images(700, 0.2)
    window = _ParzenWindow(samples)
    assert window.sparse_columns(test) is not None and len(window.sparse_columns(test)) <= 16 * 12
    assert window.sparse_columns(samples) is None  # dense rows: the centred product
    sigmas = parzen_sigma_grid()
    def float64_density(x, sigma_values):
        sq = torch.cdist(x.double(), samples.double()).square()
        return torch.stack([torch.logsumexp(sq / (-2 * s**2), 1) - math.log(len(samples))
                            - 784 * math.log(s * math.sqrt(2 * math.pi)) for s in sigma_values.tolist()])
    for sigma in sigmas[[0, 4, 9]]:
        torch.testing.assert_close(window.log_density(test, sigma[None], batch_size=256)[0],
                                   float64_density(test, sigma[None])[0], rtol=0, atol=5e-3)
    sigma = sigmas[float64_density(val, sigmas).mean(1).argmax()]
    exact = float64_density(test, sigma[None])[0]
    result = parzen_log_likelihood(samples, val, test)
    assert result["sigma"] == pytest.approx(sigma.item())
    assert result["ll"] == pytest.approx(exact.mean().item(), abs=1e-3)
    # the dense samples as queries go through the centred product: the same densities
    torch.testing.assert_close(window.log_density(samples[:200], sigma[None])[0],
                               float64_density(samples[:200], sigma[None])[0], rtol=0, atol=5e-3)


def test_parzen_sigma_grid_is_the_papers():
    grid = parzen_sigma_grid()
    assert len(grid) == 10 and grid[0] == pytest.approx(0.1) and grid[-1] == pytest.approx(1.0)


def test_parzen_log_likelihood_approaches_the_analytic_gaussian():
    # Centres and test points from N(0, I_2): the window at sigma estimates the smoothed law
    # N(0, (1 + σ²) I), whose log-density is known in closed form at every test point.
    gen = torch.Generator().manual_seed(0)
    samples, val, test = (torch.randn(n, 2, generator=gen) for n in (5000, 1000, 5000))
    result = parzen_log_likelihood(samples, val, test)
    smoothed = torch.distributions.Normal(0.0, math.sqrt(1 + result["sigma"] ** 2))
    assert 0.15 < result["sigma"] < 0.5  # Silverman's rule: (4/(d+2))^(1/(d+4)) n^(-1/(d+4)) ≈ 0.24
    assert result["ll"] == pytest.approx(smoothed.log_prob(test).sum(1).mean().item(), abs=0.02)
    assert result["ll"] == pytest.approx(-math.log(2 * math.pi * math.e), abs=0.06)  # -entropy
    assert result["se"] == pytest.approx(1 / math.sqrt(len(test)), rel=0.15)  # std(log N) ≈ 1


def test_parzen_sigma_search_follows_the_data_scale():
    gen = torch.Generator().manual_seed(1)
    wide = 10 * torch.randn(3000, 1, generator=gen)
    assert parzen_log_likelihood(wide[:2000], wide[2000:2500], wide[2500:])["sigma"] == 1.0
    narrow = 0.1 * torch.randn(3000, 1, generator=gen)
    assert parzen_log_likelihood(narrow[:2000], narrow[2000:2500], narrow[2500:])["sigma"] == 0.1


# --- JSD and the optimal discriminator ---------------------------------------------------------


def knn_log_q(queries, samples, k=10, exclude_self=False):
    """The k-NN log-density of the law of ``samples`` at ``queries``: one NeighbourTree search."""
    return NeighbourTree(samples).log_density(queries, [k], exclude_self)[0]


def knn_jsd_terms(log_p, real, fake, k=10):
    """What the JSD estimators read: p exact and q by the k-NN density of ``fake`` (leave one out at the fakes),
    at ``real`` and at ``fake``."""
    return (log_p(real).double(), knn_log_q(real, fake, k), log_p(fake).double(),
            knn_log_q(fake, fake, k, exclude_self=True))


def knn_jsd(log_p, real, fake, other, k=10):
    """(jsd_corrected, its floor) for these samples, the floor measured on ``other``, a second real sample."""
    floor = jsd_from_log_densities(*knn_jsd_terms(log_p, real, other, k))
    return jsd_corrected(*knn_jsd_terms(log_p, real, fake, k), floor), floor


def numerical_jsd(mean_p, mean_q, std=1.0):
    x = np.linspace(-15, 15, 200001)
    p = np.exp(-((x - mean_p) ** 2) / (2 * std**2)) / (std * np.sqrt(2 * np.pi))
    q = np.exp(-((x - mean_q) ** 2) / (2 * std**2)) / (std * np.sqrt(2 * np.pi))
    m = (p + q) / 2
    return 0.5 * np.trapezoid(p * np.log(p / m) + q * np.log(q / m), x)


def test_jsd_of_two_shifted_gaussians_matches_numerical_integration():
    gen = torch.Generator().manual_seed(0)
    log_p = gaussian_log_density(0.0, 1.0)
    real, other = torch.randn(50_000, 1, generator=gen), torch.randn(50_000, 1, generator=gen)
    fake = 1.5 + torch.randn(50_000, 1, generator=gen)
    estimate, _ = knn_jsd(log_p, real, fake, other)
    assert estimate.item() == pytest.approx(numerical_jsd(0.0, 1.5), rel=0.05)


def test_the_search_on_a_line_finds_what_a_k_d_tree_finds():
    """In 1-D the samples are searched sorted, by bisection: the same k-th neighbour distances as scipy's k-d tree
    (which serves 2-D and up), exactly, with ties, queries beyond either end, k = 1 to n, and each sample's own point
    left out."""
    from scipy.spatial import cKDTree
    from scipy.special import digamma

    gen = torch.Generator().manual_seed(0)
    cases = [(torch.randn(3000, 1, generator=gen), 1.5 * torch.randn(2000, 1, generator=gen)),  # queries past the ends
             (torch.randint(0, 40, (2000, 1), generator=gen).double(),  # many ties
              torch.randint(-3, 43, (500, 1), generator=gen).double()),
             (torch.zeros(50, 1), torch.tensor([[0.0], [1.0], [-2.0]]))]  # a point mass
    for samples, queries in cases:
        n = len(samples)
        tree = cKDTree(samples.double().numpy())
        line = NeighbourTree(samples)
        for ks in ([1, 2, 10], [n // 2, n - 1, n]):
            distances = torch.as_tensor(tree.query(queries.double().numpy(), k=ks)[0]).reshape(len(queries), -1)
            for i, k in enumerate(ks):
                expected = digamma(k) - math.log(n) - math.log(2) - torch.log(distances[:, i])  # V_1 = 2
                torch.testing.assert_close(line.log_density(queries, [k])[0], expected, rtol=0, atol=1e-12)
            own = torch.as_tensor(tree.query(samples.double().numpy(), k=[k + 1 for k in ks[:2]])[0])
            for i, k in enumerate(ks[:2]):
                expected = digamma(k) - math.log(n - 1) - math.log(2) - torch.log(own[:, i])
                torch.testing.assert_close(line.log_density(samples, [k], exclude_self=True)[0], expected, rtol=0,
                                           atol=1e-12)


def test_histogram_density_integrates_to_the_mass_inside():
    samples = torch.tensor([[0.1, 0.1], [0.6, 0.9], [0.6, 0.9], [3.0, 0.0]])
    density = histogram_density(samples, 0, 1, bins=2)
    centres = grid_centres(0, 1, bins=2, dim=2)
    assert density.sum().item() * 0.25 == pytest.approx(0.75)
    torch.testing.assert_close(centres[density.argmax()], torch.tensor([0.75, 0.75]).double())


def test_d_star_constructed_cases():
    p = torch.tensor([0.0, 0.2, 1.0, 3.0])
    torch.testing.assert_close(d_star(p, p), torch.full((4,), 0.5))
    torch.testing.assert_close(d_star(p[1:], torch.zeros(3)), torch.ones(3))
    assert d_star(torch.tensor([1.0]), torch.tensor([3.0])).item() == 0.25


# --- Mode collapse -----------------------------------------------------------------------------

ANGLES = 2 * math.pi * torch.arange(8) / 8
RING = torch.stack([ANGLES.cos(), ANGLES.sin()], dim=1)  # PacGAN's ring: radius 1, σ = 0.01
GEN = torch.Generator().manual_seed(0)


def test_all_modes_hit_exactly():
    result = mode_metrics(RING.repeat(10, 1), RING, std=0.01)
    assert result["modes_covered"] == 8 and result["hq_fraction"] == 1.0
    assert result["reverse_kl"] == pytest.approx(0.0, abs=1e-12)


def test_one_mode_only():
    result = mode_metrics(RING[:1] + 0.02 * torch.randn(100, 2, generator=GEN), RING, std=0.01)
    assert result["modes_covered"] == 1
    assert result["reverse_kl"] == pytest.approx(math.log(8))


def test_off_mode_noise():
    result = mode_metrics(0.5 * torch.rand(50, 2, generator=GEN) - 0.25, RING, std=0.01)
    assert result["modes_covered"] == 0 and result["hq_fraction"] == 0.0
    assert result["reverse_kl"] == pytest.approx(math.log(8))


def test_mode_histogram_and_required_count():
    # 3 samples on mode 0, 1 on mode 1, 1 off-mode: q = (¾, ¼, 0, ...), KL(q‖u) = Σ q log 8q.
    samples = torch.cat([RING[[0, 0, 0, 1]], torch.zeros(1, 2)])
    result = mode_metrics(samples, RING, std=0.01, n_required=2)
    assert result["modes_covered"] == 1 and result["hq_fraction"] == pytest.approx(0.8)
    assert result["reverse_kl"] == pytest.approx(0.75 * math.log(6) + 0.25 * math.log(2))


# --- Feature-space metrics ---------------------------------------------------------------------


def with_exact_moments(n: int, mean: torch.Tensor, cov: torch.Tensor, seed: int) -> torch.Tensor:
    """n points whose sample mean and unbiased sample covariance are exactly mean and cov."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, len(mean), generator=gen, dtype=torch.float64)
    z = z - z.mean(0)
    z = z @ torch.linalg.inv(torch.linalg.cholesky(torch.cov(z.T))).T
    return z @ torch.linalg.cholesky(cov).T + mean


def test_frechet_distance_of_a_set_with_itself_is_zero():
    feats = torch.randn(500, 16, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(feats, feats).item() == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_closed_form_for_two_gaussians():
    # For 2×2 covariances, Tr((C1 C2)^½) = sqrt(Tr(C1 C2) + 2 sqrt(det C1 det C2)).
    mean_a, mean_b = torch.tensor([0.0, 1.0]).double(), torch.tensor([2.0, -1.0]).double()
    cov_a = torch.tensor([[2.0, 0.6], [0.6, 1.0]]).double()
    cov_b = torch.tensor([[1.0, -0.3], [-0.3, 0.5]]).double()
    a, b = with_exact_moments(300, mean_a, cov_a, 0), with_exact_moments(400, mean_b, cov_b, 1)
    trace_sqrt = math.sqrt((cov_a @ cov_b).trace() + 2 * math.sqrt(cov_a.det() * cov_b.det()))
    expected = 8.0 + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    assert frechet_distance(a, b).item() == pytest.approx(expected.item(), rel=1e-9)


class Passthrough(nn.Module):
    """Identity 'feature extractor', so torchmetrics sees the features themselves."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x):
        return x


def test_frechet_distance_and_kid_agree_with_torchmetrics():
    from torchmetrics.image.fid import FrechetInceptionDistance  # (its import takes seconds: here, not at collection)
    from torchmetrics.image.kid import poly_mmd

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 8, generator=gen), 0.3 + 1.2 * torch.randn(300, 8, generator=gen)
    fid = FrechetInceptionDistance(feature=Passthrough(8))
    fid.update(a, real=True)
    fid.update(b, real=False)
    assert frechet_distance(a, b).item() == pytest.approx(fid.compute().item(), rel=1e-4)
    # One subset holding every row: the subset draw does not matter.
    expected = poly_mmd(a[:300].double(), b.double()).item()
    # its dot products are float32: agreement to 1e-7 (the figures are printed to 4 digits)
    assert kid(a[:300], b, subsets=1, subset_size=300)["kid"] == pytest.approx(expected, rel=1e-7)


def test_kid_is_zero_for_one_law_and_positive_for_two():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(2000, 8, generator=gen), torch.randn(2000, 8, generator=gen)
    same = kid(a, b, subsets=10, subset_size=500)
    shifted = kid(a, b + 1, subsets=10, subset_size=500)
    assert abs(same["kid"]) < 3 * same["kid_std"] + 1e-3
    assert shifted["kid"] > 10 * shifted["kid_std"]


def test_precision_recall_of_identical_and_disjoint_sets():
    feats = torch.randn(300, 5, generator=torch.Generator().manual_seed(0))
    assert precision_recall_knn(feats, feats, batch_size=64) == {"precision": 1.0, "recall": 1.0}
    assert precision_recall_knn(feats, feats + 100) == {"precision": 0.0, "recall": 0.0}


def test_precision_and_recall_separate_quality_from_coverage():
    # Fakes cover only half of the reals (a collapsed generator): precision 1, recall ≈ ½.
    real = torch.rand(2000, 2, generator=torch.Generator().manual_seed(0))
    collapsed = real[real[:, 0] < 0.5]
    result = precision_recall_knn(real, collapsed)
    assert result["precision"] == 1.0 and result["recall"] == pytest.approx(0.5, abs=0.03)


# --- k-NN density and the JSD of known-density data (eval/jsd) --------------------------------


def radial_jsd(std_p: float, std_q: float, dim: int) -> float:
    """JSD of N(0, std_p² I) and N(0, std_q² I) in 1 or 2 dimensions, by quadrature over the radius.
    For a mixture of well-separated modes with the same centres it is the mixture's JSD."""
    r = torch.linspace(1e-12, 12 * max(std_p, std_q), 2_000_001, dtype=torch.float64)
    dens = lambda s: torch.exp(-r**2 / (2 * s * s)) / (2 * math.pi * s * s) ** (dim / 2)  # noqa: E731
    p, q = dens(std_p), dens(std_q)
    m = (p + q) / 2
    shell = 2 * math.pi * r if dim == 2 else torch.full_like(r, 2.0)
    return torch.trapezoid(0.5 * (torch.xlogy(p, p / m) + torch.xlogy(q, q / m)) * shell, r).item()


def test_radial_quadrature_matches_the_line_quadrature():
    assert radial_jsd(1.0, 0.5, 1) == pytest.approx(0.0927, abs=2e-4)
    assert radial_jsd(1.0, 0.5, 2) == pytest.approx(0.1733, abs=2e-4)
    assert radial_jsd(1.0, 1.0, 2) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("dim", [1, 2])
def test_neighbour_tree_log_density_of_a_gaussian(dim):
    gen = torch.Generator().manual_seed(0)
    samples, queries = torch.randn(50000, dim, generator=gen), torch.randn(2000, dim, generator=gen) * 0.7
    exact = -queries.square().sum(1).double() / 2 - dim / 2 * math.log(2 * math.pi)
    error = NeighbourTree(samples).log_density(queries, [50])[0] - exact
    assert error.mean().abs() < 0.03 and error.abs().median() < 0.1
    point_mass = NeighbourTree(torch.zeros(20, dim))
    assert torch.isinf(point_mass.log_density(torch.zeros(1, dim), [5])[0]).all()


def toy(name: str):
    from omegaconf import OmegaConf

    from gan_cli import data as datasets
    from gan_cli.config import choice_node, schema

    cfg = OmegaConf.merge(OmegaConf.structured(schema("dataset")), choice_node("dataset", name))
    return datasets.load(cfg, torch.device("cpu"))


@pytest.mark.slow
@pytest.mark.parametrize("name,n,tolerance", [("mixture1d", 50000, 0.1), ("mixture1d", 2000, 0.1),
                                              ("ring", 50000, 0.1), ("grid", 50000, 0.1)])
def test_jsd_knn_against_quadrature(name, n, tolerance):
    """Half-std generator: the JSD of one mode pair (quadrature); collapsed onto the exact centres:
    log 2; perfect: 0. Within 10 % (0.01 for the perfect one), in 1-D and 2-D."""
    data = toy(name)
    torch.manual_seed(0)
    dim = data.centres.shape[1]
    real, other = data.sample(n), data.sample(n)
    mode = torch.multinomial(data.weights, n, replacement=True)
    half = data.centres[mode] + data.std / 2 * torch.randn(n, dim)
    collapsed = data.centres[mode]
    truth = radial_jsd(1.0, 0.5, dim)
    assert knn_jsd(data.log_prob, real, half, other)[0].item() == pytest.approx(truth, rel=tolerance)
    assert knn_jsd(data.log_prob, real, collapsed, other)[0].item() == pytest.approx(math.log(2), rel=tolerance)
    estimate, floor = knn_jsd(data.log_prob, real, data.sample(n), other)
    assert estimate.item() < 0.01 and abs(floor.item()) < 0.05
    # the raw estimate of a perfect generator is the floor's size: the bias the correction removes
    raw = jsd_from_log_densities(*knn_jsd_terms(data.log_prob, real, data.sample(n)))
    assert raw.item() == pytest.approx(floor.item(), abs=0.01)


def test_jsd_knn_reads_low_with_few_samples_per_mode():
    """The stated limit: grid with 2,000 samples (80 per mode) reads a half-std generator low."""
    data = toy("grid")
    torch.manual_seed(0)
    real, other = data.sample(2000), data.sample(2000)
    half = data.centres[torch.multinomial(data.weights, 2000, replacement=True)] + data.std / 2 * torch.randn(2000, 2)
    assert knn_jsd(data.log_prob, real, half, other)[0].item() < 0.8 * radial_jsd(1.0, 0.5, 2)


def test_recall_of_several_fake_sets_is_their_mean_and_precision_is_over_all():
    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(300, 4, generator=gen), 0.5 + torch.randn(400, 4, generator=gen)
    both = precision_recall_knn(real, fake, fake_sets=2)
    halves = [precision_recall_knn(real, half) for half in fake.split(200)]
    assert both["recall"] == pytest.approx((halves[0]["recall"] + halves[1]["recall"]) / 2, rel=1e-12)
    assert both["precision"] == precision_recall_knn(real, fake)["precision"]
    with pytest.raises(ValueError, match="401 fakes into 2"):
        precision_recall_knn(real, torch.randn(401, 4), fake_sets=2)


def test_any_as_uint8_equals_torch_any():
    from gan_cli.evaluation.metrics import _any

    gen = torch.Generator().manual_seed(0)
    for density in (0.0, 1e-4, 0.01, 0.5, 1.0):
        mask = torch.rand(40, 3, 50, generator=gen) < density
        assert _any(mask) is bool(mask.any())
        for dim in (0, 1, 2):
            assert torch.equal(_any(mask, dim), mask.any(dim))
        flat = mask.view(40, 150)
        assert torch.equal(_any(flat, 0), flat.any(0)) and torch.equal(_any(flat, 1), flat.any(1))


def test_screened_knn_radii_and_precision_recall_equal_the_float64_brute_force():
    # features on a coarse lattice: many exact ties and pairs right at a ball's boundary, where a
    # float32-only answer would go either way; duplicated rows force the exact fallback
    gen = torch.Generator().manual_seed(3)
    real = torch.randint(0, 4, (400, 16), generator=gen).double() * 0.5 + 10
    shifted = real[200:300] + 0.5 * torch.randint(0, 3, (100, 16), generator=gen)
    fake = torch.cat([real[:150] + 0.5 * (torch.rand(150, 16, generator=gen) < 0.05), real[:10].repeat(15, 1), shifted])
    def brute_radii(x, k):
        return torch.cdist(x, x).topk(k + 1, dim=1, largest=False).values[:, k]
    for x in (real, fake):
        torch.testing.assert_close(knn_sq_radii(x, 3, batch_size=64).sqrt(), brute_radii(x, 3), rtol=1e-12, atol=1e-12)
    r_real, r_fake = brute_radii(real, 3), brute_radii(fake, 3)
    d = torch.cdist(real, fake)
    precision = (d <= r_real[:, None] * (1 + 1e-12)).any(0).double().mean().item()
    recall = (d <= r_fake[None, :] * (1 + 1e-12)).any(1).double().mean().item()
    assert precision_recall_knn(real, fake, 3, batch_size=64) == {"precision": precision, "recall": recall}
