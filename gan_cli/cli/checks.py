"""Check a gan-train command line before Hydra creates a run directory, and a composed config before anything
is built: every mistake becomes one UserError line naming the bad value and what is allowed. Sweeps (``k=1,5``)
are checked one combination at a time.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import difflib
import functools
import importlib.util
import itertools
import os
import select
import signal
import sys
import threading
from pathlib import Path, PurePath
from typing import Callable, Dict, List, NoReturn, Optional, Sequence

from hydra import compose as compose_hydra
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob, IntervalSweep
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ConfigTypeError, OmegaConfBaseException, ValidationError

from gan_cli import config, data
from gan_cli.config import GROUPS, PRESETS, UserError, domains, first_line
from gan_cli.evaluation import evaluate
from gan_cli.game import models, population
from gan_cli.runs import checkpoint

# Flags that make Hydra print something instead of running, and flags that take a value.
_CONFIG_FLAGS = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd"}  # another primary config
_INFO_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc",
               "--version", "--experimental-rerun", *_CONFIG_FLAGS}
# settings that hold a path: written as the tool prints them, even with '=' or ',' in a run's name
PATH_KEYS = ("resume", "dataset.root", "eval.cache_dir", "hydra.run.dir", "hydra.sweep.dir")


def _overrides(argv: Sequence[str]) -> List[str]:
    """The settings of a command line: its arguments that are neither Hydra's options nor their values."""
    return [a for a in _split(argv)[1] if not a.startswith("-")]


def _explain(err: Exception, overrides: List[str]) -> str:
    """One line for a composition error: the override at fault and what its key accepts."""
    cause = err if isinstance(err, OmegaConfBaseException) else err.__cause__
    key = getattr(cause, "full_key", None) or ""
    given = next((o for o in overrides if o.lstrip("+~").partition("=")[0] == key), None)
    inside = next((o for o in overrides if key.startswith(o.lstrip("+~").partition("=")[0] + ".")), None)
    if isinstance(cause, ConfigKeyError) and given is None and inside is not None:  # loss.recipe={a:1}
        setting = inside.lstrip("+~").partition("=")[0]
        return f"{inside}: {setting} has no entry '{key[len(setting) + 1:]}' to set (`gan-train --cfg job` shows it)"
    if isinstance(cause, ConfigKeyError) or "Could not override" in str(err) or "Could not append" in str(err):
        bad = given or next((o for o in overrides if f"'{o.lstrip('+~').partition('=')[0]}'" in str(err)), key)
        return unknown_key(bad)
    if isinstance(cause, (ValidationError, ConfigTypeError)) and given:  # a value of the wrong type: what the key takes
        domain = dict(domains()).get(key)
        return f"{given} is not allowed: {f'{key} must be {domain.describe()}' if domain else first_line(cause)}"
    message = first_line(cause or err)
    if key and key in message:
        return message
    culprit = given or (" ".join(overrides) if len(overrides) <= 3 else "the command line")
    return f"{culprit}: {message}"


def check(cfg) -> None:
    """Everything about a composed config that is known before data or networks are built: the
    range of every knob (config.py), each group's choice (its builder), what fits with what. A figure named by
    its old tag (eval.best_by=theory/jsd) is renamed in place."""
    evaluate.upgrade(cfg)
    config.validate(cfg)
    dataset = data.spec(cfg.dataset.name)
    models.check(cfg.arch.name, cfg.dataset.name, is_image=dataset.dim is None, dim=dataset.dim, pack=cfg.pack)
    evaluate.check(cfg)


def _known_keys() -> List[str]:
    """Every setting's dotted name, and the names of the groups (``dataset``, ``eval``, ``experiment``)."""
    keys = [key for key, _ in domains()]
    return keys + list(dict.fromkeys(k.partition(".")[0] for k in keys if "." in k)) + list(PRESETS)


def unknown_key(override: str) -> str:
    """The message for a key that is not a setting, with the nearest setting it may mean."""
    key, _, value = override.lstrip("+~").partition("=")
    known = _known_keys()
    near = [k for k in known if k.endswith("." + key)][:3] or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean {' or '.join(f'{k}={value}' for k in near)}? " if near else ""
    return f"{override}: no such setting; {hint}(`gan-train --cfg job` lists them all)"


def apply_recipe(cfg, overrides: Sequence[str]) -> Dict[str, dict]:
    """Apply the chosen loss's ``recipe`` (the settings its paper trains with), then the dataset's (settings it
    trains with, e.g. a smaller SGD step on larger coordinates), wherever the user, the experiment preset and an
    earlier recipe chose nothing; returns what each set, by choice (``{"loss=wasserstein_gp": {...}}``). A
    recipe's group choice (``optimizer: adam``) brings that option's YAML; its dotted settings apply while that
    choice stands."""
    if cfg.resume:  # a resumed run keeps its checkpoint's config
        return {}
    # what the command line and its experiment preset chose (a group choice counts as its group's name)
    set_keys, out = {o.lstrip("+~").partition("=")[0] for o in overrides}, {}
    experiment = next((o.partition("=")[2] for o in overrides if o.lstrip("+~").startswith("experiment=")), None)
    if experiment:
        groups, settings = config.preset(experiment)
        set_keys |= set(groups) | set(settings)
    for owner in ("loss", "dataset"):  # whose recipes apply, the first before (and over) the next
        recipe = cfg[owner].get("recipe")
        if recipe is not None and not OmegaConf.is_dict(recipe):  # an interpolation that is not a mapping (${seed})
            raise UserError(f"{owner}.recipe={config.shown(recipe)} is not allowed: {owner}.recipe must be "
                            f"{dict(domains())[f'{owner}.recipe'].describe()}")
        if applied := _apply(cfg, OmegaConf.to_container(recipe) if recipe else {}, set_keys):
            out[f"{owner}={cfg[owner].name}"] = applied
            set_keys |= set(applied)
    return out


def _apply(cfg, recipe: dict, set_keys: set) -> dict:
    applied = {}
    for key, value in recipe.items():
        group = key.partition(".")[0]
        if key in set_keys:
            continue
        if key in GROUPS:
            kept = {k: OmegaConf.select(cfg, k) for k in set_keys if k.startswith(group + ".")}
            cfg[group] = OmegaConf.merge(OmegaConf.structured(config.schema(group)), config.choice_node(group, value))
            for k, v in kept.items():
                OmegaConf.update(cfg, k, v)
        elif group in GROUPS and recipe.get(group, cfg[group].name) != cfg[group].name:
            continue  # a setting of the recipe's optimizer, and another optimizer was chosen
        elif key == "k" and cfg.updates == "simultaneous":
            continue  # k counts D updates per G update of alternating updates
        else:
            OmegaConf.update(cfg, key, value)
        applied[key] = value
    return applied


@contextlib.contextmanager
def _hydra(conf_dir: str):
    """Hydra initialised on ``conf_dir`` for the block, and cleared after it (as before it)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            yield
    finally:
        GlobalHydra.instance().clear()


def compose(conf_dir: str, overrides: Sequence[str], with_hydra: bool = False):
    """The config gan-train runs for these overrides: Hydra's composition, then the recipes (``with_hydra``: Hydra's
    own node too, its launcher's and sweeper's settings, and no recipes)."""
    config.register_configs()  # the schema of the choices registered so far
    with _hydra(conf_dir):
        cfg = compose_hydra(config_name="config", overrides=list(overrides), return_hydra_config=with_hydra)
    if not with_hydra:
        apply_recipe(cfg, overrides)
    return cfg


def hydra_error(err: Exception) -> UserError:
    """Hydra's report of a problem in one line: its first line and, under it, the reason (a value of the wrong type, a
    key the launcher does not have)."""
    cause = err.__cause__
    known = cause is None or first_line(cause) in first_line(err)
    return UserError(first_line(err).rstrip(".") + ("" if known else f": {first_line(cause)}"))


def _composed(conf_dir: str, overrides: Sequence[str], error: type = UserError, **hydra):
    """:func:`compose`, its failure one ``error`` line naming the override at fault (``with_hydra=True``: Hydra's
    report, :func:`hydra_error`)."""
    try:
        return compose(conf_dir, overrides, **hydra)
    except (OmegaConfBaseException, HydraException) as err:
        raise (hydra_error(err) if hydra else error(_explain(err, overrides))) from None


class ComposeError(UserError):
    """The command line cannot even be composed (an unknown choice, a value of the wrong type): no job
    of a sweep with it can run, so the whole command is refused."""


def typed(overrides: List[str]) -> None:
    """A flag or an integer given as another type, which OmegaConf would convert (``eval.features=1e12``
    reads as true, ``k=2.0`` as 2): refused, naming the key and its domain."""
    table = dict(domains())
    for o in config.parse_overrides(overrides):  # none where not key=value: the caller names that
        key = o.get_key_element().lstrip("+~")
        domain, value = table.get(key), o.value()
        if domain is None or o.is_delete() or o.is_sweep_override() or (isinstance(value, str) and "${" in value):
            continue
        allowed = {"flag": (bool,), "int": (int, type(None))}.get(domain.kind)  # the types a flag, an integer take
        if allowed and type(value) not in allowed:
            raise ComposeError(f"{o.input_line} is not allowed: {key} must be {domain.describe()}")


def _names(conf_dir: str, key: str) -> List[str]:
    """A group of components: its registered choices; experiment, hparams_search: their YAML files; else none."""
    if key in GROUPS:
        return sorted(config.choices(key))
    return sorted(p.stem for p in (Path(conf_dir) / key).glob("*.yaml")) if key in PRESETS else []


def _syntax(overrides: Sequence[str]) -> None:
    """Under another primary config (``-cn``, ``-cp``, ``-cd``: its settings unknown here), what holds whatever the
    config: an override names a setting, and a group's choice is a name (Hydra's own answer to ``=0`` or
    ``hydra/job_logging=null`` was a ValueError's traceback)."""
    _settings([o for o in overrides if not o.lstrip("+~").partition("=")[0].strip()])
    for o in overrides:
        key = o.lstrip("+~").partition("=")[0]
        if not o.startswith("~") and ("/" in key or key in (*GROUPS, *PRESETS)):
            try:
                parsed = OverridesParser.create().parse_overrides([o])[0]
            except HydraException as err:
                raise UserError(f"{o}: {first_line(err)}") from None
            if not parsed.is_sweep_override() and not isinstance(parsed.value(), str):
                raise UserError(f"{o}: a choice of '{key}' is a name ({key}=NAME)")


def _settings(overrides: Sequence[str]) -> None:
    """Each override sets a setting of the schema: it names one, and neither removes (``~``) nor adds (``+``) one."""
    for o in overrides:
        key = o.lstrip("+~").partition("=")[0]
        if not key.strip():
            raise UserError(f"{o or repr(o)}: no setting named before '='; write key=value (e.g. steps=100)")
        if o[:1] in "+~" and key not in _known_keys():
            raise UserError(unknown_key(o))
        if o.startswith("~"):  # the schema is closed: a setting cannot be removed, only set
            raise UserError(f"{o}: settings cannot be removed; set {key} with {key}=VALUE "
                            "(`gan-train --cfg job` lists the settings and their values)")
        if o.startswith("+"):  # the settings are a closed schema: nothing to add
            raise UserError(f"{o}: {key} exists; set it with {o.lstrip('+')}")


def _checked(argv: Sequence[str], conf_dir: str) -> tuple:
    """(every setting of a command line, those not Hydra's), after the checks that a run and a printed config share:
    plug-ins installed, Hydra's groups and plug-in settings, each setting one of the schema's."""
    everything = _overrides(argv)
    _plugins(everything)
    _plugin_settings(conf_dir, everything)
    if config.sweeping(argv):
        _sweep_places(everything)
    overrides = [o for o in everything if not config.hydras(o.lstrip("+~").partition("=")[0])]
    _settings(overrides)
    return everything, overrides


def _sweep_places(overrides: Sequence[str]) -> None:
    """Where a sweep's jobs keep their records: each job in a directory of its own directly inside hydra.sweep.dir,
    where its summary reads them (``../x`` and ``a/b`` put them where it does not look, ``same`` every job in one,
    ``.`` into the sweep's own files), its Hydra records in .hydra/ (with another hydra.output_subdir the summary
    listed no job)."""
    for o in config.parse_overrides(overrides):
        key, value = o.get_key_element().lstrip("+"), str(o.value())
        if key == "hydra.sweep.subdir" and not o.is_sweep_override():
            parts = PurePath(value).parts
            if "${" not in value or len(parts) != 1 or parts[0] in ("..", ".", "/"):
                raise UserError(f"{o.input_line} is not allowed: hydra.sweep.subdir must name each job's own "
                                "directory directly inside hydra.sweep.dir, e.g. ${hydra.job.num} (its default "
                                "names each job by number and what varies)")
        if key == "hydra.output_subdir":
            raise UserError(f"{o.input_line}: a sweep keeps each job's Hydra records in .hydra/, where its summary "
                            "reads them; leave hydra.output_subdir as it is in a sweep")


def _choices(conf_dir: str, overrides: Sequence[str]) -> None:
    """Each group's choice is one of its options."""
    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        if (names := _names(conf_dir, key)) and value not in names:
            raise ComposeError(f"{key}={value} is not a choice of '{key}'; choose one of: {', '.join(names)}")


def _check_one(conf_dir: str, overrides: List[str], together: bool = False) -> List[str]:
    """Compose one concrete command line and check everything that can be known before training (``together``: what
    a population trains, hydra/launcher=population); returns the warnings (settings given that have no effect with
    the chosen options)."""
    typed(overrides)
    _choices(conf_dir, overrides)
    cfg = _composed(conf_dir, overrides, ComposeError)
    resumable = [o for o in overrides if o.lstrip("+~").partition("=")[0] in checkpoint.RESUMABLE]
    cfg, saved = checkpoint.resume_config(cfg, overrides, compose(conf_dir, resumable) if cfg.resume else None)
    renamed = evaluate.upgrade(cfg)
    check(cfg)
    if saved is not None:
        checkpoint.check_steps(cfg, saved)
    data.check_available(cfg.dataset)
    config.resolve_device(cfg.device)
    if together:
        population.refuse(cfg)
    return renamed + config.inapplicable(cfg, {o.lstrip("+~").partition("=")[0] for o in overrides})


def _flags(argv: Sequence[str]) -> None:
    """GNU-style options (``--steps 10``) are not how Hydra takes settings: say what to type instead."""
    for i, arg in enumerate(argv):
        if not arg.startswith("-") or arg.partition("=")[0] in _actions():
            continue
        name, sep, value = arg.lstrip("-").partition("=")
        if not sep and i + 1 < len(argv) and "=" not in argv[i + 1] and not argv[i + 1].startswith("-"):
            value = argv[i + 1]
        key = name.replace("-", "_")
        if key in _known_keys():
            raise UserError(f"{arg}: gan-train takes settings as key=value; use {key}={value or '...'}")
        raise UserError(f"{arg} is not an option of gan-train; settings are key=value (e.g. steps=100), "
                        "options are listed by gan-train --help")


def quote_paths(argv: Sequence[str]) -> List[str]:
    """Quote the value of a path setting that Hydra's grammar cannot read as it is (a run directory
    named ``..._loss=minimax`` or ``0_k=1,loss=minimax``), so that the paths the tool prints work, or reads as
    another text (``hydra.run.dir=1_000`` was the number 1000: a directory named ``1000``)."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+~") in PATH_KEYS and value and value[0] not in "'\"":
            parsed = config.parse_overrides([arg])  # none where Hydra's grammar cannot read it
            if not any(p.is_sweep_override() or isinstance(p.value(), str) or p.value() is None for p in parsed):
                arg = f"{key}='{value.replace(chr(39), chr(92) + chr(39))}'"
        out.append(arg)
    return out


def last_of_each(argv: Sequence[str]) -> List[str]:
    """The command line less a setting given again later (``k=${no.such.key} k=2`` -> ``k=2``): Hydra keeps the
    last value anyway, and the earlier one would still name the run directory (and be resolved there)."""
    keys = [a.partition("=")[0] if "=" in a and not a.startswith(("-", "+", "~")) else None for a in argv]
    return [a for i, (a, key) in enumerate(zip(argv, keys)) if key is None or key not in keys[i + 1:]]


def _value(parsed, key: str) -> Optional[str]:
    return next((str(o.value()) for o in parsed if o.get_key_element() == key), None)


def resume_in_place(argv: Sequence[str]) -> List[str]:
    """``resume=RUN`` continues in RUN's own directory (unless hydra.run.dir says otherwise): add that
    directory, and keep the run's first .hydra/ files by writing this attempt's beside them."""
    argv = list(argv)
    if config.sweeping(argv) or any(a.split("=", 1)[0] in _INFO_FLAGS for a in argv):
        return argv
    parsed = config.parse_overrides(_overrides(argv))  # none where they do not parse: precheck names the problem
    resume, given = _value(parsed, "resume"), _value(parsed, "hydra.run.dir")
    if not resume:
        return argv
    ckpt = checkpoint.find(resume)
    if ckpt.name != "last.pt" or ckpt.parent.name != "checkpoints":
        return argv  # an earlier checkpoint (best.pt, a copy): a new run directory, so nothing later is lost
    beside = "hydra.output_subdir=.hydra/resume-${now:%Y-%m-%d_%H-%M-%S}"
    if given is not None:  # its own directory named: this attempt's records beside the first there too
        return argv + [beside] if Path(str(given)).expanduser().resolve() == ckpt.parent.parent.resolve() else argv
    run_dir = str(ckpt.parent.parent).replace("'", "\\'")
    return argv + [f"hydra.run.dir='{run_dir}'", beside]


def job_config(argv: Sequence[str], conf_dir: str) -> Optional[str]:
    """For ``gan-train --cfg job|hydra|all [-p PART] [overrides]``: the config as it will run (the recipes applied),
    Hydra's node, or both, as YAML; None for any other command line (Hydra answers those itself)."""
    options = _options(argv)
    if options.cfg is None or options.help or options.hydra_help:  # Hydra's help comes first
        return None
    package, resolve = options.package or "_global_", options.resolve
    everything, overrides = _checked(argv, conf_dir)
    _choices(conf_dir, overrides)
    cfg = OmegaConf.to_container(_composed(conf_dir, overrides)) if options.cfg != "hydra" else {}
    if options.cfg != "job" or len(overrides) < len(everything):  # Hydra's node, its settings checked as a run's
        node = OmegaConf.to_container(_composed(conf_dir, everything, with_hydra=True).hydra)
        if options.cfg != "job":  # Hydra's node first, as Hydra prints it (--cfg hydra: without its help texts)
            cfg = {"hydra": node if options.cfg == "all" else {
                k: v for k, v in node.items() if k not in ("help", "hydra_help")}, **cfg}
    cfg = OmegaConf.create(cfg)
    part = cfg if package == "_global_" else OmegaConf.select(cfg, package)
    if part is None:
        raise UserError(f"--package {package}: the config has no such part; its parts: {', '.join(cfg)} (a part of "
                        f"one: {'hydra.job' if options.cfg == 'hydra' else 'optimizer.lr'})")
    if not OmegaConf.is_config(part):
        return f"{part}\n"
    if resolve:  # in place, as Hydra does: a value still missing (???) stays so
        OmegaConf.resolve(part)
    return ("" if package == "_global_" else f"# @package {package}\n") + OmegaConf.to_yaml(part)


# what a choice needs installed: (module, the extra that brings it)
PLUGINS = {"hparams_search": ("hydra_plugins.hydra_optuna_sweeper", "search"),
           "hydra/launcher=joblib": ("hydra_plugins.hydra_joblib_launcher", "launchers"),
           **{f"hydra/launcher={name}": ("hydra_plugins.hydra_submitit_launcher", "cluster")
              for name in ("slurm", "submitit_local", "submitit_slurm")}}


def _count(lo: int, null: str = "") -> tuple:
    """An integer >= ``lo`` (or null, meaning ``null``): (allows, what is allowed)."""
    return (lambda v: (v is None and bool(null)) or (type(v) is int and v >= lo),
            f"an integer >= {lo}" + (f", or null ({null})" if null else ""))


# settings of Hydra's and its plugins' that they check late or not at all (a traceback, a sweep of no jobs): domains
PLUGIN_SETTINGS = {
    "hydra.verbose": (lambda v: type(v) in (bool, str) or (type(v) is list and all(type(x) is str for x in v)),
                      "true, false, a logger's name or a list of names (e.g. [gan_cli])"),
    "hydra.launcher.max_members": _count(1, "as many members as memory allows"),  # population
    "hydra.launcher.n_jobs": (lambda v: type(v) is int and v != 0, "an integer other than 0 (-1: every core)"),
    **{f"hydra.launcher.{key}": _count(1) for key in ("timeout_min", "nodes", "tasks_per_node")},  # submitit
    "hydra.launcher.cpus_per_task": _count(1, "the cluster's default"),
    "hydra.sweeper.n_trials": _count(1), "hydra.sweeper.n_jobs": _count(1),  # optuna
    "hydra.sweeper.direction": (lambda v: all(d in ("minimize", "maximize") for d in (v if type(v) is list else [v])),
                                "minimize or maximize (a list of them for several objectives)"),
    "hydra.sweeper.max_failure_rate": (lambda v: type(v) in (int, float) and 0 <= v <= 1, "a number in [0, 1]"),
}


def _hydra_group_options(conf_dir: str, groups: Sequence[str]) -> Dict[str, List[str]]:
    """The options of each of these groups of Hydra's (hydra/launcher: basic, joblib, ...)."""
    with _hydra(conf_dir):
        return {g: GlobalHydra.instance().config_loader().get_group_options(g) for g in groups}


def _hydra_choices(conf_dir: str, overrides: Sequence[str]) -> None:
    """A choice of one of Hydra's groups (hydra/launcher=..., hydra/sweeper=...) that the group does not have: named
    with the group's choices (Hydra's own line names neither the setting nor what is allowed)."""
    chosen = [o for o in config.parse_overrides([o for o in overrides if o.startswith("hydra/")])
              if not o.is_sweep_override()]
    if not chosen:
        return
    options = _hydra_group_options(conf_dir, [o.key_or_group for o in chosen])
    for o in chosen:
        if (names := options[o.key_or_group]) and o.value() not in names:
            raise UserError(f"{o.input_line} is not a choice of '{o.key_or_group}'; choose one of: {', '.join(names)}")


def _plugin_settings(conf_dir: str, overrides: Sequence[str]) -> None:
    """A Hydra plugin's setting given out of its domain (refused, naming what is allowed), or one that the chosen
    launcher or sweeper does not have (refused before anything else is reported)."""
    _hydra_choices(conf_dir, overrides)
    _hydra_edits(conf_dir, overrides)
    for o in config.parse_overrides([o for o in overrides if o.partition("=")[0] in PLUGIN_SETTINGS]):
        (allows, allowed), value = PLUGIN_SETTINGS[o.get_key_element()], o.value()
        if not o.is_sweep_override() and not (isinstance(value, str) and "${" in value) and not allows(value):
            raise UserError(f"{o.input_line} is not allowed: {o.get_key_element()} must be {allowed}")
    if any(o.startswith(("hydra.launcher.", "hydra.sweeper.")) for o in overrides):
        _hydra_config(conf_dir, overrides)
    _hydra_reads(conf_dir, overrides)


# what Hydra builds from its settings only as a job starts: its logging (with hydra.verbose) and its callbacks
LATE = ("hydra.job_logging", "hydra.hydra_logging", "hydra.verbose", "hydra.callbacks")
# settings that Hydra reads from a copy of its own node alone (an interpolation out of it fails): hydra/core/utils.py
ALONE = ("hydra.job.chdir", "hydra.job.env_set")


def _hydra_reads(conf_dir: str, overrides: Sequence[str]) -> None:
    """Hydra's settings given on the command line read as Hydra reads them as a job starts (its own report of one it
    cannot use was a traceback, or a line naming no setting): each resolves to a value of its domain, and its logging
    and callbacks, where the command line changes them, are built. Tried in a child process, which changes nothing
    here; a one-line UserError naming the setting."""
    kept = [o for o in overrides if o[:1] != "~"]
    keyed = ((o.get_key_element().lstrip("+"), o) for o in config.parse_overrides(kept))
    given = {key: o.input_line for key, o in keyed  # the last of each, as Hydra keeps it
             if config.hydras(key) and key != "hydra" and not o.is_sweep_override()}
    late = [o for key, o in given.items() if key.startswith(LATE)]
    read = {key: o for key, o in given.items() if "/" not in key and "${" in o}  # literals: checked above
    if (late or read) and hasattr(os, "fork"):
        cfg = _hydra_config(conf_dir, kept)
        if message := _apart(lambda: _read_as_hydra(cfg, read, late)):
            raise UserError(message)


def _read_as_hydra(cfg, read: Dict[str, str], late: List[str]) -> str:
    """What Hydra would report reading ``read`` and building the ``late`` parts of ``cfg`` as a job starts (in a
    scratch output directory), in one line naming the setting; empty where nothing."""
    import copy
    import tempfile

    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import configure_log
    from hydra.utils import instantiate

    with tempfile.TemporaryDirectory() as scratch:
        for key, value in (("runtime.output_dir", scratch), ("job.num", 0), ("job.id", "0")):
            OmegaConf.update(cfg.hydra, key, value, force_add=True)
        HydraConfig.instance().set_config(cfg)
        alone = copy.deepcopy(HydraConfig.instance().cfg)
        for key, o in read.items():
            try:
                value = OmegaConf.select(alone if key.startswith(ALONE) else cfg, key, throw_on_missing=True)
                value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
            except OmegaConfBaseException as err:
                where = " (Hydra reads it from its own settings alone)" if key.startswith(ALONE) else ""
                return f"{o}: {key} cannot be read{where}: {first_line(err)}"
            allows, allowed = PLUGIN_SETTINGS.get(key, (lambda v: True, ""))
            if not allows(value):
                return f"{o} is not allowed: {key} must be {allowed}"
        if not late:
            return ""
        try:
            for section in ("hydra_logging", "job_logging"):
                configure_log(cfg.hydra[section], cfg.hydra.verbose)
            for callback in cfg.hydra.callbacks.values():
                instantiate(callback)
        except (HydraException, OmegaConfBaseException, ValueError, TypeError, ImportError, AttributeError,
                KeyError, OSError) as err:
            cause = err.__cause__ or err.__context__
            why = first_line(err) + (f": {first_line(cause)}" if cause and first_line(cause) not in first_line(err)
                                      else "")
            return f"{' '.join(late)}: Hydra cannot use {'it' if len(late) == 1 else 'them'} as a job starts: {why}"
    return ""


def _apart(work: Callable[[], str], timeout: float = 30.0) -> str:
    """``work()`` in a forked child process (whatever it changes, it changes there): the line it returns; nothing if
    it has not answered within ``timeout`` seconds (then it is killed, and Hydra reports what it finds itself)."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no output of its own, no exit handlers
        message = ""
        try:
            os.close(reader)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            message = work()
        finally:
            os.write(writer, message.encode()[:4000])
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        answered = select.select([pipe], [], [], timeout)[0]
        if not answered:
            os.kill(pid, signal.SIGKILL)
        message = pipe.read().decode(errors="replace") if answered else ""
    os.waitpid(pid, 0)
    return message


def _hydra_config(conf_dir: str, overrides: Sequence[str]):
    """The config with Hydra's node that the Hydra side of a command line composes (its swept values left out)."""
    side = [o for o in overrides if o.lstrip("+").startswith(("hydra.", "hydra/", "hparams_search=", "experiment="))]
    return _composed(conf_dir, [o.input_line for o in config.parse_overrides(side) if not o.is_sweep_override()],
                     with_hydra=True)


def _hydra_edits(conf_dir: str, overrides: Sequence[str]) -> None:
    """``~`` and ``+`` on Hydra's side, as on gan-train's own: its groups are neither removed nor added, and the
    settings of its schema neither removed nor added (``+hydra.job.chdr=true`` ran as if not given); an entry of one
    of its free tables may be (``+hydra.job.env_set.FOO=1``)."""
    for o in overrides:
        if o.partition("=")[0] == "hydra":  # Hydra's whole node (Hydra's answer to hydra=1: a ValueError's traceback)
            raise UserError(f"{o}: hydra holds Hydra's settings; set them one by one, e.g. hydra.run.dir=DIR "
                            "(`gan-train --cfg hydra` lists them)")
    edits = [o for o in overrides if o[:1] in "+~" and config.hydras(o.lstrip("+~").partition("=")[0])]
    for o in edits:
        key, _, value = o.lstrip("+~").partition("=")
        if key.startswith("hydra/") and o.startswith("~"):
            names = _hydra_group_options(conf_dir, [key]).get(key)
            raise UserError(f"{o}: Hydra's groups cannot be removed; choose one with {key}=VALUE"
                            + (f", one of: {', '.join(names)}" if names else ""))
        if key.startswith("hydra/"):
            raise UserError(f"{o}: {key} has a choice already; choose with {key}={value or 'VALUE'}")
    if not edits:  # (a group's edit is refused above)
        return
    cfg = _hydra_config(conf_dir, [o for o in overrides if o[:1] not in "+~"])
    for o in edits:
        key = o.lstrip("+~").partition("=")[0]
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else None
        table = OmegaConf.is_dict(node) and OmegaConf.get_type(node) is dict  # free keys (not a dataclass's)
        exists = OmegaConf.is_dict(node) and leaf in node
        if o.startswith("~") and not (table and exists):
            raise UserError(f"{o}: settings cannot be removed; set {key} with {key}=VALUE "
                            "(`gan-train --cfg hydra` lists Hydra's settings and their values)")
        if o.startswith("+") and exists:
            raise UserError(f"{o}: {key} exists; set it with {o.lstrip('+')}")
        if o.startswith("+") and not table:
            while parent and not OmegaConf.is_dict(OmegaConf.select(cfg, parent)):
                parent = parent.rpartition(".")[0]
            raise UserError(f"{o}: no such setting of Hydra's; {parent or 'hydra'} has: "
                            f"{', '.join(OmegaConf.select(cfg, parent or 'hydra').keys())} "
                            "(`gan-train --cfg hydra` lists them with their values)")


def _plugins(overrides: Sequence[str]) -> None:
    """A choice whose Hydra plugin is not installed: say which extra brings it."""
    for o, (module, extra) in ((o, PLUGINS[k]) for o in overrides for k in PLUGINS if o == k or o.startswith(k + "=")):
        found = False
        with contextlib.suppress(ModuleNotFoundError):  # a parent package missing
            found = importlib.util.find_spec(module) is not None
        if not found:
            raise UserError(f"{o} needs {module.split('.')[-1].replace('_', '-')}: pip install 'gan-cli[{extra}]'")


class _Options(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line (argparse would print its usage first, and exit 2)
        raise UserError(message)


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """Hydra's own parser of its options, its errors one line."""
    from hydra._internal.utils import get_args_parser
    return _Options(add_help=False, parents=[get_args_parser()])


@functools.cache
def _actions() -> Dict[str, argparse.Action]:
    """Each of Hydra's option strings (``--cfg``, ``-c``, ...) and its action."""
    return {name: a for a in _parser()._actions for name in a.option_strings}


def options_first(argv: Sequence[str]) -> List[str]:
    """Hydra's options (with their values), then the settings in their order: argparse reads the settings only as
    one run of arguments, so ``gan-train steps=1 -m seed=0,1`` ended in its usage ("unrecognized arguments")."""
    return sum(_split(argv), [])


def _split(argv: Sequence[str]) -> tuple:
    """(Hydra's options with their values, the other arguments), each in its order."""
    actions, front, rest, i = _actions(), [], [], 0
    while i < len(argv):
        action = actions.get(argv[i].partition("=")[0]) if argv[i].startswith("-") else None
        (front if action else rest).append(argv[i])
        if action and "=" not in argv[i] and i + 1 < len(argv) and (
                action.nargs is None or action.nargs == "?" and argv[i + 1] in (action.choices or ())):
            front.append(argv[i + 1])
            i += 1
        i += 1
    return front, rest


def _options(argv: Sequence[str]) -> argparse.Namespace:
    """Hydra's options, read by Hydra's own parser: a bad one (``--cfg bogus``) is one line. ``--package`` (``-p``)
    names the part of the config that ``--cfg`` prints and nothing else; ``--shell-completion`` (``-sc``) takes one
    of install=SHELL, uninstall=SHELL, query=SHELL (the last run by the shell's completion, which sets COMP_LINE),
    SHELL a shell Hydra completes."""
    _flags(argv)
    options = _parser().parse_args(argv)
    given = [name for name, on in (("--run", options.run), ("--multirun", options.multirun), ("--cfg", options.cfg),
                                   ("--info", options.info), ("--shell-completion", options.shell_completion)) if on]
    if len(given) > 1:
        raise UserError(f"{' and '.join(given)} given: give one of --run, --multirun, --cfg, --info and "
                        "--shell-completion")
    if options.experimental_rerun is not None and not os.path.isfile(options.experimental_rerun):
        raise UserError(f"--experimental-rerun {options.experimental_rerun}: no such file (it takes a job's pickled "
                        "config, .hydra/config.pickle, which Hydra's save_job_info callback writes)")
    if options.resolve and not (options.cfg or options.help):
        raise UserError("--resolve resolves the config that --cfg or --help prints; give it with one of them")
    if options.package is not None and (options.cfg is None or "=" in options.package):
        raise UserError(f"--package {options.package}: --package (-p) names the part of the config that --cfg prints "
                        f"(e.g. gan-train --cfg job -p optimizer); it takes that part's name and needs --cfg")
    if not options.shell_completion:
        return options
    from hydra.core.plugins import Plugins
    from hydra.plugins.completion_plugin import CompletionPlugin
    shells = sorted(p.provides() for p in Plugins.instance().discover(CompletionPlugin))
    given = [a for a in argv if a.partition("=")[0] in ("install", "uninstall", "query")]
    usage = (f"--shell-completion takes one of install=SHELL, uninstall=SHELL or query=SHELL, SHELL one of "
             f"{', '.join(shells)} (e.g. eval \"$(gan-train --shell-completion install=bash)\")")
    if len(given) != 1 or given[0].partition("=")[2] not in shells:
        raise UserError(f"{' '.join(given) or 'nothing'} given: {usage}")
    if given[0].startswith("query=") and "COMP_LINE" not in os.environ:
        raise UserError(f"{given[0]} is run by the shell's completion (it reads COMP_LINE); {usage}")
    return options


def _plain_seed(override: str) -> bool:
    """``seed=N``, N written as Hydra reads an integer (``007`` is a string to it) and in the seed's range."""
    key, _, value = override.partition("=")
    return (key.lstrip("+~") == "seed" and value.isascii() and value.isdigit() and str(int(value)) == value
            and dict(domains())["seed"].allows(int(value)))


def _sweep(o, conf_dir: str, everything: Sequence[str]) -> Optional[List[str]]:
    """A sweep's settings (``k=1,5`` -> ``["k=1", "k=5"]``; a glob: the choices it matches, as Hydra's sweeper filters
    them); None for an interval a search draws from (each trial checks its value; its bounds are checked here)."""
    key, value = o.get_key_element(), o.value()
    if isinstance(value, IntervalSweep):
        if not any(a.startswith(("hparams_search=", "hydra/sweeper=")) for a in everything):
            raise UserError(f"{o.input_line}: interval(...) is a range a search draws from (hparams_search=..., the "
                            "Optuna sweeper); a plain sweep takes a list (k=1,5) or range(...)")
        if value.start > value.end or ("log" in value.tags and value.start <= 0):
            raise UserError(f"{o.input_line} is not an interval a search can draw from: its start must be at most "
                            "its end, and above 0 for tag(log, ...)")
        return None
    values = value.filter(_names(conf_dir, key)) if isinstance(value, Glob) else list(o.sweep_string_iterator())
    if not values:  # range(0), range(3, 1), a glob that matches nothing: a sweep of no jobs
        raise UserError(f"{o.input_line} gives no values, so the sweep would run no job; " + (
            f"the choices of {key}: {', '.join(_names(conf_dir, key)) or 'none (not a group)'}"
            if isinstance(value, Glob) else "give at least one (e.g. seed='range(4)' or seed=0,1,2,3)"))
    twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
    if twice is not None:  # the same job again, and a summary over the jobs (mean over seeds) counting it twice
        raise UserError(f"{o.input_line} gives {key}={twice} more than once, so the sweep would train the same job "
                        "twice and count it twice over its jobs; give each value once")
    return [f"{key}={v}" for v in values]


def precheck(argv: Sequence[str], conf_dir: str) -> None:
    """Raise UserError for the first problem in a gan-train command line (no-op for --help etc.).
    A sweep has every combination of its values checked before anything runs: one that cannot be
    composed refuses the whole command; otherwise the invalid combinations are named on stderr and
    the sweep runs, recording them as jobs with status invalid (refused if none is valid)."""
    _options(argv)
    if any(a.split("=", 1)[0] in _INFO_FLAGS for a in argv):
        if any(a.split("=", 1)[0] in _CONFIG_FLAGS for a in argv):  # another primary config: its schema unknown
            _syntax(_overrides(argv))
        return
    everything, overrides = _checked(argv, conf_dir)
    try:
        parser = OverridesParser.create()
        parsed = parser.parse_overrides(overrides)
        run_dir = _value(parser.parse_overrides([o for o in everything if o.startswith("hydra.run.dir=")]),
                         "hydra.run.dir")
    except HydraException as err:  # the first override Hydra's grammar cannot read (``dataset=interval(,hinge)``)
        bad = next((o for o in everything if not config.parse_overrides([o])), "cannot read the command line")
        raise UserError(f"{bad}: {first_line(err)}") from None
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    launchers = [o for o in everything if o.partition("=")[0] == "hydra/launcher"]
    together = bool(launchers) and launchers[-1].partition("=")[2] == "population"
    sweeps = [s for s in (_sweep(o, conf_dir, everything) for o in parsed if o.is_sweep_override()) if s is not None]
    combos = [list(c) for c in itertools.product(*sweeps)]
    invalid, warnings, outcome = {}, {}, {}  # invalid: the combinations refused, by reason
    plain = _plain_seed if not any(o.get_key_element().lstrip("+~") == "resume" for o in parsed) else lambda o: False
    for combo in combos:  # every job of a sweep (one when there is no sweep)
        # a seed in its range changes nothing that is checked (but a resumed run's seed): the combinations that
        # differ only in it are composed and checked once (seed='range(64)': one composition, not 64)
        rest = tuple(o for o in combo if not plain(o))
        if rest not in outcome or len(rest) == len(combo):
            try:
                warnings.update(dict.fromkeys(_check_one(conf_dir, fixed + combo, together)))
                outcome[rest] = None
            except UserError as err:
                if not sweeps or isinstance(err, ComposeError):
                    raise
                outcome[rest] = err
        if outcome[rest] is not None:
            invalid.setdefault(str(outcome[rest]), []).append(f"[{' '.join(combo)}]")
    refused = sum(map(len, invalid.values()))
    if invalid and refused == len(combos):
        raise UserError(f"all {len(combos)} combinations of this sweep are invalid: {_by_reason(invalid)}")
    if invalid:
        print(f"gan-train: {refused} of the {len(combos)} combinations of this sweep are invalid and are recorded "
              f"with status invalid; the others run: {_by_reason(invalid)}", file=sys.stderr)
    for line in warnings:
        print(f"gan-train: warning: {line}", file=sys.stderr)
    if run_dir and not config.sweeping(argv):
        resume = next((str(o.value()) for o in parsed if o.get_key_element() == "resume" and o.value()), None)
        checkpoint.guard_run_dir(Path(run_dir), resume)


def _by_reason(invalid: Dict[str, List[str]]) -> str:
    """The combinations refused, each reason said once after the combinations it refuses (seed='range(64)'
    compile=true: the first two and the last of 64, then the reason)."""
    return "; ".join(f"{', '.join(names if len(names) <= 4 else [*names[:2], '...', names[-1]])} {reason}"
                     for reason, names in invalid.items())


def run_and_exit(main: Callable[[], None]) -> NoReturn:
    """A console command: ``main()``, the exit handlers (logging's, TensorBoard's, multiprocessing's), the streams
    flushed, then ``os._exit`` with main's status: tearing the interpreter down object by object takes 0.6-0.9 s
    with torch loaded, paid by every job of a sweep on a cluster. Other exceptions than SystemExit propagate."""
    code = 0
    try:
        main()
    except SystemExit as stop:
        code = stop.code
    if code is not None and not isinstance(code, int):  # sys.exit("message"): printed, status 1
        print(code, file=sys.stderr)
        code = 1
    # what the interpreter's own exit does first: join the threads and run their exit hooks (an idle pool's, such
    # as joblib's workers, which the exit functions below would otherwise wait on forever), then the exit functions
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader that left (BrokenPipeError), a closed stream
            stream.flush()
    os._exit(code or 0)
