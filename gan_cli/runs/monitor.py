"""TensorBoard, the console and the run's JSON files (metrics.json; gan-eval's last.eval.json and last.samples.png, each
named by its checkpoint): the only module that writes logs. The loop hands over plain numbers and tensors to draw; the
monitor knows tags and timing."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple

import torch
from rich import get_console
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table
from torch.utils.tensorboard import SummaryWriter

from gan_cli.runs import rundir
from gan_cli.runs.figures import figure_1_image, figure_toy, figure_trajectory, sample_grid, toy_image, warm_figures
from gan_cli.runs.footprint import memory_mb

log = logging.getLogger("gan_cli")
HIST_LIMIT = 1e20  # TensorBoard's histogram buckets end here (torch.utils.tensorboard's 'tensorflow' bins)


def console_handler() -> logging.Handler:
    """Hydra's console log handler: rich in a terminal, plain timestamped lines otherwise (CI, clusters)."""
    if sys.stdout.isatty():
        from rich.logging import RichHandler
        return RichHandler(show_path=False, markup=False)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s", "%H:%M:%S"))
    return handler


def split_handlers(handlers) -> tuple:
    """(a run's log files, the console's handlers) among logging ``handlers``."""
    files = [h for h in handlers if isinstance(h, (logging.FileHandler, logging.NullHandler))]
    return files, [h for h in handlers if h not in files]


@contextmanager
def logging_to(handlers: list) -> Iterator[None]:
    """Within the block, the log's lines go to ``handlers`` alone (a population member's: its train.log)."""
    root = logging.getLogger()
    before, root.handlers = root.handlers, handlers
    try:
        yield
    finally:
        root.handlers = before


class WarningsTo(logging.Handler):
    """``target``'s records of level WARNING and above (a population member's on the console, its info in its log)."""

    def __init__(self, target: logging.Handler):
        super().__init__(logging.WARNING)
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        self.target.handle(record)


def write_eval(writer: SummaryWriter, step: int, scalars: Dict[str, float], curves: Optional[Dict[str, torch.Tensor]],
               figure_tag: str = "game/figure1", constants: Optional[Mapping[str, float]] = None) -> None:
    """An evaluation's figures as scalars, 1-D data's Figure 1 as ``figure_tag``, ``constants`` as one text card."""
    for tag, value in scalars.items():
        writer.add_scalar(tag, value, step)
    if curves is not None:
        writer.add_image(figure_tag, figure_1_image(curves, f"iteration {step}"), step, dataformats="CHW")
    if constants:
        rows = "\n".join(f"| `{tag}` | {value:.6g} |" for tag, value in sorted(constants.items()))
        writer.add_text("constants", "figures that do not change over the run\n\n| figure | value |\n|---|---|\n"
                        + rows, step)


# HPARAMS session status of each run status (TensorBoard's hparams dashboard filters by it)
SESSION_STATUS = {"ok": "STATUS_SUCCESS", "interrupted": "STATUS_UNKNOWN", "diverged": "STATUS_FAILURE",
                  "invalid": "STATUS_FAILURE", "failed": "STATUS_FAILURE"}


def start_session(writer: SummaryWriter, choices: Dict[str, object]) -> None:
    """This run's HPARAMS session: its hyperparameters and no experiment declaration, so TensorBoard derives the
    columns from every run it reads (the union of their hyperparameters, their scalar tags as metrics)."""
    from torch.utils.tensorboard.summary import hparams as hparams_summaries
    values = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in choices.items()}
    writer._get_file_writer().add_summary(hparams_summaries(values, {})[1])  # (experiment, session start, end info)
    writer.flush()


def end_session(writer: SummaryWriter, status: str) -> None:
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams.api_pb2 import Status
    from tensorboard.plugins.hparams.metadata import PLUGIN_DATA_VERSION, PLUGIN_NAME, SESSION_END_INFO_TAG
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo
    info = SessionEndInfo(status=Status.Value(SESSION_STATUS.get(status, "STATUS_UNKNOWN")))
    content = HParamsPluginData(session_end_info=info, version=PLUGIN_DATA_VERSION).SerializeToString()
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=PLUGIN_NAME, content=content))
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=SESSION_END_INFO_TAG, metadata=meta)]))
    writer.flush()


def _table(title: str, rows: Mapping[str, Any]) -> Table:
    table = Table("metric", Column("value", justify="right"), title=title, show_header=True, header_style="bold")
    for key, value in rows.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    return table


def save_samples(path: Path, samples: torch.Tensor, data) -> None:
    """A PNG of samples: an image grid, or a scatter / density figure for point data."""
    if data.is_image:
        from PIL import Image
        # torchvision.utils.save_image's pixels: the grid, each value v as the byte floor(255 v + 0.5)
        pixels = sample_grid(samples).mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(path)  # RGB: image_grid shows gray images as RGB, as torchvision does
    else:
        figure_toy(samples.cpu(), data, f"{samples.shape[0]} samples").savefig(path)


def eval_files(ckpt: Path) -> Tuple[Path, Path]:
    """gan-eval's files for ``ckpt``, beside it and named by it (best.pt's evaluation leaves last.pt's in place):
    its figures (``last.eval.json``) and samples (``last.samples.png``)."""
    return ckpt.with_name(f"{ckpt.stem}.eval.json"), ckpt.with_name(f"{ckpt.stem}.samples.png")


def eval_dir(ckpt: Path) -> Path:
    """The directory gan-eval writes into for ``ckpt``: its run directory (a copy's own folder)."""
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def report_eval(ckpt: Path, report: Dict[str, Any], curves: Optional[Dict[str, torch.Tensor]],
                console: Optional[Console] = None, samples_png: Optional[Path] = None,
                constants: Sequence[str] = (), write: bool = True) -> Optional[Path]:
    """gan-eval's output: the figures in :func:`eval_files`' JSON file and as a TensorBoard run of their own (returned:
    ``<run>/gan-eval/<checkpoint>_<time>[_n]``, the run's own history untouched), and a table with their protocols;
    ``write=False`` (another process holds the directory): the table alone."""
    figures, log_dir = report["metrics"], None
    if write:
        rundir.write_text(eval_files(ckpt)[0], json.dumps(report, indent=2) + "\n")
        stem, n = f"{ckpt.stem}_{time.strftime('%Y-%m-%d_%H-%M-%S')}", 1
        (eval_dir(ckpt) / "gan-eval").mkdir(exist_ok=True)
        while log_dir is None:  # a directory no other call has used (made here: another gan-eval may choose at once)
            try:
                (log_dir := eval_dir(ckpt) / "gan-eval" / (stem if n == 1 else f"{stem}_{n}")).mkdir()
            except FileExistsError:
                log_dir, n = None, n + 1
        with SummaryWriter(log_dir=str(log_dir)) as writer:
            write_eval(writer, report["step"], {k: v for k, v in figures.items() if k not in constants}, curves,
                       constants={k: v for k, v in figures.items() if k in constants})
    console = console or Console()
    console.print(_table(f"gan-eval: {ckpt} (iteration {report['step']})", figures))
    for name, text in report["protocol"].items():
        console.print(f"[dim]{name}: {text}[/dim]", soft_wrap=True)
    if write:
        console.print(f"Wrote {eval_files(ckpt)[0]}" + (f" and {samples_png}" if samples_png else "")
                      + f"; TensorBoard run {log_dir}", soft_wrap=True, highlight=False)
    return log_dir


def progress_bar(console: Console, rate: str, *more) -> Progress:
    """A run's (or a population's) bar in a terminal: what it does, iterations, their rate in ``rate``, time left."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn(f"{{task.fields[rate]}} {rate}"), TimeRemainingColumn(), *more, console=console)


class Monitor(AbstractContextManager):
    """TensorBoard writer in the run directory, a rich progress bar or plain log lines, the clock (time inside
    ``with monitor.aside():`` is left out of ``perf/steps_per_s``)."""

    def __init__(self, run_dir: Path, total: int, start: int, console: Optional[Console] = None, theory: bool = False,
                 figures: bool = False):
        self.run_dir = Path(run_dir)
        if figures and not theory:  # toy data's matplotlib figures (theory/ runs: at their first neighbour search)
            warm_figures()
        # a resumed run: TensorBoard hides what an earlier attempt logged after the checkpoint's iteration
        self.writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=start + 1 if start else None)
        if theory:  # Custom Scalars tab: V-hat as a line, shaded up to C(G): one line and band per run
            self.writer.add_custom_scalars({"theory": {
                "V-hat, shaded up to C(G) = -log 4 + 2 JSD (the band: D's distance from D*); both reach -log 4 = "
                "-1.386 at the optimum": ["Margin", ["eval/value", "eval/value", "theory/c_of_g"]]}})
        self.console = console or get_console()  # the console the log handler writes to
        self.total, self.start, self.step_window = total, start, start
        self.constants: Dict[str, float] = {}  # the constants last written (a text card)
        self.unbinnable: set = set()  # histogram tags whose values went beyond HIST_LIMIT (warned once each)
        self.t_start = self.t_window = time.perf_counter()
        self.aside_s = self.aside_window = 0.0  # seconds spent on samples, evaluation and checkpoints
        self.progress: Optional[Progress] = None
        if self.console.is_terminal:
            self.progress = progress_bar(self.console, "it/s", TextColumn("D(x) {task.fields[dx]}  D(G(z)) "
                                                                          "{task.fields[dgz]}"))
            self.task = self.progress.add_task("train", total=total, completed=start, rate="-", dx="-", dgz="-")
            self.progress.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self, choices: Dict[str, object], params: Dict[str, int], device, protocol: Dict[str, str]) -> None:
        log.info("%s | %s | %s | run dir %s", " ".join(f"{k}={v}" for k, v in choices.items()),
                 ", ".join(f"{name} {n:,} params" for name, n in params.items()), device, self.run_dir)
        for name, text in protocol.items():
            log.info("protocol (%s): %s", name, text)

    # -- per log window -------------------------------------------------------------------------
    def log_window(self, step: int, scalars: Dict[str, float], hists: Dict[str, torch.Tensor]) -> Dict[str, float]:
        """Write a window's figures (and its perf/ ones) and return them."""
        now = time.perf_counter()
        rate = (step - self.step_window) / max(now - self.t_window - self.aside_window, 1e-9)
        scalars = {**scalars, "perf/steps_per_s": rate, **memory_mb()}
        self.t_window, self.step_window, self.aside_window = now, step, 0.0
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
        for tag, values in hists.items():
            values = values.detach().float().cpu()
            if values.abs().max() <= HIST_LIMIT:
                self.writer.add_histogram(tag, values, step)
            elif tag not in self.unbinnable:
                self.unbinnable.add(tag)
                log.warning("%s reaches %.3g at iteration %d: beyond the +-%.0e that TensorBoard's histograms bin, "
                            "so its histograms are left out from here while the values stay that large (the scalars "
                            "go on)", tag, values.abs().max().item(), step, HIST_LIMIT)
        dx, dgz = scalars.get("game/D_real", math.nan), scalars.get("game/D_fake", math.nan)
        if self.progress is not None:
            self.progress.update(self.task, completed=step, rate=f"{rate:.0f}", dx=f"{dx:.3f}", dgz=f"{dgz:.3f}")
        log.info("step %d/%d | loss_D %.4f | loss_G %.4f | D(x) %.3f | D(G(z)) %.3f | %.1f it/s", step, self.total,
                 scalars.get("game/loss_D", math.nan), scalars.get("game/loss_G", math.nan), dx, dgz, rate)
        return scalars

    @contextmanager
    def aside(self) -> Iterator[None]:
        """Time that is not training (samples, evaluation, checkpoints)."""
        t = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - t
            self.aside_s, self.aside_window = self.aside_s + spent, self.aside_window + spent

    def advance(self, step: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step)

    def phase(self, name: str) -> None:  # what the bar says the run is doing: train, eval, ...
        if self.progress is not None:
            self.progress.update(self.task, description=name)

    def samples(self, step: int, samples: torch.Tensor, data, path: Optional[torch.Tensor] = None,
                tag: str = "game/samples") -> None:
        """An image grid or a toy set's figure under ``tag``; a point game's ``path`` as ``game/trajectory``."""
        image = sample_grid(samples, enlarge=True) if data.is_image else toy_image(samples, data, f"iteration {step}")
        self.writer.add_image(tag, image, step, dataformats="CHW")
        if path is not None:
            self.writer.add_figure("game/trajectory", figure_trajectory(path, self.start, step), step)

    def log_eval(self, step: int, scalars: Dict[str, float], curves: Optional[Dict[str, torch.Tensor]],
                 figure_tag: str = "game/figure1", constants: Optional[Mapping[str, float]] = None) -> None:
        """An evaluation: its figures, its Figure 1, its constants (a text card when they change)."""
        if constants == self.constants:
            constants = None
        else:
            self.constants = dict(constants or {})
        write_eval(self.writer, step, scalars, curves, figure_tag, constants)
        if scalars:
            log.info("eval at step %d | %s", step,
                     " | ".join(f"{k} {v:.4g}" for k, v in scalars.items() if not k.startswith("spread/")))

    def warn(self, message: str) -> None:
        log.warning(message)

    # -- end of run -----------------------------------------------------------------------------
    def start_session(self, choices: Dict[str, object]) -> None:  # at the start: a run that fails shows too
        start_session(self.writer, choices)

    def finish(self, counts: Dict[str, int], window: Dict[str, float], evaluation: Dict[str, float],
               status: str = "ok", announce: bool = True) -> Dict[str, Any]:
        """metrics.json (with the run's ``status``), the HPARAMS session's end and, for a finished run that
        ``announce``s, the summary table; returns the final figures."""
        elapsed = time.perf_counter() - self.t_start
        metrics: Dict[str, Any] = {
            "status": status, **counts, **{k: v for k, v in window.items() if not k.startswith("perf/")}, **evaluation,
            "perf/steps_per_s": (counts["steps"] - self.start) / max(elapsed - self.aside_s, 1e-9),
            **{k: v for k, v in window.items() if k.startswith("perf/") and k != "perf/steps_per_s"},
            "perf/aside_s": self.aside_s, "wall_s": elapsed}
        rundir.write_text(self.run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        if self.progress is not None:
            self.progress.stop()
        end_session(self.writer, status)  # (flushes the writer)
        if status == "ok" and announce:
            self.console.print(_table("gan-train: final figures", metrics))
            self.console.print(f"Inspect this run:  tensorboard --logdir {self.run_dir}", soft_wrap=True,
                               highlight=False)
        return metrics

    def close(self) -> None:
        if self.progress is not None and self.progress.live.is_started:
            self.progress.stop()
        self.writer.close()


class Quiet(AbstractContextManager):
    """The Monitor of ranks other than 0 under torchrun: writes nothing, has only the calls every rank makes."""

    def __init__(self, total: int, start: int):
        self.total, self.start, self.t_start = total, start, time.perf_counter()

    def _nothing(self, *args, **kwargs) -> None:  # what only writes, on rank 0 (every rank reads the same window)
        pass

    __exit__ = describe = start_session = phase = advance = warn = _nothing

    def log_window(self, step: int, scalars: Dict[str, float], hists: Dict[str, torch.Tensor]) -> Dict[str, float]:
        return dict(scalars)

    def finish(self, counts: Dict[str, int], window: Dict[str, float], evaluation: Dict[str, float],
               status: str = "ok", announce: bool = True) -> Dict[str, Any]:
        return {"status": status, **counts, **window, **evaluation, "wall_s": time.perf_counter() - self.t_start}
