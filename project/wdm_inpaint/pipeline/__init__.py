"""Pipelines: own the sampling loop, conditioning and all inpainting logic."""
