"""The package's shape: imports go one way, from the entry points down to the pure functions."""

import ast
from pathlib import Path

import gan_cli

PACKAGE = Path(gan_cli.__file__).parent

# Each module may import only from the layers below its own.
LAYERS = (
    ("config", "metrics", "distributed"),  # schemas, range checks; pure estimators; torchrun's process group
    # the builders, each with its choices; the moving average of G; the Inception metrics; the run
    # directory's lock, temporary files and write errors
    ("data", "models", "losses", "optim", "ema", "inception", "rundir"),
    ("features",),  # the feature classifier (trained with optim's Adam) and the metrics on its features
    ("checkpoint", "evaluate", "memory", "monitor", "updates"),
    ("cli", "sweep"),  # command-line checks; what the jobs of a sweep share, its summary
    ("train", "gan_eval"),  # the entry points: gan-train (and the loop), gan-eval
    ("__main__",),  # python -m gan_cli
)


def imports(module: str) -> set:
    """The gan_cli modules that ``module`` imports, anywhere in its file (lazy imports too)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 1 and not base:  # from . import a, b
                found |= {alias.name for alias in node.names}
            elif node.level == 1 or base.startswith("gan_cli."):  # from .a import x / from gan_cli.a import x
                found.add(base.removeprefix("gan_cli."))
        elif isinstance(node, ast.Import):
            found |= {alias.name.removeprefix("gan_cli.") for alias in node.names if alias.name.startswith("gan_cli.")}
    return found - {"__init__"}


def test_every_module_has_a_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == {m for layer in LAYERS for m in layer}


def test_imports_only_go_down():
    level = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    upward = [(m, dep) for m in level for dep in imports(m) if level[dep] >= level[m]]
    assert not upward, f"imports from the same or a higher layer: {upward}"


def test_gan_eval_builds_networks_without_the_training_loop():
    assert "train" not in imports("gan_eval") and "models" in imports("gan_eval")


def test_the_package_does_not_need_test_only_libraries():
    # torchmetrics: only the Inception metrics, an optional extra (pip install 'gan-cli[inception]'), imported lazily
    assert "inception" not in {name for m in LAYERS[0] + LAYERS[1] for name in imports(m)}
    for path in set(PACKAGE.glob("*.py")) - {PACKAGE / "inception.py"}:
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(name.split(".")[0] in ("torchmetrics", "pytest") for name in names), path.name
