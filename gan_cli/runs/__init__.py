"""Run directories and their locks, checkpoints, the monitor (TensorBoard, console), torchrun."""
