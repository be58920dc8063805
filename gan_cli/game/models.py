"""G and D for each architecture, with shapes derived from the dataset. G maps z (m, z_dim) to samples of the
data's shape (images: a sigmoid output, pixels in [0, 1]; points: linear); D maps a sample to ONE logit a(x)
per example (D(x) = sigma(a))."""

from __future__ import annotations

import math
from contextlib import contextmanager
from functools import partial
from typing import Callable, Iterator, Mapping, NamedTuple, Optional, Tuple

import torch
from torch import nn

from gan_cli.config import Knob, UserError, choices, entry, flag, integer, real, register, share


class Maxout(nn.Module):
    """max over ``pieces`` linear pieces per unit (Goodfellow et al. 2013)."""

    def __init__(self, n_in: int, units: int, pieces: int):
        super().__init__()
        self.units, self.pieces = units, pieces
        self.linear = nn.Linear(n_in, units * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(-1, self.units, self.pieces).max(dim=2).values  # amax's backward: ~10 % slower


class Dropout(nn.Dropout):
    """nn.Dropout drawing its masks from the run's own generator (:func:`draw_with`), quickly: each element takes 32
    random bits (two per 64-bit draw) and is kept below round((1 - p) * 2^32), a drop rate within 2^-33 of p; kept
    elements are scaled by the exact inverse of their keep rate. A population supplies each member's masks
    (:func:`supplying`), drawn by :meth:`mask` from that member's generator in the order its solo run draws them."""

    generator: Optional[torch.Generator] = None

    def mask(self, shape, device, generator: Optional[torch.Generator] = None, dtype=torch.float32) -> torch.Tensor:
        """The scaled keep mask of one forward pass on an input of ``shape``."""
        kept, n = round((1.0 - self.p) * 2 ** 32), math.prod(shape)  # of the 2^32 values of 32 bits
        bits = torch.empty((n + 1) // 2, dtype=torch.int64, device=device).random_(-2 ** 63, None, generator=generator)
        return (bits.view(torch.int32)[:n].view(shape) < kept - 2 ** 31).to(dtype).mul_(2 ** 32 / kept)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = round((1.0 - self.p) * 2 ** 32)
        if not self.training or kept >= 2 ** 32:
            return x
        if kept <= 0:  # p within 2^-33 of 1: everything dropped
            return super().forward(x)
        if _SUPPLY:  # a population's masks
            return _SUPPLY[-1](self, x)
        return x * self.mask(x.shape, x.device, self.generator, x.dtype)


_SUPPLY: list = []  # the innermost :func:`supplying`'s source of masks


@contextmanager
def supplying(source: Callable[[Dropout, torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Within the block, every training Dropout's output is ``source(module, x)``."""
    _SUPPLY.append(source)
    try:
        yield
    finally:
        _SUPPLY.pop()


def draw_with(net: nn.Module, generator: torch.Generator) -> None:
    """``net``'s dropout layers draw their masks from ``generator`` (the run's own stream)."""
    for m in (m for m in net.modules() if isinstance(m, Dropout)):
        m.generator = generator


def dropout(arch, data) -> Tuple[float, float]:
    """D's (input, hidden) dropout: the arch's; where null, the paper's (0.2, 0.5) on images and none on points
    (dropping the data's only coordinates, D could not approach D*, and V-hat = -log 4 would mean nothing)."""
    auto = (0.2, 0.5) if data.is_image else (0.0, 0.0)
    return tuple(a if p is None else p for p, a in zip((arch.d_dropout_input, arch.d_dropout_hidden), auto))


def _two_hidden(arch, data, z_dim: int, pack: int = 1, *, layer: Callable[..., list]):
    """G z -> h ReLU -> h ReLU -> out; D: dropout, two x [``layer(arch, n_in, units)``, dropout], a logit."""
    d, h, u, (p_in, p_hid) = data.dim, arch.g_hidden, arch.d_hidden, dropout(arch, data)
    G = nn.Sequential(nn.Linear(z_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, d))
    D = nn.Sequential(nn.Flatten(), Dropout(p_in), *layer(arch, d * pack, u), Dropout(p_hid),
                      *layer(arch, u, u), Dropout(p_hid), nn.Linear(u, 1))
    return G, D


def _pacgan(arch, data, z_dim: int, pack: int = 1):
    """VEEGAN / PacGAN's 2-D networks (fjxmlzn/PacGAN): G z -> 4 x [400 linear, batch norm, ReLU] -> out; D 3 x
    [maxout 200 x 5] -> 1 on ``pack`` samples side by side; weights ~ N(0, 0.02), biases 0."""
    d, h, u, p = data.dim, arch.g_hidden, arch.d_hidden, arch.pieces
    G = nn.Sequential(*[m for width in (z_dim, h, h, h)
                        for m in (nn.Linear(width, h, bias=False), nn.BatchNorm1d(h, momentum=0.05), nn.ReLU())],
                      nn.Linear(h, d))
    D = nn.Sequential(nn.Flatten(), Maxout(d * pack, u, p), Maxout(u, u, p), Maxout(u, u, p), nn.Linear(u, 1))
    for layer in (m for net in (G, D) for m in net.modules() if isinstance(m, nn.Linear)):
        nn.init.normal_(layer.weight, 0.0, 0.02)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return G, D


def _dcgan(arch, data, z_dim: int, pack: int = 1):
    """DCGAN-style (Radford et al. 2016): two stride-2 stages each way. D has no batch norm, so it can be a WGAN-GP
    critic (the penalty is per sample)."""
    c, h, w = data.shape
    if h != w or h % 4:
        raise UserError(f"arch=dcgan needs square images with a side divisible by 4; dataset={data.name} has {h}x{w}")
    s, g, f, p_hid = h // 4, arch.g_hidden, arch.d_hidden, dropout(arch, data)[1]
    G = nn.Sequential(nn.Linear(z_dim, 2 * g * s * s), nn.Unflatten(1, (2 * g, s, s)), nn.BatchNorm2d(2 * g), nn.ReLU(),
                      nn.ConvTranspose2d(2 * g, g, 4, 2, 1), nn.BatchNorm2d(g), nn.ReLU(),
                      nn.ConvTranspose2d(g, c, 4, 2, 1), nn.Flatten())
    D = nn.Sequential(nn.Conv2d(c, f, 4, 2, 1), nn.LeakyReLU(0.2), Dropout(p_hid),
                      nn.Conv2d(f, 2 * f, 4, 2, 1), nn.LeakyReLU(0.2), Dropout(p_hid),
                      nn.Flatten(), nn.Linear(2 * f * s * s, 1))
    return G, D


class Constant(nn.Module):
    """G(z) = theta for every z: the Dirac-GAN generator (Mescheder et al. 2018)."""

    def __init__(self, theta0: float):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([theta0]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.theta.expand(z.shape[0], 1)


def _dirac(arch, data, z_dim: int, pack: int = 1):
    """The bilinear game: G(z) = theta, D(x) = psi * x (no bias); equilibrium (theta, psi) = (0, 0)."""
    D = nn.Linear(1, 1, bias=False)
    nn.init.constant_(D.weight, arch.psi0)
    return Constant(arch.theta0), D


class Arch(NamedTuple):
    """A choice of ``arch=``: its builder, the knobs it reads and facts about it."""

    build: Callable  # (arch config node, data, z_dim, pack) -> (G body, D body)
    about: str = ""
    knobs: Mapping[str, Knob] = {}  # the arch.* settings it reads beyond the shared ones
    images_only: bool = False  # convolutional: needs (C, H, W) samples
    packs: bool = True  # D reads flat vectors, so it can read pack samples side by side (PacGAN)
    dim: Optional[int] = None  # needs point samples of this dimension
    # the game's state as a point, to draw: a function of G's and D's parameters by name
    point: Optional[Callable[[dict, dict], torch.Tensor]] = None


share("arch", {
    "g_init_range": real(0.0, 0, 10, "> 0: G's weights ~ U(-r, r) (the paper: 0.05); 0: PyTorch's default"),
    "d_init_range": real(0.0, 0, 10, "> 0: D's weights ~ U(-r, r) (the paper: 0.005); 0: PyTorch's default"),
    "g_output_bias_from_data": flag(False, "image sets: G's output bias = logit of the pixel means",
                                    applies=("dataset", "image")),
})
HIDDEN = {"g_hidden": integer(256, 1, 65536, "units per hidden layer of G (dcgan: base channels)"),
          "d_hidden": integer(256, 1, 65536, "units per hidden layer of D (dcgan: base channels)")}
PIECES = {"pieces": integer(5, 1, 64, "maxout: linear pieces per unit")}
# null (automatic): the paper's 0.2 / 0.5 on images, none on points (see dropout())
DROP_IN = {"d_dropout_input": real(0.0, 0, 1, "probability of dropping an input of D", hi_open=True, null="automatic")}
DROP_HIDDEN = {"d_dropout_hidden": real(0.0, 0, 1, "probability of dropping a hidden unit of D", hi_open=True,
                                        null="automatic")}

# The choices of arch=: a builder and one register(...) each, and a YAML file in conf/arch/ where it has defaults.
ARCHS = {name: register("arch", name, arch) for name, arch in {
    "mlp": Arch(partial(_two_hidden, layer=lambda arch, n, u: [nn.Linear(n, u), nn.LeakyReLU(0.2)]),
                "two hidden layers each; D's dropout the paper's on images, none on points",
                {**HIDDEN, **DROP_IN, **DROP_HIDDEN}),
    "maxout": Arch(partial(_two_hidden, layer=lambda arch, n, u: [Maxout(n, u, arch.pieces)]),
                   "the paper's MNIST networks: G 1200-1200 ReLU, D maxout 240x5 twice with dropout",
                   {**HIDDEN, **PIECES, **DROP_IN, **DROP_HIDDEN}),
    "pacgan": Arch(_pacgan, "the 2-D networks of VEEGAN / PacGAN: G 4x400 batch-norm ReLU, D 3 maxout layers of 200x5",
                   {**HIDDEN, **PIECES}),
    "dcgan": Arch(_dcgan, "convolutional (Radford et al. 2016); image sets only", {**HIDDEN, **DROP_HIDDEN},
                  images_only=True, packs=False),
    "dirac": Arch(_dirac, "G(z) = theta, D(x) = psi x: the bilinear game of Mescheder et al. (2018)",
                  {"theta0": real(1.0, -1000, 1000, "initial G(z) = theta"),
                   "psi0": real(1.0, -1000, 1000, "initial D(x) = psi * x")},
                  dim=1, packs=False,  # the point: (theta, psi), on the device
                  point=lambda g, d: torch.cat([g["body.theta"], d["body.weight"].reshape(1)]).detach()),
}.items()}


def spec(name: str) -> Arch:
    """The entry of ``arch=name``; an unknown name is a UserError that lists the choices."""
    return entry("arch", name)


def check(arch_name: str, dataset_name: str, is_image: bool, dim: Optional[int], pack: int = 1) -> None:
    """The architecture exists, fits the dataset (images or points of dimension ``dim``) and can pack."""
    arch = spec(arch_name)
    if pack > 1 and not arch.packs:
        packing = ", ".join(name for name, e in choices("arch").items() if e.packs)
        raise UserError(f"pack={pack} needs a D that reads flat vectors ({packing}); "
                        f"arch={arch_name} does not: use pack=1")
    if arch.images_only and not is_image:
        raise UserError(f"arch={arch_name} is convolutional and needs an image dataset, but dataset={dataset_name} "
                        "holds points; use arch=mlp or arch=maxout")
    if arch.dim is not None and dim != arch.dim:
        raise UserError(f"arch={arch_name} needs {arch.dim}-D data, but dataset={dataset_name} is not; "
                        f"use a {arch.dim}-D dataset (dataset=dirac, or experiment=dirac for the whole game)")


class Generator(nn.Module):
    """A body's flat outputs through the output nonlinearity, in the data's shape."""

    def __init__(self, body: nn.Module, shape: tuple, image: bool):
        super().__init__()
        self.body, self.shape, self.image = body, tuple(shape), image

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.body(z)
        return (torch.sigmoid(out) if self.image else out).view(z.shape[0], *self.shape)


class Discriminator(nn.Module):
    """The logit a(x), shape (m,); with ``pack`` = p > 1 (PacGAN), one per p consecutive samples side by side."""

    def __init__(self, body: nn.Module, pack: int = 1):
        super().__init__()
        self.body, self.pack = body, pack

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.reshape(x.shape[0] // self.pack, -1) if self.pack > 1 else x).squeeze(1)


class Nets:
    """G and D (``G, D = nets`` unpacks them) and, for games whose state is a point (Dirac-GAN), that point."""

    def __init__(self, G: Generator, D: Discriminator, point: Optional[Callable] = None):
        self.G, self.D, self._point = G, D, point

    def __iter__(self):
        return iter((self.G, self.D))

    @property
    def has_point(self) -> bool:
        return self._point is not None

    def point(self) -> Optional[torch.Tensor]:
        return None if self._point is None else self._point(dict(self.G.named_parameters()),
                                                            dict(self.D.named_parameters()))

    def to(self, device) -> "Nets":
        return Nets(self.G.to(device), self.D.to(device), self._point)

    def with_G(self, G: Generator) -> "Nets":
        return Nets(G, self.D, self._point)


def build(arch, data, z_dim: int, pack: int = 1) -> Nets:
    """G, D for ``arch`` on ``data`` (D reading ``pack`` samples at a time), initialised as the arch config says."""
    entry = spec(arch.name)
    G_body, D_body = entry.build(arch, data, z_dim, pack)
    for body, r in ((G_body, arch.g_init_range), (D_body, arch.d_init_range)):
        # the paper's irange init (pylearn2): U(-r, r), biases 0
        for layer in (m for m in body.modules() if r > 0 and isinstance(m, nn.Linear)):
            nn.init.uniform_(layer.weight, -r, r)
            nn.init.zeros_(layer.bias)
    last = G_body[-1] if isinstance(G_body, nn.Sequential) else None
    if arch.g_output_bias_from_data and data.is_image and isinstance(last, nn.Linear):
        # pylearn2's init_bias_target_marginals: sigmoid(bias) = mean of each pixel over the data,
        # the means clipped to [1e-7, 1 - 1e-7] (a pixel that is always 0 starts at logit(1e-7) = -16.1)
        mean = data.pixel_mean().clamp(1e-7, 1 - 1e-7)
        with torch.no_grad():
            last.bias.copy_(torch.logit(mean).to(last.bias.device, last.bias.dtype))
    return Nets(Generator(G_body, data.shape, data.is_image), Discriminator(D_body, pack), entry.point)


@contextmanager
def evaluating(net: nn.Module) -> Iterator[nn.Module]:
    """``net`` in eval mode for the block (no dropout; batch norm's running statistics), then as it was."""
    was_training = net.training
    try:
        yield net.eval()
    finally:
        net.train(was_training)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

