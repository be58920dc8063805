"""gan-cli: a command-line runner for generative adversarial network experiments."""

__version__ = "0.1.0"
