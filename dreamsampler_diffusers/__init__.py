"""DreamSampler on diffusers: the second host adapter, a sibling of the ComfyUI adapters in ``nodes/``.

Optional: ComfyUI never imports this package, and diffusers / transformers are imported only when a
``DreamPipeline`` is built.  Like ``nodes/`` it holds only host glue (a diffusers UNet as the core's
denoiser, the VAE as its codec, the pipeline-level edit functions) and calls ``dreamsampler_core``
for all of the math.  It is used from a checkout with the pack's folder on ``sys.path``
(``from dreamsampler_diffusers import DreamPipeline``), the same path that imports ``dreamsampler_core``.
"""
from .adapter import (DiffusersVAECodec, DreamOutput, DreamPipeline, Inversion, NoiseTable, Prompt, UNetDenoiser,
                      BatchedDenoiser, ddim_timesteps, plain_denoiser, require_diffusers)

__all__ = ["DiffusersVAECodec", "DreamOutput", "DreamPipeline", "Inversion", "NoiseTable", "Prompt", "UNetDenoiser",
           "BatchedDenoiser", "ddim_timesteps", "plain_denoiser", "require_diffusers"]
