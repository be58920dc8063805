"""What a run draws: matplotlib figures of toy data (samples, the paper's Figure 1, a game's trajectory) and grids of
images. matplotlib is imported at the first figure (or ahead, :func:`warm_figures`): an image run never pays for it."""

from __future__ import annotations

import logging
import math
import sys
import threading
from typing import Dict, Optional

import numpy as np
import torch

log = logging.getLogger("gan_cli")

_WARMING: Optional[threading.Thread] = None  # matplotlib's import, under way in the background


def _import_matplotlib() -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    except (ImportError, OSError, RuntimeError) as err:  # the first figure imports it again and reports what fails
        log.debug("importing matplotlib in the background failed (%s: %s)", type(err).__name__, err)


def warm_figures() -> None:
    """Import matplotlib (about 0.5 s) in a background thread. The import holds the interpreter lock and overlaps
    only with work that releases it on free cores (torch's operations use every core of a small machine), so a
    theory/ run starts it with its first neighbour searches (Evaluator.searching), others with the Monitor."""
    global _WARMING
    if _WARMING is None and "matplotlib.pyplot" not in sys.modules:
        _WARMING = threading.Thread(target=_import_matplotlib, name="import-matplotlib", daemon=True)
        _WARMING.start()


FONT = 13  # points: a 400-pixel figure is shown about 270 pixels wide in a TensorBoard card


def _figure(figsize):
    """A new figure and its axes, outside pyplot's registry (nothing global keeps it)."""
    if _WARMING is not None:
        _WARMING.join()  # never import matplotlib from two threads at once
    import matplotlib
    matplotlib.use("Agg")  # no display: figures go to TensorBoard and PNG files
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize, dpi=100)
    ax = fig.subplots()
    ax.tick_params(labelsize=FONT - 1)
    return fig, ax


_LAYOUTS: Dict[tuple, dict] = {}  # tight_layout's margins, by everything they depend on


def _finish(fig, ax, title: str, handles=None, ncol: int = 2, markerscale: float = 1.0):
    """Title, and the legend in rows below the axes (never over the data). tight_layout lays out the text once (half
    of a figure's time); a frame whose sizes, limits, labels and title length were laid out before takes the same
    margins, so its image is the same as tight_layout's."""
    ax.set_title(title, fontsize=FONT)
    handles = handles if handles is not None else ax.get_legend_handles_labels()[0]
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=FONT - 1, frameon=False,
               markerscale=markerscale)
    rect = (0, 0.07 * (1 + (len(handles) - 1) // ncol) + 0.03, 1, 1)
    key = (tuple(fig.get_size_inches()), rect, len(title),
           *((a.get_xlim(), a.get_ylim(), a.get_xlabel(), a.get_ylabel()) for a in fig.axes))
    if key in _LAYOUTS:
        fig.subplots_adjust(**_LAYOUTS[key])
    else:
        fig.tight_layout(rect=rect)
        _LAYOUTS[key] = {k: getattr(fig.subplotpars, k) for k in ("left", "bottom", "right", "top")}
    return fig


def _density_axes(ax, lo: float, hi: float, peak: float) -> None:
    """The same axes in every frame: x in [lo, hi], density up to 1.6 x p_data's peak."""
    ax.set_xlim(lo, hi)
    ax.set_ylim(0, 1.6 * peak)
    ax.set_xlabel("x", fontsize=FONT)
    ax.set_ylabel("density", fontsize=FONT)


def figure_toy(samples: torch.Tensor, data, title: str):
    """Generator samples against the data: a scatter (2-D) or a density plot (1-D)."""
    s = samples.detach().float().cpu()
    c = data.centres.cpu()
    if s.shape[1] == 2:
        fig, ax = _figure((4, 4.4))
        real = data.sample(s.shape[0]).cpu()
        ax.scatter(real[:, 0], real[:, 1], s=3, c="black", alpha=0.4, label="data")
        ax.scatter(s[:, 0], s[:, 1], s=3, c="tab:green", alpha=0.5, label="G(z)")
        span = float(c.abs().max()) + 6 * data.std + 0.5
        ax.set(xlim=(-span, span), ylim=(-span, span), aspect="equal")
        return _finish(fig, ax, title, markerscale=3)
    fig, ax = _figure((4, 3.2))
    lo, hi = float(c.min()) - 5 * data.std - 1, float(c.max()) + 5 * data.std + 1
    xs = torch.linspace(lo, hi, 400, device=data.centres.device).unsqueeze(1)
    if data.has_density:
        density = data.log_prob(xs).exp().cpu()
        ax.plot(xs.cpu().squeeze(1), density, c="black", label="p_data")
        peak = float(density.max())
    else:  # a point mass
        ax.axvline(float(c[0, 0]), c="black", label="p_data (point mass)")
        peak = 2.0
    density, edges = np.histogram(s.squeeze(1).clamp(lo, hi).numpy(), bins=100, range=(lo, hi), density=True)
    ax.stairs(density, edges, fill=True, color="tab:green", alpha=0.5, label="p_g (histogram)")  # hist's bars as one
    _density_axes(ax, lo, hi, peak)
    return _finish(fig, ax, title)


def figure_1(curves: Dict[str, torch.Tensor], title: str):
    """Goodfellow et al. (2014), Figure 1: p_data (black), p_g (green), D (blue) and D* (dashed). D* is left out
    where both densities vanish and in p_data's thin tails where p_g's histogram is empty (there D* = 1 says nothing
    of G; a dropped mode still reads 1)."""
    fig, ax = _figure((4, 3.4))
    x, p_data, p_g = curves["x"].cpu(), curves["p_data"].cpu(), curves["p_g"].cpu()
    peak = float(p_data.max())
    lines = ax.plot(x, p_data, c="black", label="p_data")
    lines += ax.plot(x, p_g, c="tab:green", label="p_g")
    _density_axes(ax, float(x[0]), float(x[-1]), peak)
    ax2 = ax.twinx()
    d_star = curves["D_star"].cpu().clone()
    d_star[((p_g <= 0) & (p_data < 0.05 * peak)) | ((p_data + p_g) < 1e-3 * peak)] = float("nan")
    lines += ax2.plot(x, curves["D"].cpu(), c="tab:blue", label="D(x)")
    lines += ax2.plot(x, d_star, c="tab:blue", ls="--", label="D*(x)")
    ax2.axhline(0.5, c="grey", lw=0.5)
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_ylabel("D", fontsize=FONT)
    ax2.tick_params(labelsize=FONT - 1)
    return _finish(fig, ax, title, lines)


def figure_trajectory(points: torch.Tensor, start: int, step: int):
    """The path of a point game's (theta, psi) from iteration ``start`` to ``step``."""
    p = points.detach().float().cpu()
    fig, ax = _figure((4, 4.4))
    ax.plot(p[:, 0], p[:, 1], lw=0.8, c="tab:blue")
    ax.scatter(p[:1, 0], p[:1, 1], c="black", s=20, label=f"iteration {start}")
    ax.scatter(p[-1:, 0], p[-1:, 1], c="tab:red", s=20, label=f"iteration {step}")
    ax.scatter([0], [0], marker="*", c="tab:green", s=80, label="equilibrium (0, 0)")
    ax.set_xlabel("theta (G)", fontsize=FONT)
    ax.set_ylabel("psi (D)", fontsize=FONT)
    ax.set_aspect("equal", adjustable="datalim")
    return _finish(fig, ax, f"iteration {step}")


def image_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 0.0) -> torch.Tensor:
    """``torchvision.utils.make_grid``'s tensor (tests/test_monitor.py) without importing torchvision (1.5-2 s: its
    ops import torch._dynamo): (N, C, H, W) images ``nrow`` to a row, gray as RGB, ``padding`` of ``pad_value``."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    n, c, h, w = images.shape
    if n == 1:
        return images[0]
    cols = min(nrow, n)
    rows = -(-n // cols)
    cells = images.new_full((rows * cols, c, h + padding, w + padding), pad_value)
    cells[:n, :, padding:, padding:] = images  # each image at the top left of its cell, after the padding
    grid = cells.view(rows, cols, c, h + padding, w + padding).permute(2, 0, 3, 1, 4)
    grid = grid.reshape(c, rows * (h + padding), cols * (w + padding))
    return torch.nn.functional.pad(grid, (0, padding, 0, padding), value=pad_value)  # the last row's and column's


def sample_grid(samples: torch.Tensor, enlarge: bool = False) -> torch.Tensor:
    """Images as a square-ish grid on the CPU, gray padding; ``enlarge``: small images (8x8 digits) scaled up."""
    images = samples.detach().float().cpu().clamp(0, 1)
    if enlarge and images.shape[-1] < 32:
        images = torch.nn.functional.interpolate(images, scale_factor=32 // images.shape[-1], mode="nearest")
    return image_grid(images, nrow=max(1, int(math.sqrt(images.shape[0]))), padding=2, pad_value=0.5)
