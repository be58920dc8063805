"""gan-eval: measure a saved generator offline.

    gan-eval RUN_DIR_OR_CHECKPOINT [overrides] [--samples N] [--best]

Loads the checkpoint (``RUN_DIR/checkpoints/last.pt``, or ``best.pt`` with --best) and its config, computes
every metric that fits the dataset, prints a table, writes ``last.eval.json`` (named by the checkpoint) beside it
and adds the figures to the run's TensorBoard at its iteration. ``--samples N`` also writes ``last.samples.png`` (a
grid of N images, or a scatter for point data). Overrides are dotted keys of the saved config (``device=cpu``).
"""

from __future__ import annotations

import argparse
import sys

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gan_cli import data as datasets
from gan_cli.cli.checks import check, run_and_exit, typed
from gan_cli.config import GROUPS, UserError, resolve_device, schema
from gan_cli.evaluation import evaluate, memory
from gan_cli.game import ema as averaging
from gan_cli.game import models
from gan_cli.runs import checkpoint, monitor, rundir

MAX_SAMPLES = 10_000  # --samples: images in one samples file (or points in its scatter)


def load_config(saved, overrides):
    """The saved config, typed by the schema, with the command line's dotted overrides."""
    typed(list(overrides))  # a flag or an integer given as another type: refused, as gan-train does
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema()), saved["config"])
        for item in overrides:
            key, sep, value = item.partition("=")
            node = OmegaConf.select(cfg, key, default="<missing>") if key.strip() else "<missing>"
            if not sep or node == "<missing>":
                raise UserError(f"{item}: not a setting of the saved config "
                                "(write key=value, e.g. eval.n_samples=2000)")
            if OmegaConf.is_dict(node):  # a group (the run's dataset, loss, ...) or a table of settings
                why = f"gan-eval keeps the run's {key}={node.name} as trained" if key in GROUPS else \
                    f"{key} holds settings"
                raise UserError(f"{item}: {why}; set settings one by one (e.g. eval.n_samples=2000)")
            OmegaConf.update(cfg, key, OmegaConf.create({"v": value}).v if value else None)
    except OmegaConfBaseException as err:
        raise UserError(f"{' '.join(overrides) or 'the saved config'} is not allowed: "
                        f"{str(err).splitlines()[0]}") from None
    check(cfg)
    return cfg


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, as every error of gan-eval (argparse would print its usage first)
        raise UserError(f"{message} (gan-eval --help lists the arguments)")


def _samples(text: str) -> int:
    """--samples N: N in [0, MAX_SAMPLES] (0: no samples file)."""
    try:
        n = int(text)
    except ValueError:
        n = -1
    if not 0 <= n <= MAX_SAMPLES:
        raise UserError(f"--samples {text} is not allowed: give a number of samples in [0, {MAX_SAMPLES:,}] (0: no "
                        "samples file; gan-eval --help lists the arguments)")
    return n


def run(argv) -> dict:
    parser = _Parser(prog="gan-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a run directory of gan-train or a checkpoint file")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the saved config")
    parser.add_argument("--samples", type=_samples, default=0, metavar="N",
                        help=f"also write N samples to <checkpoint>.samples.png (at most {MAX_SAMPLES:,})")
    parser.add_argument("--best", action="store_true", help="evaluate checkpoints/best.pt instead of last.pt")
    args = parser.parse_intermixed_args(argv)

    ckpt = checkpoint.find(args.path, best=args.best, label="")
    saved = checkpoint.load(ckpt, label="")
    cfg = load_config(saved, args.overrides)
    write = rundir.owned(monitor.eval_dir(ckpt), "gan-eval")  # its lock taken until exit; False while another holds it
    datasets.check_available(cfg.dataset)
    device = resolve_device(cfg.device)
    data = datasets.load(cfg.dataset, device)
    nets = models.build(cfg.arch, data, cfg.z_dim, cfg.pack).to(device)
    average = averaging.build(cfg.ema, nets.G)  # a run with ema.decay: its moving average of G is measured
    checkpoint.restore(saved, checkpoint.State(nets.G, nets.D, G_ema=None if average is None else average.model),
                       path=str(ckpt))
    evaluator = evaluate.Evaluator(cfg, data, device)
    print(f"gan-eval: evaluating {ckpt} (iteration {int(saved['step'])}) on {device.type}: "
          f"{', '.join(evaluator.protocol()) or 'no metrics'}", flush=True)
    scalars, curves, _ = evaluator.measure(nets, average, cfg.ema.also_raw)  # also_raw: G's own under raw/

    report = {"checkpoint": str(ckpt), "step": int(saved["step"]), "dataset": cfg.dataset.name, "metrics": scalars,
              "protocol": evaluator.protocol()}
    if evaluator.classifier_info:
        report["classifier"] = {k: v for k, v in evaluator.classifier_info.items() if k != "path"}
    samples_png = monitor.eval_files(ckpt)[1] if args.samples and write else None
    if samples_png:
        generator = nets.G if average is None else average.generator()
        monitor.save_samples(samples_png, evaluator.generate(generator, args.samples), data)
    monitor.report_eval(ckpt, report, curves, samples_png=samples_png, constants=tuple(evaluate.constants(scalars)[1]),
                        write=write)
    if not write:
        print(f"gan-eval: {monitor.eval_dir(ckpt)} is held by another process (a running gan-train or gan-eval), so "
              "nothing was written there; evaluate it again when that ends, or evaluate a copy of the checkpoint",
              file=sys.stderr)
    return report


def main() -> None:
    try:
        run(sys.argv[1:])
    except KeyboardInterrupt:
        print("gan-eval: aborted", file=sys.stderr)
        sys.exit(130)
    except (UserError, OSError, RuntimeError, MemoryError) as err:  # a full disk, out of memory: one line too
        known = err if isinstance(err, UserError) else memory.as_user_error(err)
        if known is None or isinstance(err, BrokenPipeError):
            raise
        print(f"gan-eval: error: {known}", file=sys.stderr)
        sys.exit(2)


def cli() -> None:
    """The gan-eval command: :func:`main`, then a quick exit (cli.run_and_exit)."""
    run_and_exit(main)


if __name__ == "__main__":
    cli()
