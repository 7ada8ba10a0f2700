"""Denoising networks. They predict noise and know nothing about schedules or step masks."""

from .csdi import CSDIConfig, CSDIDenoiser

__all__ = ["CSDIConfig", "CSDIDenoiser"]
