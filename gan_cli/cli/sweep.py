"""Sweeps (``gan-train -m ...``): what every job of a sweep shares, and the sweep's summary.

A job never ends the sweep: what stops it is its ``status`` in ``metrics.json`` (ok, diverged, interrupted,
invalid, failed). :class:`SweepSummary` (a Hydra callback, conf/config.yaml) rewrites ``summary.csv`` after each
job (a row each: swept values, status, wall time, final figures) and prints it at the end, best main metric first;
gan-train exits non-zero if a job did not finish. Every job gives TensorBoard's HPARAMS tab its hyperparameters
(those the sweep's command line sets among them); TensorBoard compares them across every run it reads.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import signal
import sys
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gan_cli import config
from gan_cli.config import UserError
from gan_cli.evaluation import evaluate
from gan_cli.runs import rundir

log = logging.getLogger("gan_cli")
# what reading back a file of a job can raise: gone, not YAML, or without the key looked for
UNREADABLE = (OSError, ValueError, AttributeError, yaml.YAMLError, OmegaConfBaseException)
# settings that say where things are, not what runs: never hyperparameters, never summary columns
NOT_HPARAMS = ("resume", "device", "dataset.root", "dataset.download", "eval.cache_dir")
GROUP_KEYS = (*config.GROUPS, *config.PRESETS)
BASE_HPARAMS = (*config.GROUPS, "optimizer.lr", "k", "steps", "batch_size", "z_dim", "prior", "updates", "seed")
OWN_RATES = ("optimizer.d_lr", "optimizer.g_lr")  # columns of a run that gives D or G a rate of its own (TTUR)
# what the members of one population (hydra/launcher=population) may differ in: the seed, the learning rates,
# SGD's momentum, Adam's betas, the gradient penalty's weight (where it is not 0)
PER_MEMBER = ("seed", "optimizer.lr", *OWN_RATES, "optimizer.momentum", "optimizer.beta1", "optimizer.beta2",
              "loss.gp_weight")


EXCLUDED = "hydra.job.config.override_dirname.exclude_keys"  # what a job directory's name leaves out


def job_names(argv: Sequence[str]) -> List[str]:
    """For a sweep (``-m``): the override that names each job's directory by the settings that vary in the sweep
    (``3_k=5,loss=minimax``), leaving out those the command line gives one value, which every job shares (and
    .hydra/overrides.yaml keeps). Nothing for a single run, or where the command line names them itself."""
    if not config.sweeping(argv) or any(a.startswith(EXCLUDED) for a in argv):
        return []
    shared = [o.key_or_group for o in config.parse_overrides([a for a in argv if not a.startswith("-")])
              if not o.is_sweep_override() and not config.hydras(o.key_or_group)]
    if not shared:
        return []
    base = OmegaConf.select(OmegaConf.load(Path(config.config_dir()) / "config.yaml"), EXCLUDED, default=[])
    return [f"{EXCLUDED}=[{','.join(dict.fromkeys([*base, *shared]))}]"]


def command_keys(overrides: Sequence[str]) -> List[str]:
    """The settings a command line sets (hydra's own and path settings left out), in its order."""
    return [k for k in config.settings(overrides) if not config.hydras(k) and k not in NOT_HPARAMS]


def sweep_overrides(sweep_dir: Path) -> Optional[List[str]]:
    """The sweep's command line, as Hydra recorded it in multirun.yaml (None where there is none)."""
    try:
        return config.texts(_load(Path(sweep_dir) / "multirun.yaml").hydra.overrides.task)
    except UNREADABLE:  # the job's own command line stands in
        return None


@dataclass
class Job:
    num: int
    dir: Path
    overrides: Dict[str, str]
    status: str
    wall_s: float
    metrics: Dict[str, float] = field(default_factory=dict)
    error: str = ""
    earlier: bool = False  # a run of an earlier sweep, in the directory a job of this one was refused
    before: bool = False  # this job's own run, which ended before this command (the same command run again)

    @property
    def shown(self) -> str:
        return f"{self.status} (earlier run)" if self.earlier else f"{self.status} (finished before)" \
            if self.before else self.status


REFUSED = ".refused.json"  # beside a job directory another gan-train held or another run had: the job's record


def collect(sweep_dir: Path, final: bool = False) -> List[Job]:
    """Every job directory of a sweep, read back. A job without metrics.json is ``running`` while a live gan-train
    holds its directory, unless the sweep has ended (``final``); else it did not end by itself (killed, out of
    memory): ``failed``. A job refused its directory has a REFUSED record; the directory's own run is read unless
    another gan-train held it, as an ``earlier`` run where it began before this sweep (its .hydra/ is older than the
    sweep's multirun.yaml, which Hydra writes as a sweep begins); where the record says the run there is the job's
    own, finished before (:func:`finished_before`), that run is the job."""
    jobs, held, had, done = [], set(), set(), set()
    for path in sorted(Path(sweep_dir).glob(f"*{REFUSED}")):  # (pathlib's * matches names with a leading dot)
        try:
            record = json.loads(path.read_text())
            job_dir = path.with_name(record.get("dir", path.name[:-len(REFUSED)]))
            if record.get("finished"):
                done.add(job_dir)
                continue
            jobs.append(Job(int(record["num"]), job_dir, config.settings(record["overrides"]), record["status"], 0.0,
                            error=record["error"]))
            (held if record.get("held", True) else had).add(job_dir)
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("gan-train: %s is not readable: %s", path, err)
    for job_dir in sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir() and not p.name.startswith(".")):
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        if not overrides_file.is_file() or job_dir in held:
            continue
        num, chosen = _head(job_dir, overrides_file)
        try:
            report = json.loads((job_dir / "metrics.json").read_text())
        except (FileNotFoundError, IsADirectoryError, ValueError):
            report = {}
        figures = {k: float(v) for k, v in report.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "wall_s"}
        status = report.get("status") or ("running" if not final and rundir.held(job_dir) else "failed")
        earlier = job_dir in had - done and _mtime(overrides_file) < _mtime(Path(sweep_dir) / "multirun.yaml")
        jobs.append(Job(num if num is not None else len(jobs), job_dir, chosen, status,
                        float(report.get("wall_s", math.nan)), figures, str(report.get("error", "")), earlier,
                        job_dir in done))
    return sorted(jobs, key=lambda j: j.num)


def finished_before(job_dir: Path, overrides: Sequence[str]) -> Optional[Dict[str, Any]]:
    """The final figures of the run in ``job_dir`` where it is this job's own (the settings of its
    .hydra/overrides.yaml are ``overrides``') and ended by itself (metrics.json: ok, or diverged, which a run again
    would repeat): the same sweep run again into its directory, to continue the jobs a stop cut short, keeps it;
    else None."""
    try:
        report = json.loads((Path(job_dir) / "metrics.json").read_text())
        _, chosen = _head(Path(job_dir), Path(job_dir) / ".hydra" / "overrides.yaml")
    except UNREADABLE:
        return None
    ended = isinstance(report, dict) and report.get("status") in ("ok", "diverged")
    return report if ended and chosen == config.settings(overrides) else None


def _mtime(path: Path) -> float:
    """A file's modification time in ns; -inf where there is none."""
    try:
        return path.stat().st_mtime_ns
    except OSError:  # none: nothing is older
        return -math.inf


_READ: Dict[tuple, tuple] = {}  # what was read from a sweep's files, with the files' times when it was read


def _read(key: tuple, paths: Sequence[Path], read):
    """``read()`` of files that a sweep's summary reads after every job: again only when one of them changed."""
    stamp = tuple(_mtime(p) for p in paths)
    known = _READ.get(key)
    if known is None or known[0] != stamp:
        known = _READ[key] = (stamp, read())
    return known[1]


def _load(path: Path) -> DictConfig:
    if not path.is_file():  # nothing to parse (FileNotFoundError is UNREADABLE)
        raise FileNotFoundError(path)
    return _read(("load", path), (path,), lambda: OmegaConf.load(path))


def _head(job_dir: Path, overrides_file: Path) -> tuple:
    """A job's number and the settings its command line chose, from its .hydra/."""
    hydra_file = job_dir / ".hydra" / "hydra.yaml"

    def read() -> tuple:
        try:
            num = int(OmegaConf.load(hydra_file).hydra.job.num)
        except UNREADABLE:  # the directory's name tells
            head = job_dir.name.split("_", 1)[0]
            num = int(head) if head.isdigit() else None
        return num, config.settings(config.texts(OmegaConf.load(overrides_file)))

    num, chosen = _read(("head", job_dir), (hydra_file, overrides_file), read)
    return num, dict(chosen)


def main_metric(jobs: Sequence[Job]) -> Optional[str]:
    """The sweep's main metric: the one that picks best.pt (eval.best_by) in its first job that ran."""
    for job in jobs:
        try:  # _load: FileNotFoundError (UNREADABLE) for a job without its config
            cfg = _load(job.dir / ".hydra" / "config.yaml")
            return evaluate.best_metric(cfg.eval.best_by, evaluate.families(cfg))
        except (*UNREADABLE, UserError):  # a job whose config cannot be read: the next one tells
            continue
    return None


def _order(jobs: Sequence[Job], metric: Optional[str]) -> List[Job]:
    """The jobs, best ``metric`` first; those without a finite value (or no metric) by number."""
    sign = -1.0 if metric is not None and evaluate.direction(metric) == evaluate.HIGHER else 1.0

    def key(job: Job):
        value = job.metrics.get(metric, math.nan)
        return (not math.isfinite(value), sign * value if math.isfinite(value) else 0.0, job.num)

    return sorted(jobs, key=key)


@dataclass
class Summary:
    sweep_dir: Path
    jobs: List[Job]
    keys: List[str]
    metric: Optional[str]
    pooled: Tuple[str, ...] = ()  # a population sweep: the settings its members may have of their own

    @property
    def own(self) -> List[Job]:
        """The sweep's own jobs (not the earlier runs in their directories)."""
        return [j for j in self.jobs if not j.earlier]

    @property
    def failed(self) -> List[Job]:
        return [j for j in self.own if j.status != "ok"]

    def describe_failures(self) -> str:
        parts = []
        for job in self.failed:
            what = ",".join(f"{k}={job.overrides.get(k, '')}" for k in self.keys) or job.dir.name
            parts.append(f"#{job.num} {what} ({job.status}{': ' + job.error if job.error else ''})")
        return f"{len(self.failed)} of the {len(self.own)} jobs of the sweep did not finish: " + "; ".join(parts)


def summarize(sweep_dir: Path, final: bool = False) -> Summary:
    """summary.csv in the sweep directory (written atomically: jobs running side by side each rewrite it); ``final``:
    the sweep has ended (no job of it is still running)."""
    sweep_dir = Path(sweep_dir)
    jobs = collect(sweep_dir, final)
    overrides = sweep_overrides(sweep_dir)
    if overrides is not None:  # the keys the sweep gives several values (k=1,5), else all it sets
        swept = [o.get_key_element().lstrip("+~") for o in config.parse_overrides(overrides) if o.is_sweep_override()]
        keys = swept or command_keys(overrides)
    else:  # a sweeper that records no multirun.yaml (Optuna): the keys whose values differ between jobs
        given = [k for j in jobs for k in j.overrides if not config.hydras(k) and k not in NOT_HPARAMS]
        keys = [k for k in dict.fromkeys(given) if len({j.overrides.get(k) for j in jobs}) > 1]
    metric = main_metric(jobs)
    ordered = _order(jobs, metric)
    names = sorted({k for j in jobs for k in j.metrics})
    leading = [m for m in ("steps", metric) if m in names]
    figures = [*leading, *[n for n in names if n not in leading]]
    columns = ["job", *keys, "status", "wall_s", *[_heading(n, keys) for n in figures], "error", "dir"]
    _write_csv(sweep_dir / "summary.csv", [columns, *[
        [job.num, *[job.overrides.get(k, "") for k in keys], job.shown, _fmt(job.wall_s),
         *[_fmt(job.metrics.get(n, math.nan)) for n in figures], job.error, job.dir.name] for job in ordered]])
    summary = Summary(sweep_dir, ordered, keys, metric, population_keys(sweep_dir))
    _write_csv(sweep_dir / "seeds.csv", seed_table(summary, names))
    return summary


def _heading(figure: str, keys: Sequence[str]) -> str:
    """A run's figure's column: its name, unless a swept setting has it (``steps``: the iterations the run did)."""
    return f"{figure} done" if figure in keys else figure


@dataclass
class Spread:
    """One figure over the finished jobs of a group: mean, sample standard deviation, the 95 % interval of
    the mean (Student's t with n - 1 degrees of freedom; none for a single job), and n."""

    mean: float
    sd: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread":
        finite = [v for v in values if math.isfinite(v)]
        n = len(finite)
        mean = math.fsum(finite) / n if n else math.nan
        if n < 2:
            return cls(mean, math.nan, math.nan, math.nan, n)
        from scipy.stats import t as student

        sd = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (n - 1))
        half = float(student.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        return cls(mean, sd, mean - half, mean + half, n)

    def __str__(self) -> str:
        if not self.n:
            return ""
        return f"{self.mean:.4g}" + ("" if self.n == 1 else f" ± {self.sd:.2g} [{self.low:.4g}, {self.high:.4g}]")


def population_keys(sweep_dir: Path) -> Tuple[str, ...]:
    """In a sweep run by ``hydra/launcher=population``: the settings its members may differ in (PER_MEMBER);
    elsewhere nothing."""
    path = Path(sweep_dir) / "multirun.yaml"
    try:
        launcher = OmegaConf.select(_load(path), "hydra.runtime.choices", default={}).get("hydra/launcher")
    except UNREADABLE:
        return ()
    return PER_MEMBER if launcher == "population" else ()


def _grouped(summary: Summary, pooled: Sequence[str]) -> Dict[Tuple[Tuple[str, str], ...], List[Job]]:
    groups: Dict[Tuple[Tuple[str, str], ...], List[Job]] = {}
    for job in sorted(summary.own, key=lambda j: j.num):
        key = tuple((k, "all" if k in pooled else job.overrides.get(k, "")) for k in summary.keys if k != "seed")
        groups.setdefault(key, []).append(job)
    return groups


def seed_groups(summary: Summary) -> Dict[Tuple[Tuple[str, str], ...], List[Job]]:
    """The over-seeds table's groups. A sweep over ``seed``: its jobs grouped by every swept value but the seed
    (each group one setting, its jobs that setting's seeds). A population sweep adds a group per population (its
    members' rates shown as ``all``) where a population spans several settings. Nothing when the sweep varies
    neither."""
    groups = _grouped(summary, ("seed",)) if "seed" in summary.keys else {}
    if set(summary.pooled) & set(summary.keys):
        groups.update({k: jobs for k, jobs in _grouped(summary, summary.pooled).items()
                       if len(jobs) > 1 and k not in groups})
    return groups


def _over_seeds(summary: Summary, figures: Sequence[str]) -> List[tuple]:
    """Per group of seed_groups: its settings' values, its jobs, those that finished, and each figure's Spread
    over the finished ones."""
    rows = []
    for key, jobs in seed_groups(summary).items():
        done = [j for j in jobs if j.status == "ok"]
        rows.append((dict(key).values(), len(jobs), len(done),
                     [Spread.of([j.metrics.get(n, math.nan) for j in done]) for n in figures]))
    return rows


def seed_table(summary: Summary, names: Sequence[str]) -> List[List[str]]:
    """seeds.csv: a row per setting with its jobs, those that finished, and every final figure over the
    finished ones (mean, sd, 95 % interval of the mean), and per population (seed_groups); else no rows."""
    figures = [n for n in names if n != "steps"]
    groups = _over_seeds(summary, figures)
    if not groups:
        return []
    keys = [k for k in summary.keys if k != "seed"]
    return [[*keys, "jobs", "ok", *[f"{n}_{part}" for n in figures for part in ("mean", "sd", "low95", "high95")]],
            *[[*values, str(n), str(ok), *[_fmt(v) for s in spreads for v in (s.mean, s.sd, s.low, s.high)]]
              for values, n, ok, spreads in groups]]


def _write_csv(path: Path, rows: List[List[Any]]) -> None:
    """``rows`` as a CSV file, written atomically (jobs running side by side each rewrite it); an empty table
    writes nothing."""
    if not rows:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with tmp.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    os.replace(tmp, path)


def _fmt(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"


def print_summary(summary: Summary) -> None:
    """The summary as a rich table (the main metric and the run's other ranked figures), then the
    tensorboard line."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # a log file, a pipe: wide enough for the table, not 80 columns
        console = Console(width=200)
    ranked = [m for m in sorted({k for j in summary.jobs for k in j.metrics})
              if evaluate.direction(m) is not None and m != summary.metric]
    shown = ([summary.metric] if summary.metric else []) + ranked[:3]
    n, earlier = len(summary.own), len(summary.jobs) - len(summary.own)
    before = sum(j.before for j in summary.jobs)
    table = Table(title=f"gan-train: sweep of {n} job{'s' if n != 1 else ''}"
                  + (f" ({before} finished before this command)" if before else "")
                  + (f" and {earlier} earlier run{'s' if earlier != 1 else ''} in their directories" if earlier else "")
                  + (f", best {summary.metric} first" if summary.metric else ""))
    for name in ["job", *summary.keys, "status", "wall s", _heading("steps", summary.keys), *shown]:
        table.add_column(name, justify="left" if name in summary.keys or name == "status" else "right")
    for job in summary.jobs:
        status = job.shown if job.status == "ok" else f"[red]{job.shown}[/red]"
        table.add_row(str(job.num), *[job.overrides.get(k, "") for k in summary.keys], status,
                      _fmt(round(job.wall_s, 1)), _fmt(job.metrics.get("steps", math.nan)),
                      *[_fmt(job.metrics.get(m, math.nan)) for m in shown])
    console.print(table)
    if groups := _over_seeds(summary, shown):
        over = "over seeds" + (" and per population" if summary.pooled else "")
        seeds = Table(title=f"{over}: mean ± sd [95 % interval of the mean] of the finished jobs")
        keys = [k for k in summary.keys if k != "seed"]
        for name in [*keys, "ok / jobs", *shown]:
            seeds.add_column(name, justify="left" if name in keys else "right")
        for values, n_jobs, ok, spreads in groups:
            seeds.add_row(*values, f"{ok} / {n_jobs}", *map(str, spreads))
        console.print(seeds)
        console.print(f"Over seeds: {summary.sweep_dir / 'seeds.csv'}", soft_wrap=True, highlight=False)
    console.print(f"Summary: {summary.sweep_dir / 'summary.csv'}", soft_wrap=True, highlight=False)
    console.print(f"Compare the jobs:  tensorboard --logdir {summary.sweep_dir}", soft_wrap=True, highlight=False)


# the sweep of this process (set by the callback); gan-train's exit status reads LAST
CURRENT: Optional[Path] = None
LAST: Optional[Summary] = None
STOPPED = ".stopped"  # in the sweep directory while a stop asked by signal is under way: jobs not begun skip
STOP: Optional[int] = None  # the signal that stopped a sweep whose jobs run in other processes


class _StopJobs:
    """A sweep whose jobs run in other processes of this machine (joblib's workers, submitit_local's jobs): Ctrl-C
    reaches each running job too (the terminal signals the whole process group), which checkpoints and ends as
    interrupted. The sweep's own process waits for them rather than killing them mid-write, and jobs that have not
    begun skip (the STOPPED mark); a second Ctrl-C aborts at once. Under submitit_local SIGINT stays blocked in
    this process and in submitit's controller, which would otherwise pass a second SIGINT to each job (and abort
    it); the jobs unblock it (StopRequest), and a Ctrl-C that came is read when the sweep ends."""

    def __init__(self, sweep_dir: Path, block: bool):
        self.sweep_dir, self.block = sweep_dir, block
        self.before = {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}
        if block:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})

    def __call__(self, signum, frame) -> None:
        global STOP
        if STOP is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        STOP = signum
        with suppress(OSError):
            (self.sweep_dir / STOPPED).touch()
        print("gan-train: stopping the sweep: each running job checkpoints and stops, the others do not begin "
              "(Ctrl-C again aborts at once)", file=sys.stderr, flush=True)

    def close(self) -> None:
        global STOP
        if self.block:
            if signal.SIGINT in signal.sigpending():
                STOP = signal.SIGINT
                print("gan-train: the sweep was stopped (Ctrl-C): each running job checkpointed and stopped",
                      file=sys.stderr, flush=True)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the pending one is read: dropped on unblocking
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        for s, handler in self.before.items():
            signal.signal(s, handler)
        with suppress(OSError):
            (self.sweep_dir / STOPPED).unlink()


_stopper: Optional[_StopJobs] = None


class SweepSummary(Callback):
    """Hydra callback: summary.csv after every job and at the end of a multirun, and the table."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global CURRENT, LAST, STOP, _stopper
        CURRENT, LAST, STOP = Path(str(config.hydra.sweep.dir)), None, None
        with suppress(OSError):  # a mark left by a sweep into this directory that was killed while stopping
            (CURRENT / STOPPED).unlink()
        for record in CURRENT.glob(f"*{REFUSED}"):  # an earlier sweep's records: the summary counts this one's jobs
            with suppress(OSError):
                record.unlink()
        launcher = str(OmegaConf.select(config, "hydra.launcher._target_"))
        if launcher.endswith((".JoblibLauncher", ".LocalLauncher")):  # jobs in this machine's processes
            _stopper = _StopJobs(CURRENT, block=launcher.endswith(".LocalLauncher"))

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        # a population's job ends when its member is set up: its launcher writes one summary once all are
        if HydraConfig.get().mode == RunMode.MULTIRUN and not rundir.KEEPING:
            update(Path(str(config.hydra.sweep.dir)))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global LAST, _stopper
        if _stopper is not None:
            _stopper.close()
            _stopper = None
        if (sweep_dir := Path(str(config.hydra.sweep.dir))).is_dir():
            LAST = summarize(sweep_dir, final=True)
            print_summary(LAST)


def update(sweep_dir: Path) -> None:
    """summary.csv while the sweep goes on (after a job): a failure to write it is a warning, never the job's end
    (the end of the sweep writes it again)."""
    try:
        summarize(sweep_dir)
    except (OSError, *UNREADABLE) as err:
        log.warning("gan-train: summary.csv not written after this job: %s", err)


def finish_interrupted() -> Optional[Summary]:
    """A sweep stopped by Ctrl-C: its summary so far (the callback's end never came)."""
    global LAST
    if CURRENT is not None and CURRENT.is_dir():
        try:
            LAST = summarize(CURRENT, final=True)
        except (OSError, *UNREADABLE) as err:
            log.warning("gan-train: the sweep's summary.csv could not be written: %s", err)
            return None
        print_summary(LAST)
    return LAST


def say_how_to_continue() -> None:
    """After a stop: the same command into the same directory continues the sweep (rundir.unfinished)."""
    if CURRENT is not None:
        print(f"gan-train: the sweep was stopped; run the same command with hydra.sweep.dir={CURRENT} to continue it "
              "(finished jobs are kept, stopped ones continue from their checkpoints, the others run)",
              file=sys.stderr, flush=True)


def job_hparams(cfg, choices: Dict[str, str], keys: Iterable[str]) -> Dict[str, object]:
    """A job's hyperparameters: every group choice, the usual knobs, and ``keys`` (what the sweep sets); D's and
    G's own rates (the rate in use where one is unset) where the run or the sweep sets either."""
    out: Dict[str, object] = {}
    own = OWN_RATES if any(OmegaConf.select(cfg, k, default=None) is not None for k in OWN_RATES) else ()
    for key in dict.fromkeys([*BASE_HPARAMS, *own, *keys]):
        if key in GROUP_KEYS:  # a group in the config says its choice (a resumed run's is its checkpoint's)
            value = cfg[key].name if key in cfg else choices.get(key)
            if value is None and key in config.PRESETS:
                continue
        else:
            value = OmegaConf.select(cfg, key, default=None)
            if value is None and key in OWN_RATES:  # unset: the rate in use
                value = OmegaConf.select(cfg, "optimizer.lr", default=None)
            if OmegaConf.is_config(value):
                value = OmegaConf.to_yaml(value).strip()
        out[key] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out
