"""Evaluation: the official metrics, submission checks and quality-control images."""
