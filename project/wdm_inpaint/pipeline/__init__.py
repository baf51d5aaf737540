"""Pipelines: own the sampling loop, conditioning and all inpainting logic."""

from wdm_inpaint.pipeline.config import PRESETS, PipelineConfig
from wdm_inpaint.pipeline.inpaint import InpaintingPipeline, RunStats, image_space_clip

__all__ = ["PRESETS", "InpaintingPipeline", "PipelineConfig", "RunStats", "image_space_clip"]
