"""Fuzz gan-train's command line with overrides drawn from the config schema itself.

    python scripts/fuzz.py --n 1000            # counts of each outcome, and every bad case
    python scripts/fuzz.py --n 200 --tree DIR  # the same cases against another checkout's gan_cli
    python scripts/fuzz.py --n 300 --sweeps    # sweeps (gan-train -m) in Hydra's sweep forms instead

Each case is ``gan-train dataset=ring steps=1 <small evaluation> <fuzzed overrides>``; the overrides
come from every key of the schema (gan_cli.config.domains, so a key added later is covered without
editing this file) with wrong types, out-of-range, zero, negative, non-finite, huge, tiny, empty and
very long values, interpolations, and the override grammar's forms (~key, =value, +key, ++key, a key
twice, unknown keys and group choices). An outcome is one of:

    ok         exit 0, metrics.json says status ok, every value of the saved config in its domain
    error      exit 2, stderr is one 'gan-train: error: ...' line (after any 'warning' lines) that
               names the key it is about
    nonsense   exit 0 although a value is outside its domain (or a flag/integer given as another type)
    unnamed    exit 2 with one line that does not name the key
    traceback  a Python traceback, or an exit status other than 0 and 2, or several error lines
    hang       still running after --timeout seconds (killed)

With --sweeps each case is a sweep (``gan-train -m``, the basic launcher or a population) of one or two settings in
Hydra's sweep forms (a list, range(a,b), glob(...), interval(a,b)), sometimes with a launcher's or the sweeper's own
setting (gan_cli.cli.checks.PLUGIN_SETTINGS). A sweep is ok when every job ends ok; an error when it is refused
in one line naming what it is about, or exits 1 naming its jobs that did not finish, each of them invalid or
diverged (a job that failed is a traceback: a fault).

Cases run in forked children of a server process that has imported gan_cli once (a case costs its
own work, not Python's start-up); each child has a directory of its own.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from scripts.forkserver import CommandServer  # noqa: E402

# a quick run: one iteration on the ring, a small evaluation
BASE = ("dataset=ring", "steps=1", "device=cpu", "n_samples=4", "eval.theory_samples=2000", "eval.mode_samples=500")
GROUPS = ("dataset", "arch", "loss", "optimizer", "experiment", "hparams_search", "hydra/launcher", "hydra/sweeper",
          "hydra/job_logging")
GENERIC = ("0", "-0", "-1", "1", "2", "0.5", "2.5", "1e12", "1000000000000", "-1e12", "inf", "-inf", "nan", "1e-300",
           "abc", "''", "' '", "x" * 300, "true", "false", "null", "[1,2]", "[]", "{a:1}",
           "${oc.env:GAN_CLI_NO_SUCH_VAR}", "${no.such.key}", "${optimizer.lr}", "/", "../..", "1_000")
# Hydra's options, anywhere among the settings: those that print (--cfg, --info), with their values good or bad
OPTIONS = (("-r",), ("--run",), ("--resolve",), ("--cfg", "job"), ("--cfg", "all"), ("-c", "hydra"), ("--cfg", "bogus"),
           ("--cfg",), ("-p", "optimizer"), ("-p", "optimizer.lr"), ("--package", "nope"), ("-p", "loss=minimax"),
           ("-p",), ("--info", "plugins"), ("-i", "bogus"), ("--experimental-rerun", "nope.pickle"), ("-cn", "nope"),
           ("--steps", "10"), ("--nonsense",))
PRINTING = ("--cfg", "-c", "--info", "-i")  # options after which a run that exits 0 prints instead of training
UNKNOWN = ("nope", "dataset.nope", "optimizer.learning_rate", "lr", "eval.fid", "hydra.nope", "foo.bar.baz", "hydrax",
           "hydra", "hydra.job.chdr", "hydra.job.chdir", "hydra.job.env_set.GAN_FUZZ", "hydra.launcher.n_jobs",
           # Hydra's settings that it reads only as a job starts: its logging, its verbosity, its callbacks
           "hydra.verbose", "hydra.job_logging.root.level", "hydra.hydra_logging.root.level",
           "hydra.job_logging.version", "hydra.job_logging.root.handlers", "hydra.callbacks.fuzz", "hydra.job.name")
EDITS = ("", "", "", "~", "+", "++")  # how a group or a setting outside the schema is given: set, removed, added


# ------------------------------------------------------------------------------------------------
# drawing cases (hypothesis strategies)


def keys() -> Dict[str, object]:
    from gan_cli.config import domains

    return dict(domains())


def values_for(domain) -> List[str]:
    """Values worth trying for a setting: its edges and just past them, its choices, and the generic set."""
    out = list(GENERIC)
    if domain.kind in ("int", "real", "reals"):
        for edge in (domain.lo, domain.hi):
            if edge is not None:
                out += [repr(edge), repr(edge * 10 + 1), repr(edge - 1), repr(edge + 1)]
        if domain.kind == "reals":
            out += ["[0.5]", "[1,2,3]", "[-1e12,1]", "[nan]", "[0,0]"]
    out += ["null" if c is None else str(c) for c in domain.choices]
    return out


def strategy():
    """A hypothesis strategy of fuzzed override lists (1 to 3 overrides)."""
    from hypothesis import strategies as st

    table = keys()
    names = sorted(table)

    def one(key_and_value):
        key, value, form, other = key_and_value
        return {
            "set": [f"{key}={value}"],
            "delete": [f"~{key}"],
            "delete_value": [f"~{key}={value}"],
            "add": [f"+{key}={value}"],
            "force": [f"++{key}={value}"],
            "twice": [f"{key}={value}", f"{key}={other}"],
            "no_key": [f"={value}"],
            "bare": [key],
        }[form]

    def for_key(key):
        vals = values_for(table[key])
        return st.tuples(st.just(key), st.sampled_from(vals), st.sampled_from(
            ("set", "set", "set", "set", "delete", "delete_value", "add", "force", "twice", "no_key", "bare")),
            st.sampled_from(vals)).map(one)

    settings = st.sampled_from(names).flatmap(for_key)
    choices = ("nope", "", "ring", "grid", "mlp", "maxout", "dcgan", "hinge", "adam", "figure1", "dirac", "x" * 300,
               "null", "basic", "population", "none")
    groups = st.tuples(st.sampled_from(EDITS + ("~=",)), st.sampled_from(GROUPS), st.sampled_from(choices)).map(
        lambda e: [f"~{e[1]}" if e[0] == "~" else f"{e[0].rstrip('=')}{e[1]}={e[2]}"])
    unknown = st.tuples(st.sampled_from(EDITS), st.sampled_from(UNKNOWN), st.sampled_from(GENERIC)).map(
        lambda e: [f"~{e[1]}" if e[0] == "~" else f"{e[0]}{e[1]}={e[2]}"])
    one_override = st.one_of(settings, settings, settings, groups, unknown, st.sampled_from(OPTIONS).map(list))
    return st.lists(one_override, min_size=1, max_size=3).map(lambda parts: [o for part in parts for o in part])


LAUNCHERS = ("", "", "hydra/launcher=population")


def sweep_strategy():
    """A hypothesis strategy of fuzzed sweeps: a launcher, one or two swept settings, maybe a plug-in's setting."""
    from hypothesis import strategies as st

    from gan_cli.cli.checks import PLUGIN_SETTINGS

    table = keys()

    def swept(key):
        vals = values_for(table[key]) if key in table else ["minimax", "hinge", "nope", "ring", "grid", "mlp", ""]
        return st.one_of(
            st.lists(st.sampled_from(vals), min_size=1, max_size=3).map(lambda vs: f"{key}={','.join(vs)}"),
            st.tuples(st.integers(-1, 3), st.integers(-1, 3)).map(lambda ab: f"{key}=range({ab[0]},{ab[1]})"),
            st.sampled_from(("*", "nomatch*", "m*", "*,exclude=[minimax,hinge,least_squares]", "[]")).map(
                lambda g: f"{key}=glob({g})"),
            st.tuples(st.sampled_from(vals), st.sampled_from(vals)).map(lambda ab: f"{key}=interval({ab[0]},{ab[1]})"))

    keys_ = st.sampled_from(sorted(table) + ["seed", "seed", "loss", "dataset", "arch", "optimizer.lr", "k"])
    places = ["hydra.sweep.subdir", "hydra.output_subdir"]  # where a sweep's jobs and their records go
    plugin = st.tuples(st.sampled_from(sorted(PLUGIN_SETTINGS) + places), st.sampled_from(GENERIC)).map(
        lambda kv: "=".join(kv))
    return st.tuples(st.sampled_from(LAUNCHERS), st.lists(keys_.flatmap(swept), min_size=1, max_size=2),
                     st.lists(plugin, max_size=1)).map(lambda t: [o for o in (t[0], *t[1], *t[2]) if o])


def sweep_command(overrides: Sequence[str]) -> List[str]:
    """A sweep case's command line: -m, the base minus what the overrides set, the overrides, the sweep's directory."""
    return ["-m", *command(overrides), "hydra.sweep.dir=sweep"]


def judge_sweep(result: dict) -> str:
    rc, err = result["rc"], result["stderr"]
    if rc is None:
        return "hang"
    if "Traceback (most recent call last)" in err or rc not in (0, 1, 2):
        return "traceback"
    given = [o for o in result["argv"] if o not in BASE and o not in ("-m", "hydra.sweep.dir=sweep")]
    if rc == 2:
        return judge({**result, "argv": given}, {})
    status = [json.loads(p.read_text()).get("status") for p in Path(result["cwd"]).glob("sweep/*/metrics.json")]
    last = ([line for line in err.splitlines() if line.strip()] or [""])[-1]
    if rc == 0:
        result["why"] = None if status and set(status) == {"ok"} else f"exit 0 with the jobs' status {status}"
        return "nonsense" if result["why"] else "ok"
    named = last.startswith("gan-train: ") and "jobs of the sweep did not finish" in last
    return "error" if named and set(status) - {"ok"} <= {"invalid", "diverged"} and status != ["ok"] * len(
        status) else "traceback"


def command(overrides: Sequence[str]) -> List[str]:
    """The case's whole command line: the base minus any key the overrides set, then the overrides."""
    given = {o.lstrip("~+").partition("=")[0] for o in overrides}
    return [b for b in BASE if b.partition("=")[0] not in given] + list(overrides)


# ------------------------------------------------------------------------------------------------
# running cases: a server that imported gan_cli forks one child per case


class Server:
    """``run(argv)`` runs gan-train with argv in a fresh directory, in a forked child of one process that
    imported the gan_cli of ``tree`` (scripts/forkserver.py)."""

    def __init__(self, tree: Path = REPO, timeout: float = 120.0):
        self.timeout, self.root, self.count = timeout, Path(tempfile.mkdtemp(prefix="gan-fuzz-")), 0
        self.env = {**os.environ, "PYTHONPATH": str(tree), "GAN_CLI_CACHE": str(self.root / "cache")}
        self.env.pop("GAN_CLI_NO_SUCH_VAR", None)
        self.server = CommandServer(self.root, self.env, tree)

    def run(self, argv: Sequence[str]) -> dict:
        self.count += 1
        cwd = self.root / f"case{self.count:05d}"
        cwd.mkdir()
        try:
            done = self.server.run("gan-train", list(argv), cwd, self.env, self.timeout)
            rc, stdout, stderr = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as hang:
            rc, stdout, stderr = None, hang.stdout or "", hang.stderr or ""
        return {"argv": list(argv), "cwd": str(cwd), "rc": rc, "seconds": self.server.seconds, "stdout": stdout,
                "stderr": stderr}

    def close(self, keep: bool = False) -> None:
        self.server.close()
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# judging an outcome


def _parsed(override: str):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides([override])[0]
    except Exception:
        return None


def out_of_domain(result: dict, table: Dict[str, object]) -> Optional[str]:
    """For a run that exited 0: the first value that makes no sense (None when all do): a value of the
    saved config outside its domain, or a flag / integer that the command line gave as another type."""
    from omegaconf import OmegaConf

    from gan_cli.config import schema

    for o in result["argv"]:
        p = _parsed(o)
        if p is None or o.startswith("~") or "${" in o:
            continue
        key, domain = p.get_key_element().lstrip("+"), table.get(p.get_key_element().lstrip("+"))
        value = p.value()
        if domain is None or p.is_sweep_override():
            continue
        if domain.kind == "flag" and not isinstance(value, bool):
            return f"{o} (a flag given as {type(value).__name__})"
        if domain.kind == "int" and value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            return f"{o} (an integer given as {type(value).__name__})"
    runs = list(Path(result["cwd"]).glob("outputs/runs/*/.hydra/config.yaml"))
    if len(runs) != 1:
        return f"{len(runs)} run directories"
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema()), OmegaConf.load(runs[0]))
        for key, domain in table.items():
            value = OmegaConf.select(cfg, key)
            value = OmegaConf.to_container(value) if hasattr(value, "_content") else value
            if not domain.allows(value):
                return f"{key}={value!r} in the run's config"
    except Exception as err:
        return f"the run's config cannot be read: {type(err).__name__}"
    return None


def prints(argv: Sequence[str]) -> bool:
    """The command line asks for a config or Hydra's information, not a run."""
    return any(a.partition("=")[0] in PRINTING for a in argv)


def judge(result: dict, table: Dict[str, object]) -> str:
    rc, err = result["rc"], result["stderr"]
    lines = [line for line in err.splitlines() if line.strip()]
    if rc is None:
        return "hang"
    if "Traceback (most recent call last)" in err or rc not in (0, 2):
        return "traceback"
    if rc == 0 and prints(result["argv"]):
        return "ok" if result["stdout"].strip() and not list(Path(result["cwd"]).glob("outputs/*")) else "nonsense"
    if rc == 0:
        runs = list(Path(result["cwd"]).glob("outputs/runs/*/metrics.json"))
        status = json.loads(runs[0].read_text()).get("status") if len(runs) == 1 else None
        if status != "ok":
            return "traceback"
        result["why"] = out_of_domain(result, table)
        return "nonsense" if result["why"] else "ok"
    errors = [line for line in lines if not line.startswith("gan-train: warning:")]
    if len(errors) != 1 or not errors[0].startswith("gan-train: error:"):
        return "traceback"
    given = [o for o in result["argv"] if o not in BASE]
    about = set()  # what may name the problem: an override as typed, its key, the key's last part, its group
    for o in given:
        key = o.lstrip("~+").partition("=")[0]
        about |= {o, key, key.rpartition(".")[2], key.removesuffix(".name")} if key else {o}
    named = any(a and a in errors[0] for a in about)
    return "error" if named or not given else "unnamed"


BAD = ("nonsense", "unnamed", "traceback", "hang")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="cases to run")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis' seed (the same cases for the same seed)")
    parser.add_argument("--tree", type=Path, default=REPO, help="the checkout whose gan_cli runs the cases")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a case counts as a hang")
    parser.add_argument("--json", type=Path, help="also write every case and its outcome here")
    parser.add_argument("--sweeps", action="store_true", help="fuzz sweeps (gan-train -m) instead of single runs")
    parser.add_argument("--keep", action="store_true", help="keep the cases' directories (printed at the end)")
    args = parser.parse_args()

    from hypothesis import HealthCheck, Phase, given, seed, settings

    table, server, counts, cases = keys(), Server(args.tree, args.timeout), collections.Counter(), []
    started = time.monotonic()

    @seed(args.seed)
    @settings(max_examples=args.n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(sweep_strategy() if args.sweeps else strategy())
    def one(overrides):
        result = server.run(sweep_command(overrides) if args.sweeps else command(overrides))
        outcome = judge_sweep(result) if args.sweeps else judge(result, table)
        counts[outcome] += 1
        cases.append({**result, "outcome": outcome})
        if outcome in BAD:
            detail = result.get("why") or (result["stderr"].strip().splitlines() or ["(no output)"])[-1]
            print(f"{outcome:9s} rc={result['rc']} gan-train {' '.join(result['argv'])}\n"
                  f"          {detail[:300]}", flush=True)

    try:
        one()
    finally:
        server.close(keep=args.keep)
        if args.keep:
            print(f"cases kept in {server.root}")
    total = sum(counts.values())
    print(f"{total} cases in {time.monotonic() - started:.0f} s: " +
          ", ".join(f"{name} {counts[name]}" for name in ("ok", "error") + BAD))
    if args.json:
        args.json.write_text(json.dumps(cases, indent=1))
    sys.exit(1 if any(counts[b] for b in BAD) else 0)


if __name__ == "__main__":
    main()
