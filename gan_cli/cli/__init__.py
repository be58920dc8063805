"""The command lines: gan-train (Hydra entry, signals, exits), gan-eval, sweeps."""
