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
    """A new figure (on an Agg canvas) and its axes, outside pyplot's registry (nothing global keeps it)."""
    if _WARMING is not None:
        _WARMING.join()  # never import matplotlib from two threads at once
    import matplotlib
    matplotlib.use("Agg")  # no display: figures go to TensorBoard and PNG files
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.tick_params(labelsize=FONT - 1)
    return fig, ax


_LAYOUTS: Dict[tuple, dict] = {}  # tight_layout's margins, by everything they depend on


def _finish(fig, ax, title: str, ncol: int = 2, markerscale: float = 1.0):
    """Title, and the legend (the labelled artists of every axes) in rows below the axes, never over the data.
    tight_layout lays out the text once (half of a figure's time); a frame whose sizes, limits, labels and title
    length were laid out before takes the same margins, so its image is the same as tight_layout's."""
    ax.set_title(title, fontsize=FONT)
    handles = [h for a in fig.axes for h in a.get_legend_handles_labels()[0]]
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


class _Kind:
    """A kind of figure in two parts: what every frame of a film shares (``static``: the axes, their limits and
    labels, p_data), which depends on ``key`` alone, and what changes from frame to frame (``changing``: G, D); each
    kind defines all three."""

    size: tuple = (4, 3.4)
    legend: dict = {}


def _data(ax) -> list:
    """An axes' lines, patches and collections, in the order Axes.draw draws them (by zorder, then as added)."""
    from matplotlib.collections import Collection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.spines import Spine
    drawn = [a for a in ax.get_children() if isinstance(a, (Line2D, Patch, Collection)) and not isinstance(a, Spine)
             and a is not ax.patch and a.get_visible()]
    return sorted(drawn, key=lambda a: a.get_zorder())


def _build(kind: _Kind, title: str) -> tuple:
    """The whole figure of ``kind``, and the data artists of its static part."""
    fig, ax = _figure(kind.size)
    kind.static(fig, ax)
    shared = [a for axes in fig.axes for a in _data(axes)]
    kind.changing(fig.axes)
    return _finish(fig, ax, title, **kind.legend), shared


_FILMS: Dict[tuple, tuple] = {}  # (kind, its key, the title's length) -> (figure, its background's pixels, p_data...)


def _frame(kind: _Kind, title: str) -> np.ndarray:
    """The image (C, H, W bytes, as TensorBoard's add_figure makes it) of ``kind``'s whole figure, drawn as a frame of
    a film: the figure laid out and drawn once without its data, spines and title (the axes, ticks, labels and
    legend) is restored, and the data, spines and title drawn on it in the order a whole draw takes, which is the
    same image (tests/test_monitor.py) in about 4 ms instead of 70. A film serves every run of the process (a
    population's members, one after another)."""
    key = (type(kind).__name__, kind.key, len(title))
    if key not in _FILMS:
        fig, shared = _build(kind, title)
        for a in [a for ax in fig.axes for a in _data(ax) if a not in shared]:
            a.remove()  # (the legend keeps its own copies)
        text = fig.axes[0].title
        fig.canvas.draw()  # where the title goes (a draw places it)
        hidden, where = [*shared, *(s for ax in fig.axes for s in ax.spines.values() if s.get_visible()), text], \
            text.get_position()
        for a in hidden:
            a.set_visible(False)
        fig.canvas.draw()
        for a in hidden:
            a.set_visible(True)
        text.set_position(where)
        if len(_FILMS) >= 32:  # a long-lived process drawing many kinds: the oldest film goes
            del _FILMS[next(iter(_FILMS))]
        _FILMS[key] = (fig, fig.canvas.copy_from_bbox(fig.bbox), shared)
    fig, background, shared = _FILMS[key]
    fig.canvas.restore_region(background)
    try:
        kind.changing(fig.axes)
        for ax in fig.axes:
            for a in (*_data(ax), *(s for s in ax.spines.values() if s.get_visible())):
                ax.draw_artist(a)
        fig.axes[0].title.set_text(title)
        fig.axes[0].draw_artist(fig.axes[0].title)
        return np.asarray(fig.canvas.buffer_rgba())[:, :, :3].transpose(2, 0, 1).copy()
    finally:  # the film as it was, whatever failed
        for a in [a for ax in fig.axes for a in _data(ax) if a not in shared]:
            a.remove()


def _density_axes(ax, lo: float, hi: float, peak: float) -> None:
    """The same axes in every frame: x in [lo, hi], density up to 1.6 x p_data's peak."""
    ax.set(xlim=(lo, hi), ylim=(0, 1.6 * peak))
    ax.set_xlabel("x", fontsize=FONT)
    ax.set_ylabel("density", fontsize=FONT)


def _toy(samples: torch.Tensor, data) -> _Kind:
    return (_Plane if samples.shape[1] == 2 else _Line)(samples.detach().float().cpu(), data)


class _Plane(_Kind):
    """Generator samples (green) over as many of the data's (black): a 2-D toy set."""

    size, legend = (4, 4.4), {"markerscale": 3}

    def __init__(self, samples: torch.Tensor, data):
        self.samples, self.data = samples, data
        self.key = (data.centres.cpu().numpy().tobytes(), float(data.std), samples.shape[0])

    def static(self, fig, ax) -> None:
        real = self.data.sample(self.samples.shape[0]).cpu()
        ax.scatter(real[:, 0], real[:, 1], s=3, c="black", alpha=0.4, label="data")
        span = float(self.data.centres.abs().max()) + 6 * self.data.std + 0.5
        ax.set(xlim=(-span, span), ylim=(-span, span), aspect="equal")

    def changing(self, axes: list) -> None:
        axes[0].scatter(self.samples[:, 0], self.samples[:, 1], s=3, c="tab:green", alpha=0.5, label="G(z)")


class _Line(_Kind):
    """p_data's density (black; a point mass: a vertical line) and a histogram of generator samples: a 1-D toy set."""

    size = (4, 3.2)

    def __init__(self, samples: torch.Tensor, data):
        self.samples, self.data = samples, data
        c = data.centres.cpu()
        self.lo, self.hi = float(c.min()) - 5 * data.std - 1, float(c.max()) + 5 * data.std + 1
        self.key = (c.numpy().tobytes(), data.weights.cpu().numpy().tobytes(), float(data.std))

    def static(self, fig, ax) -> None:
        if self.data.has_density:
            xs = torch.linspace(self.lo, self.hi, 400, device=self.data.centres.device).unsqueeze(1)
            density = self.data.log_prob(xs).exp().cpu()
            ax.plot(xs.cpu().squeeze(1), density, c="black", label="p_data")
            peak = float(density.max())
        else:  # a point mass
            ax.axvline(float(self.data.centres[0, 0]), c="black", label="p_data (point mass)")
            peak = 2.0
        _density_axes(ax, self.lo, self.hi, peak)

    def changing(self, axes: list) -> None:
        density, edges = np.histogram(self.samples.squeeze(1).clamp(self.lo, self.hi).numpy(), bins=100,
                                      range=(self.lo, self.hi), density=True)
        axes[0].stairs(density, edges, fill=True, color="tab:green", alpha=0.5, label="p_g (histogram)")  # hist's bars


def figure_toy(samples: torch.Tensor, data, title: str):
    """Generator samples against the data: a scatter (2-D) or a density plot (1-D)."""
    return _build(_toy(samples, data), title)[0]


def toy_image(samples: torch.Tensor, data, title: str) -> np.ndarray:
    """:func:`figure_toy`'s image, as a frame of a film."""
    return _frame(_toy(samples, data), title)


class _Figure1(_Kind):
    """Goodfellow et al. (2014), Figure 1: p_data (black), p_g (green), D (blue) and D* (dashed). D* is left out
    where both densities vanish and in p_data's thin tails where p_g's histogram is empty (there D* = 1 says nothing
    of G; a dropped mode still reads 1)."""

    def __init__(self, curves: Dict[str, torch.Tensor]):
        self.curves = {k: v.detach().cpu() for k, v in curves.items()}
        self.key = tuple(self.curves[k].numpy().tobytes() for k in ("x", "p_data"))

    def static(self, fig, ax) -> None:
        x, p_data = self.curves["x"], self.curves["p_data"]
        ax.plot(x, p_data, c="black", label="p_data")
        _density_axes(ax, float(x[0]), float(x[-1]), float(p_data.max()))
        ax2 = ax.twinx()
        ax2.axhline(0.5, c="grey", lw=0.5)
        ax2.set_ylim(-0.02, 1.02)
        ax2.set_ylabel("D", fontsize=FONT)
        ax2.tick_params(labelsize=FONT - 1)

    def changing(self, axes: list) -> None:
        (ax, ax2), c = axes, self.curves
        x, p_data, p_g = c["x"], c["p_data"], c["p_g"]
        ax.plot(x, p_g, c="tab:green", label="p_g")
        d_star = c["D_star"].clone()
        peak = float(p_data.max())
        d_star[((p_g <= 0) & (p_data < 0.05 * peak)) | ((p_data + p_g) < 1e-3 * peak)] = float("nan")
        ax2.plot(x, c["D"], c="tab:blue", label="D(x)")
        ax2.plot(x, d_star, c="tab:blue", ls="--", label="D*(x)")


def figure_1(curves: Dict[str, torch.Tensor], title: str):
    """:class:`_Figure1`'s whole figure."""
    return _build(_Figure1(curves), title)[0]


def figure_1_image(curves: Dict[str, torch.Tensor], title: str) -> np.ndarray:
    """:func:`figure_1`'s image, as a frame of a film."""
    return _frame(_Figure1(curves), title)


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
