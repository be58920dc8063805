#!/usr/bin/env python
"""Does every loss train with its defaults? Each loss x dataset for N iterations, as a user types it.

    python scripts/check_defaults.py --steps 1000 [--losses minimax,hinge] [--datasets ring,digits] [-- extra overrides]

Prints one line per run (status, final losses, D(x), D(G(z)), the dataset's headline metric, time)
and exits 1 if any run diverged. The test suite runs the same matrix for 300 iterations.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from gan_cli.cli.checks import compose
from gan_cli.cli.train import train
from gan_cli.config import UserError, config_dir, register_configs
from gan_cli.game import losses

DATASETS = ("mixture1d", "ring", "grid", "digits")
HEADLINE = {"mixture1d": "eval/jsd", "ring": "eval/jsd", "grid": "eval/jsd", "digits": "eval/fid"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--losses", default=",".join(losses.LOSSES))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("overrides", nargs="*", help="more gan-train overrides for every run")
    args = parser.parse_args()
    register_configs()
    os.environ.setdefault("GAN_CLI_CACHE", str(Path(tempfile.gettempdir()) / "gan-cli-check-defaults"))
    failed = 0
    for dataset in args.datasets.split(","):
        for loss in args.losses.split(","):
            overrides = [f"dataset={dataset}", f"loss={loss}", f"steps={args.steps}",
                         f"log_every={min(100, args.steps)}", f"eval_every={args.steps}",
                         f"sample_every={args.steps}", "eval.n_samples=2000", *args.overrides]
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as run_dir:
                try:
                    m = train(compose(config_dir(), overrides), Path(run_dir), overrides=overrides,
                              console=_quiet_console())
                    status = m["status"]
                except UserError as err:
                    m, status = {}, f"diverged ({str(err)[:90]})"
            failed += status != "ok"
            metric = HEADLINE[dataset]
            print(f"{dataset:10s} {loss:19s} {status:8s} "
                  f"loss_D {m.get('game/loss_D', math.nan):8.4f} loss_G {m.get('game/loss_G', math.nan):8.4f} "
                  f"D(x) {m.get('game/D_real', math.nan):7.3f} D(G(z)) {m.get('game/D_fake', math.nan):7.3f} "
                  f"{metric} {m.get(metric, math.nan):8.4f}  {time.perf_counter() - start:5.1f} s", flush=True)
    return 1 if failed else 0


def _quiet_console():
    from rich.console import Console

    return Console(file=open(os.devnull, "w"))


if __name__ == "__main__":
    sys.exit(main())
