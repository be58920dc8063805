"""gan-eval: measure a saved generator offline.

    gan-eval RUN_DIR_OR_CHECKPOINT [overrides] [--samples N] [--best]

Loads the checkpoint (``RUN_DIR/checkpoints/last.pt``, or ``best.pt`` with --best) and the config
saved in it, computes every metric that fits the dataset, prints a table, writes ``eval.json``
beside the checkpoint and adds the figures to the run's TensorBoard at the checkpoint's iteration.
``--samples N`` also writes ``samples.png`` (a grid of N images, or a scatter for point data).
Overrides are dotted keys of the saved config, e.g. ``eval.n_samples=2000 device=cpu
dataset.root=/data``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from rich.console import Console
from rich.table import Table
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import save_image

from . import checkpoint, data as datasets, evaluate
from .config import TrainConfig, UserError, validate
from .monitor import figure_toy, write_eval
from .train import GAN, resolve_device


def find_checkpoint(path: str, best: bool) -> Path:
    """The checkpoint a path names: the file itself, or a run directory's checkpoints/{last,best}.pt."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    name = "best.pt" if best else "last.pt"
    for candidate in (p / "checkpoints" / name, p / name):
        if candidate.is_file():
            return candidate
    where = p / "checkpoints" / name
    raise UserError(f"{path} holds no checkpoint (looked for {where}); give a run directory of gan-train or a .pt file"
                    if p.exists() else f"{path}: no such file or directory")


def load_config(state, overrides):
    """The saved config, typed by the schema, with the command line's dotted overrides."""
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), state["config"])
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep or OmegaConf.select(cfg, key, default="<missing>") == "<missing>":
                raise UserError(f"{item}: not a setting of the saved config (write key=value, e.g. eval.n_samples=2000)")
            OmegaConf.update(cfg, key, OmegaConf.create({"v": value}).v if value else None)
    except OmegaConfBaseException as err:
        raise UserError(f"{' '.join(overrides) or 'the saved config'} is not allowed: {str(err).splitlines()[0]}") from None
    validate(cfg)
    return cfg


def write_samples(path: Path, G, data, evaluator, n: int) -> None:
    samples = evaluator.generate(G, n).cpu()
    if data.is_image:
        save_image(samples.clamp(0, 1), path, nrow=max(1, int(math.sqrt(n))), padding=2, pad_value=0.5)
    else:
        figure_toy(samples, data, f"{n} samples").savefig(path)


def run(argv) -> dict:
    parser = argparse.ArgumentParser(prog="gan-eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a run directory of gan-train or a checkpoint file")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the saved config")
    parser.add_argument("--samples", type=int, default=0, metavar="N", help="also write N samples to samples.png")
    parser.add_argument("--best", action="store_true", help="evaluate checkpoints/best.pt instead of last.pt")
    args = parser.parse_intermixed_args(argv)
    if args.samples < 0:
        raise UserError(f"--samples {args.samples} is not allowed: give a number of samples >= 1")

    ckpt = find_checkpoint(args.path, args.best)
    state = checkpoint.load(str(ckpt))
    cfg = load_config(state, args.overrides)
    datasets.check_available(cfg.dataset)
    device = resolve_device(cfg.device)
    data = datasets.load(cfg.dataset, device)
    gan = GAN(cfg, data, device)
    checkpoint.restore(state, G=gan.G, D=gan.D, opt_G=gan.opt_G, opt_D=gan.opt_D, path=str(ckpt))
    evaluator = evaluate.Evaluator(cfg.eval, data, device, cfg.loss.name, cfg.prior, cfg.z_dim, seed=cfg.seed)
    scalars, curves = evaluator.run(gan.G, gan.D)
    step = int(state["step"])

    report = {"checkpoint": str(ckpt), "step": step, "dataset": cfg.dataset.name, "metrics": scalars,
              "protocol": evaluator.protocol()}
    if evaluator.classifier_info:
        report["classifier"] = {k: v for k, v in evaluator.classifier_info.items() if k != "path"}
    (ckpt.parent / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    writer = SummaryWriter(log_dir=str(run_dir))
    write_eval(writer, step, scalars, curves)
    writer.close()
    if args.samples:
        write_samples(ckpt.parent / "samples.png", gan.G, data, evaluator, args.samples)

    console = Console()
    table = Table(title=f"gan-eval: {ckpt} (iteration {step})", header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for tag, value in scalars.items():
        table.add_row(tag, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    for name, text in evaluator.protocol().items():
        console.print(f"[dim]{name}: {text}[/dim]", soft_wrap=True)
    console.print(f"Wrote {ckpt.parent / 'eval.json'}" + (f" and {ckpt.parent / 'samples.png'}" if args.samples else ""),
                  soft_wrap=True, highlight=False)
    return report


def main() -> None:
    try:
        run(sys.argv[1:])
    except UserError as err:
        print(f"gan-eval: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
