"""Experiment tracking: the W&B logger factory and what a finished run sends to its loggers."""
