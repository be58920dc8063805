"""The loss pairs, pure functions of D's logits a = logit D(x) (GAN_REFERENCE.md sec. 1): log D = -softplus(-a)
and log(1 - D) = -softplus(a) never overflow. Each returns the minibatch MEAN of what its player MINIMIZES, over
the last dimension (a population's (P, m) logits give each member's)."""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional

import torch
import torch.nn.functional as F

from gan_cli.config import Knob, entry, free, real, register, share


def wide(a: torch.Tensor) -> torch.Tensor:
    """D's output as the losses read it: at least float32 (bf16 autocast's outputs widened; float64 kept)."""
    return a.to(torch.promote_types(a.dtype, torch.float32))


def d_cross_entropy(a_real: torch.Tensor, a_fake: torch.Tensor) -> torch.Tensor:
    """D minimizes -V = -[log D(x) + log(1 - D(G(z)))]: 2 log 2 ~ 1.3863 at the optimum (D = 1/2)."""
    return F.softplus(-a_real).mean(-1) + F.softplus(a_fake).mean(-1)


def g_nonsaturating(a_fake: torch.Tensor) -> torch.Tensor:
    """G minimizes -log D(G(z)). Minimax's log(1 - D(G(z))) has d/da = -sigma(a) -> 0 as D rejects the fakes
    (a -> -inf): its gradient vanishes early on; this one has the same fixed point and d/da -> -1 there."""
    return F.softplus(-a_fake).mean(-1)


def make_g_maximum_likelihood(max_logit: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """G minimizes -1/2 exp(a_fake) (Goodfellow 2016, sec. 3.2.4): with the optimal D, exp(a) = p_data/p_g and the
    expected gradient is KL(p_data || p_g)'s. a is clamped at ``max_logit`` first (exp overflows): past it a sample
    gives G no gradient."""
    return lambda a_fake: -0.5 * torch.exp(a_fake.clamp(max=max_logit)).mean(-1)


def d_least_squares(a_real: torch.Tensor, a_fake: torch.Tensor) -> torch.Tensor:
    """LSGAN (Mao et al. 2017), targets 1 and 0: D minimizes 1/2 (a_real - 1)^2 + 1/2 a_fake^2."""
    return 0.5 * (a_real - 1).pow(2).mean(-1) + 0.5 * a_fake.pow(2).mean(-1)


def d_hinge(a_real: torch.Tensor, a_fake: torch.Tensor) -> torch.Tensor:
    """Hinge (Lim & Ye 2017; Miyato et al. 2018): D minimizes relu(1 - a_real) + relu(1 + a_fake)."""
    return F.relu(1 - a_real).mean(-1) + F.relu(1 + a_fake).mean(-1)


def g_linear(a_fake: torch.Tensor) -> torch.Tensor:
    """Hinge and WGAN-GP generators minimize -a_fake (raise the critic's score of the fakes)."""
    return -a_fake.mean(-1)


def gradient_penalty(D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     generator=None) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): mean of (||grad_x a(x_hat)||_2 - 1)^2, x_hat = eps x + (1 - eps) G(z) with
    ONE eps ~ U(0, 1) per sample, the norm over the whole flattened sample; the caller multiplies by lambda. A
    population's (P, n, ...) samples take a list of P generators (each member's eps from its own) and give (P,)."""
    lead = 2 if isinstance(generator, (list, tuple)) else 1  # the dimensions before a sample's own
    ones = [1] * (real.dim() - lead)
    eps = (torch.stack([torch.rand(real.shape[1], *ones, device=real.device, dtype=real.dtype, generator=g)
                        for g in generator]) if lead == 2 else
           torch.rand(real.shape[0], *ones, device=real.device, dtype=real.dtype, generator=generator))
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(lead).norm(2, dim=-1) - 1).pow(2).mean(-1)


class Loss(NamedTuple):
    """A choice of ``loss=``: the pair of objectives on D's logits, and all else D's side needs."""

    d: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g: Callable[[torch.Tensor], torch.Tensor]
    about: str = ""
    # D minimizes the cross-entropy: sigma(a) estimates p_data / (p_data + p_g); the D/ tags show sigma(a), else a
    probability: bool = False
    critic: bool = False  # D's output is an unbounded score with no targets (WGAN): no "D has won" test (won is None)
    won: Optional[Callable[[float, float, float], Optional[str]]] = None  # (game/D_real, game/D_fake, D's loss) -> why
    knobs: Mapping[str, Knob] = {}  # the loss.* settings it reads beyond the shared ones
    build: Optional[Callable[[object], "Loss"]] = None  # the loss config -> this entry with its knobs applied
    d_scale: float = 1.0  # D minimizes d_scale * (its loss + penalty)
    penalty_weight: Any = 0.0  # the gradient penalty's weight in this run (a population's: one per member, (P,))

    def d_objective(self, D: torch.nn.Module, x: torch.Tensor, fake: torch.Tensor, a_real: torch.Tensor,
                    a_fake: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """What D minimizes on this minibatch: its loss, plus its penalty (its mixing drawn from ``generator``),
        times its scale."""
        loss = self.d(a_real, a_fake)
        # the penalty is on the gradient of D as a function: its dropout off (eval mode), then back
        if torch.is_tensor(self.penalty_weight) or self.penalty_weight > 0:
            was = D.training
            try:
                loss = loss + self.penalty_weight * gradient_penalty(D.eval(), x, fake.detach(), generator)
            finally:
                D.train(was)
        return loss if self.d_scale == 1.0 else self.d_scale * loss

    def score(self, a: torch.Tensor) -> torch.Tensor:
        """What the D/ tags report: D = sigma(a) where D is a probability, else D's raw output a."""
        a = wide(a.detach())
        return torch.sigmoid(a) if self.probability else a.clone()  # a copy: CUDA graphs reuse their outputs

    def has_won(self, real: float, fake: float, d_loss: float) -> Optional[str]:
        return None if self.won is None else self.won(real, fake, d_loss / self.d_scale)


share("loss", {
    "d_scale": real(1.0, 0, 100, "D minimizes d_scale x its loss (the authors' MNIST code: 0.5, the mean of two BCEs)",
                    lo_open=True),
    "recipe": free({},
                   "the settings its paper trains with, applied where the command line and the preset chose nothing"),
})


def _cross_entropy(g: Callable[[torch.Tensor], torch.Tensor], about: str, **rest) -> Loss:
    return Loss(d_cross_entropy, g, about, probability=True, won=lambda real, fake, loss: (
        f"D rejects nearly every fake (D(G(z)) = {fake:.4f}, D(x) = {real:.4f}): G's gradient may vanish, "
        "watch grad/G") if real > 0.99 and fake < 0.01 else None, **rest)


# The choices of loss=: one register(...) each (and a YAML file in conf/loss/). A "D has won" test (won: G's gradient
# vanishes or D stops learning) reads one log window's means (D's scores as the D/ tags show them, D's loss with
# d_scale undone) and returns what it saw, or None. A WGAN critic's scores have no scale to saturate at: G's gradient
# does not vanish as it separates, so wasserstein_gp has no such test.
LOSSES: Dict[str, Loss] = {name: register("loss", name, loss) for name, loss in {
    "minimax": _cross_entropy(lambda a_fake: -F.softplus(a_fake).mean(-1),  # log(1 - D(G(z))), see g_nonsaturating
                              "the true saturating game: G minimizes log(1 - D(G(z)))"),
    "nonsaturating": _cross_entropy(g_nonsaturating, "G minimizes -log D(G(z)) (the paper's practical choice)"),
    "maximum_likelihood": _cross_entropy(
        make_g_maximum_likelihood(20.0),
        "G minimizes -exp(logit D(G(z))) / 2: maximum likelihood at the optimal D (Goodfellow 2016)",
        knobs={"max_logit": real(20.0, 0, 80, "D's logit is clamped here before exp", lo_open=True)},
        build=lambda cfg: LOSSES["maximum_likelihood"]._replace(g=make_g_maximum_likelihood(cfg.max_logit))),
    # D's loss (its outputs' mean squared distance to targets 1 / 0) below 0.01, 4 % of its 0.25 at the equilibrium:
    # D's gradient, a - target, has almost vanished (G's, a_fake - 1, has not)
    "least_squares": Loss(d_least_squares, lambda a_fake: 0.5 * (a_fake - 1).pow(2).mean(-1),  # G: 1/2 (a_fake - 1)^2
                          "LSGAN (Mao et al. 2017), targets 1 and 0", won=lambda real, fake, loss: (
                              f"D's outputs sit on their targets (D(x) = {real:.3f} ~ 1, D(G(z)) = {fake:.3f} ~ 0, "
                              f"RMS distance {math.sqrt(loss):.3f} < 0.1): D has almost stopped learning, watch grad/D")
                          if loss < 0.01 else None),
    "hinge": Loss(d_hinge, g_linear, "hinge loss (Lim & Ye 2017)", won=lambda real, fake, loss: (
        f"every hinge term of D is inactive (all D(x) >= 1, all D(G(z)) <= -1; means {real:.3f}, {fake:.3f}): "
        "D has stopped learning, watch grad/D") if loss == 0 else None),
    # the WGAN critic (Arjovsky et al. 2017) minimizes a_fake - a_real (the penalty is added apart)
    "wasserstein_gp": Loss(lambda a_real, a_fake: a_fake.mean(-1) - a_real.mean(-1), g_linear,
                           "WGAN-GP (Gulrajani et al. 2017): a critic with a gradient penalty",
                           critic=True, knobs={"gp_weight": real(10.0, 0, 10000, "lambda of the gradient penalty")},
                           build=lambda cfg: LOSSES["wasserstein_gp"]._replace(penalty_weight=float(cfg.gp_weight))),
}.items()}


def get(cfg) -> Loss:
    """The loss of the loss config node ``cfg`` with its settings applied; an unknown name is a UserError."""
    loss = entry("loss", cfg.name)
    return (loss if loss.build is None else loss.build(cfg))._replace(d_scale=float(cfg.d_scale))
