"""Every touch point between the pack and ComfyUI's internals, split by host concept:

* ``model``    — the MODEL: latent convention, noise grids, LATENT dicts, progress, interruption;
* ``sampling`` — the one guider (``DreamGuider``) and the one sampler adapter (``CoreSampler``) that
  hands a core pipeline the denoiser contract ``model(x, sigma) -> x0``;
* ``vae``      — the VAE as the core's codec, and the gradient copies of VAE / diffusion model;
* ``files``    — ComfyUI's input folder and core SVG objects.

Node modules import each name from its submodule (``from .host.sampling import CoreSampler,
run_pipeline``), so a call reads where it goes; the package re-exports them for tests and benchmarks.
"""
from .model import (DEFAULT_SCHEDULER, INVERSION_KEY, LATENT_SIZE_KEYS, MAX_SCHEDULE, SCHEDULER_NAMES,  # noqa: F401
                    UnsupportedModelError, calculate_sigmas, csd_model_kind, fix_empty_latent_channels,  # noqa: F401
                    free_ram_bytes, intermediate_device, latent_output, latent_spec, model_sampling,  # noqa: F401
                    parameterization, prepare_noise, process_latent_out, progress_bar, progress_bar_enabled,  # noqa: F401
                    schedule_length, sigma_at, sigma_floor, throw_if_interrupted, time_grid, to_intermediate)  # noqa: F401
from .sampling import CoreSampler, DreamGuider, GuiderCall, new_guider, run_pipeline  # noqa: F401
from .vae import (VAECodec, check_grad_memory, check_image_vae, is_video_vae, vae_decode, vae_downscale,  # noqa: F401
                  vae_encode, video_frames)  # noqa: F401
from .files import MAX_INPUT_NAME, core_svg, input_directory, input_file_path, input_svg_files  # noqa: F401

__all__ = [n for n in dir() if not n.startswith("_")]
