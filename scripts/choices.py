#!/usr/bin/env python
"""Print README's table of choices, derived from the registry: each choice of dataset=, arch=, loss= and
optimizer=, what it is, and the settings it reads (the group's shared settings listed once per group).

    python scripts/choices.py            # the Markdown table; tests/test_registry.py checks README has it
"""

from __future__ import annotations

from omegaconf import OmegaConf

from gan_cli import config


def defaults() -> dict:
    """The choice of each group that conf/config.yaml's defaults list picks."""
    entries = OmegaConf.to_container(OmegaConf.load(f"{config.config_dir()}/config.yaml"))["defaults"]
    return {k: v for e in entries if isinstance(e, dict) for k, v in e.items()}


def table() -> str:
    default, rows = defaults(), ["| choice | what it is | settings it reads |", "|---|---|---|"]
    for group in config.GROUPS:
        shared = ", ".join(f"`{group}.{k}`" for k in config.shared(group))
        rows.append(f"| **`{group}=`** | every choice | {shared or '—'} |")
        for name, entry in config.choices(group).items():
            mark = " (default)" if default.get(group) == name else ""
            knobs = ", ".join(f"`{group}.{k}`" for k in entry.knobs) or "—"
            rows.append(f"| `{name}`{mark} | {entry.about} | {knobs} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
