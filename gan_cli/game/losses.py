"""The loss pairs, as pure functions of D's logits a = logit D(x) (GAN_REFERENCE.md sec. 1): with
log D(x) = log sigma(a) = -softplus(-a) and log(1 - D) = -softplus(a), nothing overflows or takes log(0).
Each returns the minibatch MEAN of what its player MINIMIZES; D maximises V(D, G) = E log D(x) +
E log(1 - D(G(z))), so D's loss is -V."""

from __future__ import annotations

import math
from typing import Callable, Dict, Mapping, NamedTuple, Optional

import torch
import torch.nn.functional as F

from gan_cli.config import Knob, entry, free, real, register, share


def d_cross_entropy(a_real: torch.Tensor, a_fake: torch.Tensor) -> torch.Tensor:
    """D minimizes -[log D(x) + log(1 - D(G(z)))] = softplus(-a_real) + softplus(a_fake); 2 log 2 ~ 1.3863
    nats at the global optimum (D = 1/2 everywhere)."""
    return F.softplus(-a_real).mean() + F.softplus(a_fake).mean()


def g_nonsaturating(a_fake: torch.Tensor) -> torch.Tensor:
    """G minimizes -log D(G(z)) = softplus(-a_fake). Minimax's G minimizes log(1 - D(G(z))) = -softplus(a_fake)
    (the true saturating loss): its d/da = -sigma(a) -> 0 as D rejects the fakes (a -> -inf), so its gradient
    vanishes early on; this one has the same fixed point and d/da = -(1 - sigma(a)) -> -1 there."""
    return F.softplus(-a_fake).mean()


def make_g_maximum_likelihood(max_logit: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """G minimizes -1/2 exp(a_fake) = -1/2 exp(sigma^-1(D(G(z)))) (Goodfellow 2016, sec. 3.2.4). With the
    optimal D, exp(a) = p_data/p_g, and the expected gradient equals that of KL(p_data || p_g). exp overflows
    for large logits, so a is clamped at ``max_logit`` first (exp(20) ~ 4.9e8): past that point the
    generator gets no gradient from that sample."""
    return lambda a_fake: -0.5 * torch.exp(a_fake.clamp(max=max_logit)).mean()


def d_least_squares(a_real: torch.Tensor, a_fake: torch.Tensor) -> torch.Tensor:
    """LSGAN (Mao et al. 2017), targets 1 and 0: D minimizes 1/2 (a_real - 1)^2 + 1/2 a_fake^2."""
    return 0.5 * (a_real - 1).pow(2).mean() + 0.5 * a_fake.pow(2).mean()


def d_hinge(a_real: torch.Tensor, a_fake: torch.Tensor) -> torch.Tensor:
    """Hinge (Lim & Ye 2017; Miyato et al. 2018): D minimizes relu(1 - a_real) + relu(1 + a_fake)."""
    return F.relu(1 - a_real).mean() + F.relu(1 + a_fake).mean()


def g_linear(a_fake: torch.Tensor) -> torch.Tensor:
    """Hinge and WGAN-GP generators minimize -a_fake (raise the critic's score of the fakes)."""
    return -a_fake.mean()


def gradient_penalty(D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): mean over samples of (||grad_x a(x_hat)||_2 - 1)^2, where
    x_hat = eps x + (1 - eps) G(z) with ONE eps ~ U(0, 1) per sample (broadcast over all its coordinates),
    the norm over the whole flattened sample. The caller multiplies by lambda (10 in the paper)."""
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


# "D has won": D separates real from fake so well that G's gradient vanishes or D stops learning. Each
# test reads one log window's means (no extra host sync): D's scores as the D/ tags show them and D's loss
# with d_scale undone; it returns what it saw, for the console, or None.
def won_cross_entropy(real: float, fake: float, loss: float) -> Optional[str]:
    """D(x) > 0.99 and D(G(z)) < 0.01: log(1 - D(G(z))) has almost no gradient (minimax's G stalls)."""
    return (f"D rejects nearly every fake (D(G(z)) = {fake:.4f}, D(x) = {real:.4f}): G's gradient may vanish, "
            "watch grad/G") if real > 0.99 and fake < 0.01 else None


def won_least_squares(real: float, fake: float, loss: float) -> Optional[str]:
    """D's loss 1/2 E(a_real - 1)^2 + 1/2 E a_fake^2 (its outputs' mean squared distance to targets 1 / 0)
    below 0.01 (4 % of its 0.25 at the equilibrium a = 1/2): an RMS distance under 0.1, so D's gradient,
    a - target, has almost vanished (G's, a_fake - 1, has not)."""
    return (f"D's outputs sit on their targets (D(x) = {real:.3f} ~ 1, D(G(z)) = {fake:.3f} ~ 0, RMS distance "
            f"{math.sqrt(loss):.3f} < 0.1): D has almost stopped learning, watch grad/D") if loss < 0.01 else None


def won_hinge(real: float, fake: float, loss: float) -> Optional[str]:
    """D's hinge loss is 0 over the window: every real score >= 1, every fake <= -1, so D's gradient is
    exactly 0 and D no longer follows G."""
    return (f"every hinge term of D is inactive (all D(x) >= 1, all D(G(z)) <= -1; means {real:.3f}, {fake:.3f}): "
            "D has stopped learning, watch grad/D") if loss == 0 else None


class Loss(NamedTuple):
    """A choice of ``loss=``: the pair of objectives on D's logits, and all else D's side needs (penalty,
    scale, how D's output reads as a score). The updates call :func:`d_objective` and :func:`score` only."""

    d: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g: Callable[[torch.Tensor], torch.Tensor]
    about: str = ""
    # D minimizes the cross-entropy: sigma(a) estimates p_data / (p_data + p_g); the D/ tags show sigma(a), else a
    probability: bool = False
    critic: bool = False  # D's output is an unbounded score with no targets (WGAN): no "D has won" test (won is None)
    won: Optional[Callable[[float, float, float], Optional[str]]] = None  # (game/D_real, game/D_fake, D's loss) -> why
    knobs: Mapping[str, Knob] = {}  # the loss.* settings it reads beyond the shared ones
    penalty: Optional[Callable[[object], float]] = None  # the loss config -> the weight of the gradient penalty
    build: Optional[Callable[[object], "Loss"]] = None  # the loss config -> this entry with its knobs applied
    d_scale: float = 1.0  # D minimizes d_scale * (its loss + penalty)
    penalty_weight: float = 0.0  # the gradient penalty's weight in this run

    def d_objective(self, D: torch.nn.Module, x: torch.Tensor, fake: torch.Tensor, a_real: torch.Tensor,
                    a_fake: torch.Tensor) -> torch.Tensor:
        """What D minimizes on this minibatch: its loss, plus its penalty, times its scale."""
        loss = self.d(a_real, a_fake)
        if self.penalty_weight > 0:  # on the gradient of D as a function: its dropout off (eval mode), then back
            was = D.training
            try:
                loss = loss + self.penalty_weight * gradient_penalty(D.eval(), x, fake.detach())
            finally:
                D.train(was)
        return loss if self.d_scale == 1.0 else self.d_scale * loss

    def score(self, a: torch.Tensor) -> torch.Tensor:
        """What the D/ tags report: D = sigma(a) where D is a probability (the cross-entropy losses), else
        D's raw output a (least_squares: targets 1 / 0; hinge: margins +1 / -1; wasserstein_gp: the critic)."""
        a = a.detach().float()
        return torch.sigmoid(a) if self.probability else a.clone()  # a copy: CUDA graphs reuse their outputs

    def has_won(self, real: float, fake: float, d_loss: float) -> Optional[str]:
        """Why D has won, from one log window's means of D's scores and of D's loss as logged (scaled)."""
        return None if self.won is None else self.won(real, fake, d_loss / self.d_scale)


share("loss", {
    "d_scale": real(1.0, 0, 100, "D minimizes d_scale x its loss (the authors' MNIST code: 0.5, the mean of two BCEs)",
                    lo_open=True),
    "recipe": free({},
                   "the settings its paper trains with, applied where the command line and the preset chose nothing"),
})


def _cross_entropy(g: Callable[[torch.Tensor], torch.Tensor], about: str, **rest) -> Loss:
    return Loss(d_cross_entropy, g, about, probability=True, won=won_cross_entropy, **rest)


# The choices of loss=: one register(...) each (and a YAML file in conf/loss/). A WGAN critic's scores have no
# scale to saturate at: G's gradient does not vanish as it separates, so wasserstein_gp has no "D has won" test.
LOSSES: Dict[str, Loss] = {name: register("loss", name, loss) for name, loss in {
    "minimax": _cross_entropy(lambda a_fake: -F.softplus(a_fake).mean(),  # log(1 - D(G(z))), see g_nonsaturating
                              "the true saturating game: G minimizes log(1 - D(G(z)))"),
    "nonsaturating": _cross_entropy(g_nonsaturating, "G minimizes -log D(G(z)) (the paper's practical choice)"),
    "maximum_likelihood": _cross_entropy(
        make_g_maximum_likelihood(20.0),
        "G minimizes -exp(logit D(G(z))) / 2: maximum likelihood at the optimal D (Goodfellow 2016)",
        knobs={"max_logit": real(20.0, 0, 80, "D's logit is clamped here before exp", lo_open=True)},
        build=lambda cfg: LOSSES["maximum_likelihood"]._replace(g=make_g_maximum_likelihood(cfg.max_logit))),
    "least_squares": Loss(d_least_squares, lambda a_fake: 0.5 * (a_fake - 1).pow(2).mean(),  # G: 1/2 (a_fake - 1)^2
                          "LSGAN (Mao et al. 2017), targets 1 and 0", won=won_least_squares),
    "hinge": Loss(d_hinge, g_linear, "hinge loss (Lim & Ye 2017)", won=won_hinge),
    # the WGAN critic (Arjovsky et al. 2017) minimizes a_fake - a_real (the penalty is added apart)
    "wasserstein_gp": Loss(lambda a_real, a_fake: a_fake.mean() - a_real.mean(), g_linear,
                           "WGAN-GP (Gulrajani et al. 2017): a critic with a gradient penalty",
                           critic=True, knobs={"gp_weight": real(10.0, 0, 10000, "lambda of the gradient penalty")},
                           penalty=lambda cfg: float(cfg.gp_weight)),
}.items()}


def get(cfg) -> Loss:
    """The loss of the loss config node ``cfg`` with its settings applied; an unknown name is a UserError."""
    loss = entry("loss", cfg.name)
    if loss.build is not None:
        loss = loss.build(cfg)
    weight = loss.penalty(cfg) if loss.penalty is not None else 0.0
    return loss._replace(d_scale=float(cfg.d_scale), penalty_weight=weight)
