"""Pipelines: the functions behind train.py and evaluate.py (the only package code that uses Hydra)."""
