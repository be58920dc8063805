"""``python -m gan_cli [overrides]`` is ``gan-train [overrides]``."""

from .train import cli

cli()
