"""Diffusion process: noise schedules and training modes."""
