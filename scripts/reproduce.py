#!/usr/bin/env python
"""Run the experiment presets that show the paper's claims and the mode-collapse benchmarks, and
write what they measured to docs/results.md (figures in docs/results/).

    python scripts/reproduce.py                                  # everything but the MNIST run
    python scripts/reproduce.py --only modes --seeds 5 --mode-steps 20000
    python scripts/reproduce.py --only modes --seeds 10 --mode-steps 400000 --device cuda   # the full budget, on a GPU
    python scripts/reproduce.py --only paper --paper-run outputs/runs/paper_mnist   # report a paper_mnist run

Each experiment runs `gan-train` as a whole process, the way a user would, into outputs/reproduce/.
Each section of docs/results.md is kept in docs/results/<section>.md, so running one section again
replaces only that section. `experiment=paper_mnist` trains for hours on a CPU: it is not started
here; run it yourself (`gan-train experiment=paper_mnist dataset.root=...`) and pass its directory.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FIGS = DOCS / "results"
RUNS = ROOT / "outputs" / "reproduce"
GAN_TRAIN = str(Path(sys.executable).with_name("gan-train"))
SECTIONS = ("figure1", "figure1_two_modes", "saturation", "dirac", "modes", "paper")
QUIET = ("eval.parzen=false", "eval.features=false")  # digits runs here are about gradients, not sample quality

# Lin et al. 2018 (PacGAN), Table 1: mean +- standard error over 10 trials, 2,500 samples
PUBLISHED = {
    ("ring", 1): (6.3, 0.5, 98.2, 0.45), ("ring", 2): (7.9, 0.1, 95.6, 0.07),
    ("grid", 1): (17.3, 0.8, 94.8, 0.70), ("grid", 2): (23.8, 0.7, 91.3, 0.13),
}


def run(run_dir: Path, *overrides: str, multirun: bool = False, threads: int = 0, diverge_ok: bool = False) -> float:
    """gan-train with these overrides into run_dir (a fresh one); returns its wall time in seconds.
    ``threads`` > 0 sets torch's CPU threads (for runs that share the machine)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    where = f"hydra.sweep.dir={run_dir}" if multirun else f"hydra.run.dir={run_dir}"
    cmd = [GAN_TRAIN, *(["-m"] if multirun else []), *overrides, where]
    print("$", " ".join(cmd[1:]), flush=True)
    start = time.perf_counter()
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0 and not (diverge_ok and only_diverged(run_dir, multirun, done.returncode)):
        raise SystemExit(f"reproduce: {' '.join(cmd[1:])} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def only_diverged(run_dir: Path, multirun: bool, code: int) -> bool:
    """Whether a run (exit 2) or a sweep (exit 1) that failed did so only because runs diverged."""
    if not multirun:
        return code == 2 and final(run_dir)["status"] == "diverged"
    with (run_dir / "summary.csv").open() as fh:
        return code == 1 and {row["status"] for row in csv.DictReader(fh)} <= {"ok", "diverged"}


def final(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def scalars(run_dir: Path, tag: str) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)}


def last_image(run_dir: Path, tag: str, out: Path) -> str:
    """The last image logged under ``tag`` (a figure or a sample grid), saved as a PNG; its name."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    acc.Reload()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(acc.Images(tag)[-1].encoded_image_string)
    return out.name


def mean_sd(values) -> str:
    v = np.asarray(values, dtype=float)
    sd = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():.4g} ± {sd:.2g}"


def mean_se(values) -> str:
    """mean ± standard error of the mean (the published column's form)."""
    values = np.asarray(values, dtype=float)
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return f"{values.mean():.3g} ± {se:.2g}"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


FIGURE1_TARGET = "JSD < 0.05, |V-hat + log 4| < 0.1, D*-MSE < 0.01"


COLLAPSED = -1.1  # V-hat above it: D still tells one of figure1_two_modes' modes apart (one mode: about -0.95)


POPULATION = "hydra/launcher=population"  # a sweep over seeds trains as one population (one process)


def figure1(args) -> str:
    if args.figure1_sweep:  # a population sweep already run (scripts/bench.py --population 64 --keep ...)
        return figure1_section(Path(args.figure1_sweep), None, "figure1")
    sweep = RUNS / "figure1_seeds"
    total = run(sweep, POPULATION, "experiment=figure1", f"seed=range({args.figure1_seeds})", "device=cpu",
                multirun=True)
    return figure1_section(sweep, total, "figure1")


def figure1_two_modes(args) -> str:
    sweep = RUNS / "figure1_two_modes_seeds"
    total = run(sweep, POPULATION, "experiment=figure1_two_modes", f"seed=range({args.two_modes_seeds})",
                "device=cpu", multirun=True)
    return figure1_section(sweep, total, "figure1_two_modes")


def figure1_section(sweep: Path, total: float, preset: str) -> str:
    """A Figure-1 section from a sweep of ``preset`` over seeds: every seed's figures, how many of them meet the
    target, each figure's mean, sd and 95 % interval over the seeds; on two modes, how many collapsed onto one."""
    sys.path.insert(0, str(ROOT))
    from gan_cli.cli.sweep import Spread, collect

    jobs = collect(sweep)
    rows, met, finals, missed = [], 0, [], []
    for job in jobs:
        m = job.metrics
        ok = job.status == "ok" and m["eval/jsd"] < 0.05 and abs(m["eval/value"] + math.log(4)) < 0.1 \
            and m["eval/d_star_mse"] < 0.01
        met += ok
        finals.append(m)
        missed += [] if ok else [m]
        rows.append(f"| {job.overrides.get('seed', job.num)} | {m['eval/jsd']:.4f} | {m['eval/value']:.4f} | "
                    f"{m['theory/d_gap']:.4f} | {m['eval/d_star_mse']:.4f} | {'yes' if ok else 'NO'} |")
    spread = {tag: Spread.of([m[tag] for m in finals]) for tag in ("eval/jsd", "eval/value", "eval/d_star_mse")}
    png = last_image(jobs[0].dir, "game/figure1", FIGS / f"{preset}.png")
    cfg = OmegaConf.load(jobs[0].dir / ".hydra" / "config.yaml")
    two = preset == "figure1_two_modes"
    collapsed = [m for m in finals if m["eval/value"] > COLLAPSED]
    return "\n".join([
        "## Figure 1 on two modes: 1-D mode collapse" if two else
        "## Figure 1: D and G learning together on a 1-D Gaussian",
        "",
        ("experiment=figure1's game on two Gaussians (means -2 and 2, std 0.5): when G covers both, the end is "
         "Figure 1 (d) again; when it covers one, D keeps telling the other mode's data apart." if two else
         "The paper (Goodfellow et al. 2014, Figure 1 (d)): at the end p_g = p_data and D = 1/2 everywhere, so "
         "V = -log 4 = -1.3863 and JSD(p_data || p_g) = 0. p_data is one Gaussian (mean 0, std 0.5), as in the "
         f"paper's panels; z ~ {'N(0, 1)' if cfg.prior == 'normal' else 'U(-sqrt 3, sqrt 3)'}."),
        f"`gan-train -m {POPULATION} experiment={preset} seed='range({len(jobs)})'`, the preset's default length "
        f"({cfg.steps:,} iterations, k = {cfg.k}): the seeds trained together as one population, every seed reported.",
        f"The target: {FIGURE1_TARGET}.",
        "",
        f"**{met} of {len(jobs)} seeds meet the target.** Over the {len(jobs)} seeds (mean ± sd [95 % interval of "
        f"the mean]): JSD {spread['eval/jsd']}, V-hat {spread['eval/value']}, D*-MSE {spread['eval/d_star_mse']}.",
        *([f"**{len(collapsed)} of {len(jobs)} collapsed onto one mode** (V-hat above {COLLAPSED}): JSD "
           f"{Spread.of([m['eval/jsd'] for m in collapsed])}, V-hat {Spread.of([m['eval/value'] for m in collapsed])}."]
          if two else []),
        *([f"The {len(missed)} that miss it end with D(x) {Spread.of([m['game/D_real'] for m in missed])}, D(G(z)) "
           f"{Spread.of([m['game/D_fake'] for m in missed])} (the last log window's means) and JSD "
           f"{Spread.of([m['eval/jsd'] for m in missed])}; those that meet it: D(x) "
           f"{Spread.of([m['game/D_real'] for m in finals if m not in missed])}."] if missed else []),
        "",
        "| seed | eval/jsd | eval/value (V-hat) | theory/d_gap | eval/d_star_mse | target met |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"![game/figure1 at the end, seed {jobs[0].overrides.get('seed', 0)}](results/{png})",
        "",
        f"Total {minutes(total)} (one process, one population)." if total is not None else
        f"Run by `scripts/bench.py --population {len(jobs)} --rounds 1 --keep DIR -- experiment={preset}` (its "
        "timing is in the README's Populations section).",
    ])


def saturation(args) -> str:
    """The saturation claim over seeds: each seed's ratio of G's mean gradient norm, minimax / non-saturating, over
    the first iterations; how many seeds show it (ratio below 1/2) and the ratios' spread."""
    sys.path.insert(0, str(ROOT))
    from gan_cli.cli.sweep import Spread, collect

    d = RUNS / "saturation_seeds"
    t = run(d, POPULATION, "experiment=saturation", f"seed=range({args.saturation_seeds})", "device=cpu", *QUIET,
            multirun=True)
    jobs = {(j.overrides["loss"], int(j.overrides["seed"])): j.dir for j in collect(d)}
    seeds = sorted({seed for _, seed in jobs})
    grad = {key: scalars(p, "grad/G") for key, p in jobs.items()}
    fake = {key: scalars(p, "game/D_fake") for key, p in jobs.items()}
    steps = [s for s in sorted(grad[("minimax", seeds[0])]) if s <= args.saturation_window]

    def mean_grad(loss: str, seed: int) -> float:
        return float(np.mean([grad[(loss, seed)][s] for s in steps]))

    ratios = [mean_grad("minimax", s) / mean_grad("nonsaturating", s) for s in seeds]
    shown = sum(r < 0.5 for r in ratios)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), dpi=100)
    for loss, colour in (("minimax", "tab:blue"), ("nonsaturating", "tab:orange")):
        for i, seed in enumerate(seeds):
            xs = sorted(grad[(loss, seed)])
            label = loss if i == 0 else None
            axes[0].semilogy(xs, [grad[(loss, seed)][s] for s in xs], c=colour, lw=0.6, alpha=0.6, label=label)
            axes[1].plot(xs, [fake[(loss, seed)][s] for s in xs], c=colour, lw=0.6, alpha=0.6, label=label)
    axes[0].set(xlabel="iteration", ylabel="grad/G (norm of G's gradient)")
    axes[1].set(xlabel="iteration", ylabel="game/D_fake = mean D(G(z))")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    FIGS.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGS / "saturation.png")
    rows = [f"| {s} | {mean_grad('minimax', s):.4g} | {mean_grad('nonsaturating', s):.4g} | {r:.4f} | "
            f"{fake[('minimax', s)][steps[-1]]:.4f} | {fake[('nonsaturating', s)][steps[-1]]:.4f} |"
            for s, r in zip(seeds, ratios)]
    return "\n".join([
        "## Saturation: minimax against the non-saturating loss",
        "",
        "The paper (sec. 3): early in learning D rejects G's samples with high confidence, log(1 - D(G(z)))",
        "saturates and G gets almost no gradient; -log D(G(z)) does not saturate.",
        f"`gan-train -m {POPULATION} experiment=saturation seed='range({len(seeds)})'` (digits, SGD lr 0.05,",
        "k = 5; each seed trains both losses: a population per loss), every seed reported. The claim holds for a",
        "seed when its ratio of the mean grad/G",
        f"(minimax / non-saturating) over iterations 1-{steps[-1]} is below 1/2.",
        "",
        f"**{shown} of {len(seeds)} seeds show it.** The ratio over the seeds (mean ± sd [95 % interval of the "
        f"mean]): {Spread.of(ratios)}; median {float(np.median(ratios)):.4g}, largest {max(ratios):.4g}.",
        "",
        f"| seed | mean grad/G, minimax | mean grad/G, non-saturating | ratio | D(G(z)) at {steps[-1]}, minimax | "
        "non-saturating |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "![grad/G and D(G(z)) of both losses, every seed](results/saturation.png)",
        "",
        f"All {len(jobs)} jobs, as two populations: {minutes(t)}.",
    ])


def _verdict(distance: float, start: float = math.sqrt(2)) -> str:
    """What 1,000 steps did to the distance from the equilibrium, which starts at sqrt(2)."""
    if distance < 0.1:
        return "converges"
    if distance > 2 * start:
        return "spirals out"
    if abs(distance - start) <= 0.1 * start:
        return "orbits (bounded)"
    return "shrinks slowly" if distance < start else "grows slowly"


def dirac(args) -> str:
    sys.path.insert(0, str(ROOT))
    from gan_cli.cli.sweep import collect

    d = RUNS / "dirac_default"
    t0 = run(d, "experiment=dirac", "device=cpu", "seed=0,7", multirun=True)
    jobs = collect(d)
    order = {j.overrides["updates"]: j.dir for j in jobs if j.overrides["seed"] == "0"}
    by = {(j.overrides["updates"], j.overrides["seed"]): j.metrics["eval/distance"] for j in jobs}
    same = all(by[(u, "7")] == by[(u, "0")] for u in order)
    pngs = {u: last_image(p, "game/trajectory", FIGS / f"dirac_{u}.png") for u, p in order.items()}
    rows = [f"| {u} | {final(p)['eval/distance']:.4g} |" for u, p in sorted(order.items(), reverse=True)]
    sweep = RUNS / "dirac_sweep"  # the README's sweep: a job that overflows ends diverged, the others go on
    t1 = run(sweep, "experiment=dirac", "loss=nonsaturating,wasserstein_gp", "optimizer.momentum=0,0.5",
             "updates=alternating,simultaneous", "device=cpu", multirun=True, diverge_ok=True)
    table = []
    for job in sorted(collect(sweep), key=lambda j: (j.overrides["loss"], j.overrides["optimizer.momentum"],
                                                      j.overrides["updates"])):
        m, o = job.metrics, job.overrides
        if job.status == "diverged":
            dist, verdict = "overflow", f"spirals out (not finite at iteration {int(m['steps'])})"
        else:
            dist, verdict = f"{m['eval/distance']:.4g}", _verdict(m["eval/distance"])
        table.append(f"| {o['loss']} | {o['optimizer.momentum']} | {o['updates']} | {dist} | {verdict} |")
    return "\n".join([
        "## The Dirac game: simultaneous steps spiral out, alternating steps stay bounded",
        "",
        "The xy game of the reading (Mescheder et al. 2018's Dirac-GAN: p_data = δ(0), G(z) = θ, D(x) = ψ·x,",
        "started at (1, 1), |(θ, ψ)| = 1.414). With the linear loss the game is V = -ψθ; simultaneous gradient",
        "steps multiply the distance to the equilibrium by sqrt(1 + lr²) per step: sqrt(2)·1.01^500 = 204.7",
        "after 1,000 steps of lr 0.1. `gan-train -m experiment=dirac seed=0,7`:",
        "",
        "| updates | eval/distance after 1,000 steps |",
        "|---|---|",
        *rows,
        "",
        "The game draws nothing at random (G(z) = θ whatever z; p_data = δ(0)): seeds 0 and 7 give "
        + ("the same distances, so one seed stands for all." if same else "DIFFERENT distances (see the runs)."),
        "",
        f"![simultaneous](results/{pngs['simultaneous']}) ![alternating](results/{pngs['alternating']})",
        "",
        "The README's sweep, `gan-train -m experiment=dirac loss=nonsaturating,wasserstein_gp "
        "optimizer.momentum=0,0.5 updates=alternating,simultaneous` (`wasserstein_gp` is the linear loss here:",
        "the preset sets `loss.gp_weight=0`); a job that overflows ends `diverged` and the sweep goes on:",
        "",
        "| loss | momentum | updates | eval/distance after 1,000 steps | |",
        "|---|---|---|---|---|",
        *table,
        "",
        f"Default pair over two seeds {minutes(t0)}; the sweep's 8 jobs {minutes(t1)}.",
    ])


def device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(0) if device.startswith("cuda") else device


def modes(args) -> str:
    sys.path.insert(0, str(ROOT))
    from gan_cli.cli.sweep import collect

    names = [(dataset, pack, dataset if pack == 1 else f"{dataset}_pack2")
             for dataset in ("ring", "grid") for pack in (1, 2)]
    steps, device = args.mode_steps, args.device
    wall, start = {}, time.perf_counter()
    for _, _, name in names:  # a population of every seed per preset
        if args.reuse and (RUNS / f"{name}_seeds" / "summary.csv").exists():  # its members' longest wall time
            wall[name] = max(json.loads((j.dir / "metrics.json").read_text())["wall_s"]
                             for j in collect(RUNS / f"{name}_seeds"))
            continue
        wall[name] = run(RUNS / f"{name}_seeds", POPULATION, f"experiment={name}", f"seed=range({args.seeds})",
                         f"steps={steps}", f"eval_every={steps}", f"ckpt_every={steps}", f"sample_every={steps}",
                         f"device={device}", *args.set, multirun=True)
    total = sum(wall.values()) if args.reuse else time.perf_counter() - start
    rows, figs = [], []
    for dataset, pack, name in names:
        jobs = sorted(collect(RUNS / f"{name}_seeds"), key=lambda j: int(j.overrides["seed"]))
        got = [j.metrics for j in jobs]
        figs.append(f"![{name}, seed 0](results/" + last_image(jobs[0].dir, "game/samples", FIGS / f"{name}.png") + ")")
        n = 8 if dataset == "ring" else 25
        pub = PUBLISHED[(dataset, pack)]
        rows.append(f"| {dataset} | {'GAN' if pack == 1 else 'PacGAN2'} | "
                    f"{mean_se([m['eval/modes_covered'] for m in got])} of {n} | {pub[0]} ± {pub[1]} | "
                    f"{mean_se([100 * m['eval/hq_fraction'] for m in got])} | {pub[2]} | "
                    f"{mean_se([m['eval/reverse_kl'] for m in got])} | {pub[3]} | {minutes(wall[name])} |")
    return "\n".join([
        "## Mode collapse on the ring and the grid (PacGAN / VEEGAN protocol)",
        "",
        "`experiment=ring|ring_pack2|grid|grid_pack2`: the protocol's networks",
        "(`arch=pacgan`), optimizer, minibatch and simultaneous updates (Lin et al. 2018; their code,",
        "github.com/fjxmlzn/PacGAN), 2,500 samples scored. Published: Table 1 of Lin et al. 2018, mean ± standard",
        f"error over 10 trials after 400 epochs (400,000 minibatches). **Measured here: {args.seeds} seeds of",
        f"{args.mode_steps:,} iterations each** "
        + ("(the protocol's full budget)" if steps >= 400_000 else "(short of the protocol's 400,000)")
        + ", mean ± standard",
        f"error over the seeds, each preset's seeds trained as one population (`gan-train -m {POPULATION} "
        f"experiment=NAME seed='range({args.seeds})' steps={steps}`). Reverse KL is KL(generated mode histogram ||",
        "uniform); the published",
        "definition is not in their code, so compare that column loosely.",
        "",
        "| data | method | modes | published | high-quality % | published | reverse KL | published | "
        "time per population |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        " ".join(figs),
        "",
        f"{len(names)} populations of {args.seeds} on {'the CPU' if device == 'cpu' else device_name(device)}"
        + (f" with {' '.join(args.set)}" if args.set else "") + f", one after another: {minutes(total)} in all."
        + ("" if steps >= 400_000 else " At that pace three hours would allow about "
           f"{round(steps * 3 * 3600 / total, -3):,.0f} iterations per run."),
    ])


def paper(args) -> str:
    if not args.paper_run:
        raise SystemExit("reproduce: --only paper needs --paper-run DIR (a gan-train experiment=paper_mnist run)")
    from omegaconf import OmegaConf

    d = Path(args.paper_run)
    ll, se = scalars(d, "eval/parzen_ll"), scalars(d, "spread/parzen_se")
    sigma, fid = scalars(d, "spread/parzen_sigma"), scalars(d, "eval/fid")
    fake = scalars(d, "game/D_fake")
    status = final(d) if (d / "metrics.json").exists() else {"status": "running", "steps": max(ll)}
    seed = OmegaConf.load(d / ".hydra" / "config.yaml").seed
    rows = [f"| {s:,} | {ll[s]:.1f} ± {se[s]:.1f} | {sigma[s]:.3f} | {fid.get(s, float('nan')):.2f} | "
            f"{fake.get(s, float('nan')):.3f} |" for s in sorted(ll)]
    threads = f", {args.paper_threads} CPU thread{'s' if args.paper_threads > 1 else ''}" if args.paper_threads else ""
    timing = (f" It took {minutes(status['wall_s'])} ({status['perf/steps_per_s']:.1f} iterations/s of training"
              f"{threads})." if "wall_s" in status else "")
    lines = [
        "## The paper's MNIST experiment: Parzen-window log-likelihood",
        "",
        "`gan-train experiment=paper_mnist dataset.root=...`: the authors' networks, SGD schedule and",
        "simultaneous update (GAN_REFERENCE.md sec. 4), evaluated with their Parzen protocol (10,000 samples,",
        "σ chosen on 1,000 validation images, mean ± standard error over the 10,000 test images).",
        "Table 1 of the paper: **225 ± 2**; 10,000 real training digits score about 241 ± 2.",
        "",
        f"Run `{d.name}` (seed {seed}): status {status.get('status')}, {status.get('steps'):,} iterations of 125,000."
        + timing,
        "",
        "| iteration | eval/parzen_ll | σ | eval/fid | D(G(z)) |",
        "|---|---|---|---|---|",
        *rows,
    ]
    if (d / "metrics.json").exists():
        last = max(ll)
        gap = 225.0 - ll[last]
        verdict = ("within the paper's figure" if abs(gap) <= 2 * (se[last] + 2.0) else
                   f"{abs(gap):.0f} nats {'below' if gap > 0 else 'above'} the paper's 225 ± 2: not reproduced")
        trend = ll[last] - ll[sorted(ll)[-3]] if len(ll) >= 3 else float("nan")
        lines += ["", f"**Parzen at the end: {ll[last]:.1f} ± {se[last]:.1f}**, {verdict} (it rose "
                      f"{trend:+.1f} nats over the last {sorted(ll)[-1] - sorted(ll)[-3]:,} iterations; the authors' "
                      "code ran with no stopping rule)."]
        floor = status.get("eval/fid_floor")
        lines += ["", f"At the end: FID {status['eval/fid']:.2f} (real-vs-real floor {floor:.2f}), precision "
                      f"{status['eval/precision']:.3f}, recall {status['eval/recall']:.3f} (floors "
                      f"{status['eval/precision_floor']:.3f} / {status['eval/recall_floor']:.3f}), in the offline "
                      "classifier's feature space (not comparable with Inception FID)."]
        lines += ["", f"![samples of G at iteration {status['steps']:,}]"
                      f"(results/{last_image(d, 'samples', FIGS / 'paper_mnist.png')})"]
    for other in args.paper_failed or []:  # earlier attempts, reported too
        o = Path(other)
        report = final(o)
        o_seed = OmegaConf.load(o / ".hydra" / "config.yaml").seed
        lines += ["", f"An earlier attempt with seed {o_seed} was stopped at iteration {report['steps']:,} "
                      f"({report['status']}): D had won (D(x) {report['game/D_real']:.4f}, D(G(z)) "
                      f"{report['game/D_fake']:.2g}, loss_G {report['game/loss_G']:.1f}) and the samples were a few "
                      f"binary strokes. The preset is unchanged between the two runs; only the seed differs."]
    return "\n".join(lines)


def write_results() -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    parts = [(FIGS / f"{s}.md").read_text() for s in SECTIONS if (FIGS / f"{s}.md").exists()]
    head = ["# Reproduced results", "",
            "Written by `scripts/reproduce.py`; each section says how it was run and how long it took.", ""]
    (DOCS / "results.md").write_text("\n".join(head) + "\n\n".join(parts) + "\n")
    print(f"wrote {DOCS / 'results.md'} (commit {commit}{' with local changes' if dirty else ''})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="figure1,figure1_two_modes,saturation,dirac,modes",
                        help=f"sections, of {', '.join(SECTIONS)}")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of each mode-collapse preset")
    parser.add_argument("--figure1-seeds", type=int, default=64, help="seeds of the Figure-1 sweep")
    parser.add_argument("--figure1-sweep", help="report this population sweep of experiment=figure1 instead of running")
    parser.add_argument("--two-modes-seeds", type=int, default=16, help="seeds of the figure1_two_modes sweep")
    parser.add_argument("--saturation-seeds", type=int, default=16, help="seeds of the saturation sweep")
    parser.add_argument("--mode-steps", type=int, default=20000, help="iterations per mode-collapse run")
    parser.add_argument("--device", default="cpu", help="mode-collapse runs: cpu or cuda")
    parser.add_argument("--reuse", action="store_true",
                        help="mode-collapse: report the populations already in outputs/reproduce instead of running")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="mode-collapse runs: more gan-train overrides (e.g. compile=true on a GPU)")
    parser.add_argument("--saturation-window", type=int, default=300, help="iterations over which grad/G is compared")
    parser.add_argument("--paper-run", help="a gan-train experiment=paper_mnist run directory to report")
    parser.add_argument("--paper-failed", nargs="*",
                        help="earlier experiment=paper_mnist runs that were stopped, to report")
    parser.add_argument("--paper-threads", type=int, help="CPU threads the paper run had (for its time)")
    args = parser.parse_args()
    FIGS.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, " + \
        ("torch on CPU" if args.device == "cpu" or "modes" not in args.only
         else f"the mode-collapse runs on {device_name(args.device)}")
    for section in args.only.split(","):
        if section not in SECTIONS:
            raise SystemExit(f"reproduce: --only {section}: no such section; choose from {', '.join(SECTIONS)}")
        start = time.perf_counter()
        body = globals()[section](args)
        stamp = f"\n\n_Measured at commit {commit}, {time.strftime('%Y-%m-%d')}, on {machine}; " \
                f"the section took {minutes(time.perf_counter() - start)}._\n"
        (FIGS / f"{section}.md").write_text(body + stamp)
        write_results()
    return 0


if __name__ == "__main__":
    sys.exit(main())
