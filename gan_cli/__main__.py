"""``python -m gan_cli [overrides]`` is ``gan-train [overrides]``."""

from gan_cli.cli.train import cli

cli()
