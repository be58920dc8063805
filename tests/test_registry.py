"""Each choice owns its settings: a loss, a toy dataset, a metric and an architecture added from this file
alone (their knobs declared beside them, no YAML) compose, are checked and warned about, and train."""

import importlib.util
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gan_cli import config
from gan_cli import data as datasets
from gan_cli.cli.checks import compose
from gan_cli.config import config_dir, flag, inapplicable, integer, real
from gan_cli.evaluation import evaluate
from gan_cli.game import losses, models

from .conftest import FAST, REPO


def _margin_loss(cfg) -> losses.Loss:
    m = float(cfg.margin)
    return NEW_LOSS._replace(d=lambda a_real, a_fake: F.softplus(m - a_real).mean() + F.softplus(a_fake + m).mean())


NEW_LOSS = losses.Loss(losses.d_cross_entropy, losses.g_nonsaturating, "cross-entropy with a margin",
                       knobs={"margin": real(0.0, 0, 10, "the margin of D's logits")}, build=_margin_loss)


def _shifted(cfg) -> datasets.Data:
    return datasets.Data(cfg.name, None, (1,), centres=torch.tensor([[float(cfg.offset)]]), weights=torch.ones(1),
                         std=0.5)


NEW_DATASET = datasets.Dataset(_shifted, ("density",), "one Gaussian, shifted",
                               {"offset": real(3.0, -10, 10, "its mean")}, dim=1)


def _tiny(arch, data, z_dim: int, pack: int = 1):
    w = arch.width
    G = nn.Sequential(nn.Linear(z_dim, w), nn.ReLU(), nn.Linear(w, data.dim))
    D = nn.Sequential(nn.Flatten(), nn.Linear(data.dim * pack, w), nn.ReLU(), nn.Linear(w, 1))
    return G, D


NEW_ARCH = models.Arch(_tiny, "one hidden layer each", {"width": integer(16, 1, 1024, "hidden units")})
NEW_METRIC = evaluate.Metric(
    "sample_mean", "density", {"eval/sample_mean": None},
    lambda ev, nets: {"eval/sample_mean": ev.generate(nets.G, ev.cfg.mean_samples).mean().item()},
    switch="sample_mean", samples=lambda cfg: cfg.mean_samples,
    knobs={"sample_mean": flag(True, "the mean of G's samples"), "mean_samples": integer(100, 1, 10_000, "samples")})


@pytest.fixture
def extended():
    """The four new choices registered for one test, the registry as it was afterwards."""
    before = {group: dict(entries) for group, entries in config.registry().items()}
    config.register("loss", "margin", NEW_LOSS)
    config.register("dataset", "shifted", NEW_DATASET)
    config.register("arch", "tiny", NEW_ARCH)
    evaluate.register(NEW_METRIC)
    yield
    for group, entries in config.registry().items():
        entries.clear()
        entries.update(before[group])
    config._SCHEMA.clear()
    from hydra.core.config_store import ConfigStore

    for group, name in (("loss", "margin"), ("dataset", "shifted"), ("arch", "tiny")):
        ConfigStore.instance().repo[group].pop(f"{name}.yaml", None)


def test_new_choices_compose_check_warn_and_train(extended, tmp_path):
    from gan_cli.cli.checks import check
    from gan_cli.cli.train import train

    chosen = ("dataset=shifted", "dataset.offset=1.5", "arch=tiny", "arch.width=8", "loss=margin", "loss.margin=0.5",
              "eval.mean_samples=50")
    cfg = compose(config_dir(), [*FAST, "eval_every=2", *chosen])
    check(cfg)
    assert (cfg.dataset.offset, cfg.arch.width, cfg.loss.margin, cfg.eval.mean_samples) == (1.5, 8, 0.5, 50)
    given = {o.partition("=")[0] for o in chosen}
    assert inapplicable(cfg, given) == []  # every knob given is read by its choice
    other = compose(config_dir(), ["dataset=ring", "arch=mlp", "loss=hinge", "arch.width=8", "loss.margin=1"])
    assert inapplicable(other, {"arch.width", "loss.margin"}) == [
        "arch.width has no effect with arch=mlp (it applies to arch=tiny)",
        "loss.margin has no effect with loss=hinge (it applies to loss=margin)"]
    with pytest.raises(config.UserError, match=r"dataset\.offset=20\.0 is not allowed"):
        check(compose(config_dir(), ["dataset=shifted", "dataset.offset=20"]))

    figures = train(cfg, tmp_path)
    assert figures["status"] == "ok" and "eval/sample_mean" in figures and "eval/jsd" in figures
    saved = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert saved["D"]["body.1.weight"].shape == (8, 1)  # arch.width read
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "ok"
    # the new loss's knob is read: D's objective differs with the margin
    a_real, a_fake = torch.tensor([0.3, -1.0]), torch.tensor([0.2, 2.0])
    zero = losses.get(compose(config_dir(), ["loss=margin"]).loss)
    assert losses.get(cfg.loss).d(a_real, a_fake) != zero.d(a_real, a_fake)


def test_every_knob_a_choice_reads_is_never_warned_with_it(make_cfg):
    for group in config.GROUPS:
        for name, entry in config.choices(group).items():
            cfg = make_cfg(f"{group}={name}")
            assert inapplicable(cfg, {f"{group}.{knob}" for knob in entry.knobs}) == [], (group, name)


def test_pacgan_reads_pieces_and_mlp_does_not(make_cfg):
    def d_parameters(cfg):
        data = datasets.load(cfg.dataset, torch.device("cpu"))
        return models.count_parameters(models.build(cfg.arch, data, cfg.z_dim, cfg.pack).D)

    three = make_cfg("experiment=ring", "arch.pieces=3")
    assert inapplicable(three, {"arch.pieces"}) == []
    assert d_parameters(three) == 243_201 and d_parameters(make_cfg("experiment=ring")) == 405_201
    assert inapplicable(make_cfg("arch=mlp", "arch.pieces=3"), {"arch.pieces"}) == [
        "arch.pieces has no effect with arch=mlp (it applies to arch=maxout|pacgan)"]


def test_the_choices_the_command_line_accepts_are_the_registered_ones(make_cfg):
    from gan_cli.cli.checks import precheck

    for group in config.GROUPS:
        for name in config.choices(group):
            assert make_cfg(f"{group}={name}")[group].name == name
    with pytest.raises(config.UserError, match="^loss=nope is not a choice of 'loss'; choose one of: hinge, "):
        precheck(["loss=nope"], config_dir())


def test_readmes_table_of_choices_is_the_registrys():
    spec = importlib.util.spec_from_file_location("choices", REPO / "scripts" / "choices.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    readme = (REPO / "README.md").read_text()
    shown = readme.split("<!-- choices:begin -->\n", 1)[1].split("\n<!-- choices:end -->", 1)[0]
    assert shown == script.table(), "README's table of choices is stale: paste `python scripts/choices.py`"


def test_a_choices_yaml_holds_only_what_differs_from_its_knobs_defaults():
    """A default is one fact: written once, in the registry. A choice's YAML (conf/<group>/<name>.yaml)
    sets only the values of its own that differ from it, and names the choice as its file does; the
    top-level config restates no knob either."""
    from pathlib import Path

    from omegaconf import OmegaConf

    for group in config.GROUPS:
        knobs = config.shared(group)
        for e in config.choices(group).values():
            knobs.update(e.knobs)
        for path in sorted((Path(config_dir()) / group).glob("*.yaml")):
            node = OmegaConf.to_container(OmegaConf.load(path))
            assert node.pop("name") == path.stem, path
            assert path.stem in config.choices(group), f"{path}: not a registered {group}"
            restated = [k for k, v in node.items() if k in knobs and knobs[k].default == v]
            assert not restated, f"{path} restates the registered default of {restated}"
    top = OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / "config.yaml"))
    assert not set(top) & (set(config.TOP) | set(config.GROUPS) | {"eval", "ema"})
