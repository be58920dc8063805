"""The package's shape: sub-packages by concern, and imports that go one way, from the entry points
down to the pure functions."""

import ast
from pathlib import Path

import gan_cli

PACKAGE = Path(gan_cli.__file__).parent

# Each module (dotted, below gan_cli) may import only from the layers below its own.
LAYERS = (
    # schemas and the registry of choices; pure estimators; torchrun's process group
    ("config", "evaluation.metrics", "runs.distributed", "cli"),  # cli: the standard streams made safe
    ("data.base",),  # what the loop and the monitor know of a dataset; the noise prior
    # the datasets' loaders (toy sets, image files, folders), the networks, the losses and optimizers; the moving
    # average of G; the Inception metrics; the run directory's lock, temporary files and write errors; the figures
    # a run draws, the process's memory
    ("data.toys", "data.images", "data.folder", "game.models", "game.losses", "game.optim", "game.ema",
     "evaluation.inception", "runs.rundir", "runs.figures", "runs.footprint"),
    # the choices of dataset=; the feature classifier (trained with optim's Adam) and the metrics on its features
    ("data", "evaluation.features"),
    ("runs.checkpoint", "evaluation.evaluate", "runs.monitor", "game.updates"),
    # populations: many runs' networks stacked, updated by the same update code
    ("game.population",),
    # the memory a config needs (its evaluation's samples included); command-line checks (what a population cannot
    # train among them); what the jobs of a sweep share, its summary
    ("evaluation.memory", "cli.checks", "cli.sweep"),
    ("game.loop",),  # the training loop: Algorithm 1 and what happens between its iterations
    ("cli.train", "cli.gan_eval"),  # the entry points: gan-train, gan-eval
    ("cli.population",),  # hydra/launcher=population: a sweep's jobs prepared, then trained as populations
    ("__main__",),  # python -m gan_cli
)


def modules() -> set:
    """Every module of the package, dotted below gan_cli (a package's __init__ is the package)."""
    out = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
            if not parts or not path.read_text().strip().strip('"').strip():
                continue
            if len([ln for ln in path.read_text().splitlines() if ln.strip()]) <= 1:  # a docstring only
                continue
        out.add(".".join(parts))
    return out


def source(module: str) -> Path:
    path = PACKAGE.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imports(module: str) -> set:
    """The gan_cli modules that ``module`` imports, anywhere in its file (lazy imports too)."""
    known = modules()
    here = module.split(".")[:-1] if not source(module).name == "__init__.py" else module.split(".")
    found = set()
    for node in ast.walk(ast.parse(source(module).read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
            elif (node.module or "").startswith("gan_cli"):
                base = node.module.removeprefix("gan_cli").lstrip(".")
            else:
                continue
            for alias in node.names:
                dotted = f"{base}.{alias.name}".lstrip(".")
                found.add(dotted if dotted in known else base)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("gan_cli.") for a in node.names if a.name.startswith("gan_cli.")}
    return found - {"", module}


def test_every_module_has_a_layer():
    assert modules() == {m for layer in LAYERS for m in layer}


def test_imports_only_go_down():
    level = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    upward = [(m, dep) for m in level for dep in imports(m) if level[dep] >= level[m]]
    assert not upward, f"imports from the same or a higher layer: {upward}"


def test_gan_eval_builds_networks_without_the_training_loop():
    assert "cli.train" not in imports("cli.gan_eval") and "game.models" in imports("cli.gan_eval")


def test_the_package_does_not_need_test_only_libraries():
    # torchmetrics: only the Inception metrics, an optional extra (pip install 'gan-cli[inception]'), imported lazily
    assert "evaluation.inception" not in {name for m in LAYERS[0] + LAYERS[1] for name in imports(m)}
    for path in set(PACKAGE.rglob("*.py")) - {PACKAGE / "evaluation" / "inception.py"}:
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(name.split(".")[0] in ("torchmetrics", "pytest") for name in names), path.name
