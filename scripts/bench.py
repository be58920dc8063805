#!/usr/bin/env python
"""Steady-state throughput of gan-train's loop for any config.

    python scripts/bench.py --iters 300 --warmup 30 -- experiment=paper_mnist dataset.root=../shared/data

Composes the config exactly as gan-train does (same overrides), runs ``--warmup`` iterations of
Algorithm 1, then times ``--iters`` more (synchronising the device before reading the clock), and
prints JSON: iterations/s, samples/s (real + generated examples through D per second), peak memory.

    python scripts/bench.py --vs-handwritten ../shared/data --iters 600 --rounds 5

times whole processes instead, alternating: gan-train on the paper's MNIST networks (maxout, batch
100, k = 1, alternating updates, SGD lr 0.1 momentum 0.5, no evaluation metrics) against
scripts/handwritten.py (a tutorial's loop: torchvision DataLoader, nn.BCELoss, .item() every step)
for the same number of iterations; prints each side's times, their medians and the ratio. With
``--arch dcgan`` both sides train arch=dcgan on an image folder instead (SGD lr 0.01):

    python scripts/export_images.py /tmp/cifar_shaped --dataset noise --n 5000
    python scripts/bench.py --vs-handwritten /tmp/cifar_shaped --arch dcgan --iters 200 --rounds 3 [--device cuda]

    python scripts/bench.py --stream FOLDER --iters 1000 --rounds 3 -- dataset.resolution=28 arch=dcgan

trains on an image folder (scripts/export_images.py writes MNIST as one) held in memory and streamed
from disk, alternating whole runs, and prints each side's iterations/s and their ratio.

    python scripts/bench.py --population 64 --rounds 3 -- experiment=figure1

times a solo run against a population of 64 seeds (hydra/launcher=population), alternating whole processes:
wall times and member-iterations per second against the solo run's iterations per second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from gan_cli import data as datasets
from gan_cli.cli.checks import check, compose
from gan_cli.config import UserError, config_dir, register_configs, resolve_device
from gan_cli.game.updates import GAN, Stats


def gan_train_command() -> list:
    """How to start gan-train: the installed command beside this Python, or ``python -m gan_cli`` where
    the package is importable without being installed (PYTHONPATH, as scripts/gpu_check.sh runs it)."""
    installed = Path(sys.executable).with_name("gan-train")
    return [str(installed)] if installed.exists() else [sys.executable, "-m", "gan_cli"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(name: str, cmd) -> float:
    """Wall seconds of one whole process (its failure ends the benchmark with its last line)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {name} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return round(time.perf_counter() - start, 2)


def vs_handwritten(root: str, iters: int, rounds: int, device: str = "cpu", overrides=(), arch: str = "maxout") -> dict:
    """Whole processes, alternating: gan-train (with ``overrides``, e.g. precision=bf16) and the
    hand-written loop, ``rounds`` times each, on ``device``. ``arch`` maxout: the paper's MNIST networks
    (``root`` holds MNIST/raw); dcgan: arch=dcgan on an image folder (``root``, e.g. CIFAR-shaped)."""
    here = Path(__file__).resolve().parent
    gan_train = gan_train_command()
    times: dict = {"gan-train": [], "handwritten": []}
    lr = 0.1 if arch == "maxout" else 0.01
    data = (["dataset=mnist", f"dataset.root={root}", "arch=maxout"] if arch == "maxout" else
            ["dataset=folder", f"dataset.root={root}", "dataset.in_memory=true", "arch=dcgan"])
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            ours = [*gan_train, *data, "loss=nonsaturating",
                    "optimizer=sgd", f"optimizer.lr={lr}", "optimizer.momentum=0.5", "k=1", "batch_size=100",
                    "updates=alternating", "prior=uniform", f"steps={iters}", "log_every=100", f"sample_every={iters}",
                    f"ckpt_every={iters}", f"eval_every={iters}", "eval.parzen=false", "eval.features=false",
                    f"device={device}", *overrides, f"hydra.run.dir={tmp}/run{r}"]
            theirs = [sys.executable, str(here / "handwritten.py"), "--arch", arch, "--root", root,
                      "--iters", str(iters), "--lr", str(lr), "--device", device]
            for name, cmd in (("gan-train", ours), ("handwritten", theirs)):
                times[name].append(timed(name, cmd))
    median = {name: statistics.median(t) for name, t in times.items()}
    return {"arch": arch, "iters": iters, "rounds": rounds, "device": device_name(device), "overrides": list(overrides),
            "seconds": times, "median_s": median, "speedup": round(median["handwritten"] / median["gan-train"], 3),
            "torch": torch.__version__, "machine": platform.machine(), "cpu_threads": torch.get_num_threads()}


def streaming(folder: str, iters: int, rounds: int, overrides) -> dict:
    """Whole gan-train processes on one image folder, alternating: held in memory (dataset.in_memory=true)
    and streamed from disk (false); each side's training iterations/s (perf/steps_per_s: the loop's own
    time, the streamed side's start of its workers included) and their medians."""
    gan_train = gan_train_command()
    rates: dict = {"in_memory": [], "streamed": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name, flag in (("in_memory", "true"), ("streamed", "false")):
                run = f"{tmp}/{name}{r}"
                timed(name, [*gan_train, "dataset=folder", f"dataset.root={folder}", f"dataset.in_memory={flag}",
                             f"steps={iters}", f"log_every={iters}", f"sample_every={iters}", f"ckpt_every={iters}",
                             f"eval_every={iters}", *overrides, f"hydra.run.dir={run}"])
                rates[name].append(round(json.loads(Path(run, "metrics.json").read_text())["perf/steps_per_s"], 1))
    median = {name: statistics.median(r) for name, r in rates.items()}
    return {"folder": folder, "iters": iters, "rounds": rounds, "overrides": list(overrides), "steps_per_s": rates,
            "median_steps_per_s": median, "streamed_vs_in_memory": round(median["streamed"] / median["in_memory"], 3),
            "torch": torch.__version__, "cpu_threads": torch.get_num_threads()}


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device == "cuda" else f"cpu ({platform.processor() or platform.machine()})"


def memory(lengths, overrides) -> dict:
    """Memory of whole gan-train runs of each length in ``lengths`` (iterations), same settings: the
    resident memory at the last log window (``perf/rss_mb`` in metrics.json; on a GPU also the CUDA
    memory allocated, ``perf/cuda_mb``) and the process's peak (max RSS, which includes the peaks of
    the evaluations). Flat across lengths: nothing grows with the iterations."""
    import os

    gan_train = gan_train_command()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for steps in lengths:
            cmd = [*gan_train, f"steps={steps}", *overrides, f"hydra.run.dir={tmp}/run{steps}"]
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, status, usage = os.wait4(proc.pid, 0)
            if status != 0:
                raise SystemExit(f"bench: gan-train steps={steps} failed: "
                                 f"{proc.stderr.read().decode().strip().splitlines()[-1:]}")
            final = json.loads(Path(tmp, f"run{steps}", "metrics.json").read_text())
            out[steps] = {"rss_mb_last_window": round(final["perf/rss_mb"], 1),
                          "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
                          **({"cuda_mb_last_window": round(final["perf/cuda_mb"], 1)}
                             if "perf/cuda_mb" in final else {}),
                          "seconds": round(time.perf_counter() - start, 1)}
    return {"overrides": list(overrides), "runs": out, "torch": torch.__version__}


def startup(rounds: int, overrides) -> dict:
    """Whole processes, alternating: a bare ``import torch`` against a 1-iteration gan-train run (its
    data, networks, one update, the end-of-run evaluation, samples and checkpoint) with ``overrides``."""
    gan_train = gan_train_command()
    times: dict = {"import torch": [], "gan-train steps=1": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name, cmd in (("import torch", [sys.executable, "-c", "import torch"]),
                              ("gan-train steps=1",
                               [*gan_train, "steps=1", *overrides, f"hydra.run.dir={tmp}/run{r}"])):
                times[name].append(timed(name, cmd))
    median = {name: statistics.median(t) for name, t in times.items()}
    return {"overrides": overrides, "rounds": rounds, "seconds": times, "median_s": median,
            "ratio": round(median["gan-train steps=1"] / median["import torch"], 2), "torch": torch.__version__}


def _rate(run_dir: Path) -> float:
    return json.loads((run_dir / "metrics.json").read_text())["perf/steps_per_s"]


def _member_rate(sweep: Path) -> float:
    """A population sweep's member-iterations per second of training: its members' iterations over its training time,
    the sum of its parts' (a population trained in parts, one after another: metrics.json's perf/members, how many
    trained together; a member's training time is its part's)."""
    members = [json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")]
    training_s = sum(m["steps"] / m["perf/steps_per_s"] / m["perf/members"] for m in members)
    return sum(m["steps"] for m in members) / training_s


def population(size: int, rounds: int, overrides, keep: str = None) -> dict:
    """Whole processes, alternating: one solo run, two solo runs side by side (seeds 0 and 1, started together, each
    with half the cores), and a population of ``size`` members (seeds 0..size-1), the same overrides. Each side's
    wall time and training rate (metrics.json's perf/steps_per_s, which leaves out evaluation, samples and
    checkpoints): member-iterations per second over the population's training time (_member_rate). ``keep``: the
    population's sweep directory (the last round's) is kept there."""
    gan_train = gan_train_command()
    # each of the two side by side takes half the cores, as README's "Several runs on one machine" says (with all of
    # them each, their threads wait on each other: two figure1 runs measured 1 it/s each)
    half = str(max(1, (os.cpu_count() or 2) // 2))
    shared = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", half)}
    walls: dict = {"solo": [], "two solo side by side": [], f"population of {size}": []}
    rates: dict = {"solo it/s": [], "two solo it/s": [], "member-it/s": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            solo, sweep = Path(tmp) / f"solo{r}", Path(keep or tmp) / f"pop{r}"
            walls["solo"].append(timed("solo", [*gan_train, *overrides, f"hydra.run.dir={solo}"]))
            rates["solo it/s"].append(_rate(solo))
            pair = [Path(tmp) / f"pair{r}_{seed}" for seed in (0, 1)]
            start = time.perf_counter()
            procs = [subprocess.Popen([*gan_train, *overrides, f"seed={seed}", f"hydra.run.dir={d}"], env=shared,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for seed, d in enumerate(pair)]
            if any(p.wait() for p in procs):
                raise SystemExit("bench: a solo run side by side failed")
            walls["two solo side by side"].append(round(time.perf_counter() - start, 2))
            rates["two solo it/s"].append(sum(_rate(d) for d in pair))
            walls[f"population of {size}"].append(timed("population", [
                *gan_train, "-m", "hydra/launcher=population", *overrides, f"seed=range({size})",
                f"hydra.sweep.dir={sweep}"]))
            rates["member-it/s"].append(_member_rate(sweep))
    median = {k: statistics.median(v) for k, v in {**walls, **rates}.items()}
    return {"overrides": overrides, "size": size, "rounds": rounds, "wall_s": walls, "rates": rates, "median": median,
            "member-it/s over solo it/s": round(median["member-it/s"] / median["solo it/s"], 2),
            "member-it/s over two solo it/s": round(median["member-it/s"] / median["two solo it/s"], 2),
            "population wall over solo wall": round(median[f"population of {size}"] / median["solo"], 2),
            "cpu": platform.processor() or platform.machine(), "torch": torch.__version__}


def evaluation(overrides, checkpoint_path, rounds: int) -> dict:
    """One evaluation's wall time: every metric of the dataset, after a first untimed evaluation (which
    trains or loads the feature classifier and computes the real reference's features and statistics)."""
    from gan_cli.cli import gan_eval
    from gan_cli.evaluation import evaluate
    from gan_cli.game import models
    from gan_cli.runs import checkpoint

    if checkpoint_path:
        saved = checkpoint.load(checkpoint.find(checkpoint_path, best=False, label=""), label="")
        cfg = gan_eval.load_config(saved, overrides)
    else:
        register_configs()
        cfg = compose(config_dir(), overrides)
        check(cfg)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    data = datasets.load(cfg.dataset, device)
    nets = models.build(cfg.arch, data, cfg.z_dim, cfg.pack).to(device)
    if checkpoint_path:
        checkpoint.restore(saved, checkpoint.State(nets.G, nets.D), path=checkpoint_path)
    evaluator = evaluate.Evaluator(cfg, data, device)
    start = time.perf_counter()
    scalars, _ = evaluator.run(nets)
    first = time.perf_counter() - start
    totals, parts = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        again, _ = evaluator.run(nets)
        totals.append(round(time.perf_counter() - start, 3))
        parts.append(evaluator.seconds)
        if again != scalars:
            raise SystemExit("bench: two evaluations of the same generator differ")
    return {"dataset": cfg.dataset.name, "n_samples": cfg.eval.n_samples, "device": str(device),
            "cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "first_s": round(first, 3),
            "seconds": totals, "median_s": statistics.median(totals),
            "median_by_family_s": {k: round(statistics.median(p[k] for p in parts), 3) for k in parts[0]},
            "metrics": scalars}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=200, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=20, help="untimed iterations first")
    parser.add_argument("--vs-handwritten", metavar="MNIST_ROOT",
                        help="compare whole processes with scripts/handwritten.py")
    parser.add_argument("--device", default="cpu", help="with --vs-handwritten: cpu or cuda")
    parser.add_argument("--arch", choices=("maxout", "dcgan"), default="maxout",
                        help="with --vs-handwritten: the paper's MNIST networks (MNIST_ROOT holds MNIST/raw) "
                             "or arch=dcgan (MNIST_ROOT is then an image folder: scripts/export_images.py OUT "
                             "--dataset noise writes a CIFAR-shaped one)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of --vs-handwritten, --startup and --eval")
    parser.add_argument("--memory", metavar="N", type=int, nargs="+",
                        help="peak memory of whole runs of these lengths (iterations), e.g. --memory 1000 10000")
    parser.add_argument("--startup", action="store_true", help="time a 1-iteration run against a bare import torch")
    parser.add_argument("--eval", action="store_true", help="time one evaluation (every metric) instead of training")
    parser.add_argument("--checkpoint", help="with --eval: the run directory or checkpoint whose G is evaluated")
    parser.add_argument("--stream", metavar="FOLDER",
                        help="iterations/s on an image folder streamed from disk vs held in memory (whole runs)")
    parser.add_argument("--population", metavar="N", type=int,
                        help="time a solo run against a population of N seeds (hydra/launcher=population), alternating")
    parser.add_argument("--keep", metavar="DIR", help="with --population: keep the populations' sweeps under DIR")
    parser.add_argument("overrides", nargs="*", help="gan-train overrides")
    args = parser.parse_args()
    if args.stream:
        json.dump(streaming(args.stream, args.iters, args.rounds, args.overrides), sys.stdout, indent=2)
        print()
        return
    if args.memory:
        json.dump(memory(args.memory, args.overrides), sys.stdout, indent=2)
        print()
        return
    if args.population:
        json.dump(population(args.population, args.rounds, args.overrides, args.keep), sys.stdout, indent=2)
        print()
        return
    if args.startup:
        json.dump(startup(args.rounds, args.overrides), sys.stdout, indent=2)
        print()
        return
    if args.eval:
        json.dump(evaluation(args.overrides, args.checkpoint, args.rounds), sys.stdout, indent=2)
        print()
        return
    if args.vs_handwritten:
        json.dump(vs_handwritten(args.vs_handwritten, args.iters, args.rounds, args.device, args.overrides, args.arch),
                  sys.stdout, indent=2)
        print()
        return

    register_configs()
    try:  # a bad override, no GPU for device=cuda, a missing dataset: one line, as gan-train says it
        cfg = compose(config_dir(), args.overrides)
        check(cfg)
        device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        data = datasets.load(cfg.dataset, device)
    except UserError as err:
        raise SystemExit(f"bench: {err}") from None
    gan = GAN(cfg, data, device)
    m, k = cfg.batch_size, cfg.k
    stats = Stats(gan.nets, device, iterations=args.warmup + args.iters)

    def iteration() -> None:  # Algorithm 1 as gan-train runs it (alternating updates)
        for _ in range(k):
            stats.add_d(gan.d_step(m))
        stats.add_g(gan.g_step(m))
        stats.end_iteration()

    for _ in range(args.warmup):
        iteration()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(args.iters):
        iteration()
    stats.read()  # one host read, as gan-train does per log window
    sync(device)
    elapsed = time.perf_counter() - start

    its = args.iters / elapsed
    result = {
        "config": {key: OmegaConf.select(cfg, key) for key in
                   ("dataset.name", "arch.name", "loss.name", "optimizer.name", "k", "batch_size")},
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "iters": args.iters,
        "seconds": round(elapsed, 3),
        "iters_per_s": round(its, 2),
        # per iteration D sees k*(m real + m fake) examples and G produces (k + 1)*m samples
        "d_examples_per_s": round(its * k * 2 * m, 1),
        "g_samples_per_s": round(its * (k + 1) * m, 1),
        "peak_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda"
        else round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_memory_kind": "CUDA allocated" if device.type == "cuda" else "process max RSS",
    }
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
