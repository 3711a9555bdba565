"""Collaborative Score Distillation edit (CSD-Edit, spec csd §1) for panoramas and frame sequences."""
from __future__ import annotations

import logging

import torch
from comfy_api.latest import io

from .host.model import csd_model_kind, model_sampling, sigma_at, to_intermediate
from .host.sampling import CoreSampler, new_guider, run_pipeline
from .host.vae import check_image_vae, vae_decode, vae_downscale, vae_encode
from .common import (CATEGORY, InputError, check_conditioning, check_image, check_model, first_error, level_span,
                     user_errors)
from .common import DreamNode, schema, seed_input
from ..dreamsampler_core import csd, pipelines

log = logging.getLogger("DreamSampler")

SUB = f"{CATEGORY}/distill"
MAX_ITERATIONS = 10000
MAX_PIXELS = 16384


def check_images(image) -> torch.Tensor:
    return check_image(image, "image")


def pad_to_multiple(pixels: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad [B, H, W, 3] at the bottom / right by edge replication to multiples of ``multiple`` (the
    VAE would otherwise crop); the node crops the result back to the input size."""
    H, W = pixels.shape[1:3]
    ph, pw = (-H) % multiple, (-W) % multiple
    if ph == 0 and pw == 0:
        return pixels
    x = torch.nn.functional.pad(pixels.movedim(-1, 1), (0, pw, 0, ph), mode="replicate")
    return x.movedim(1, -1)


def csd_guider(model, target, negative, source, text_cfg: float, image_cfg: float):
    """The guider of a CSD edit: the target branch CFG(target, negative, text_cfg) and a "source"
    branch (the source prompt, or the negative alone), InstructPix2Pix's three-way guidance on
    InstructPix2Pix models (spec csd §0, §1.3)."""
    guider = new_guider(model, target, negative, text_cfg)
    guider.add_branch("source", source, text_cfg)
    if csd_model_kind(model) == "ip2p":
        guider.set_image_cfg(image_cfg)
    return guider


#: the [high, low] grid a CSD run hands ComfyUI (common.level_span; the name bench/bench_csd.py imports)
csd_sigmas = level_span


class DreamCSDEdit(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamCSDEdit",
            search_aliases=["csd", "collaborative score distillation", "svgd", "panorama edit", "video edit"],
            display_name="Dream CSD Edit (panorama / frames)",
            category=SUB,
            description="Collaborative Score Distillation edit: edits a wide image (as overlapping windows) or the "
                        "frames of an image batch so that all parts receive the SAME edit. Each iteration noises "
                        "every particle (window / frame) and its source with shared noise, takes the target "
                        "prediction minus the source prediction (DDS-like control variate), and mixes the "
                        "particles' directions with an SVGD kernel before a gradient step on the latents; "
                        "overlapping windows are averaged. Works with InstructPix2Pix models (target = the "
                        "instruction, three-way guidance on the source image) and with ordinary text-to-image "
                        "models (target prompt vs source prompt). Cost per iteration: particles x 3-6 model "
                        "evaluations.",
            inputs=[
                io.Model.Input("model", tooltip="InstructPix2Pix model (instructions) or an ordinary text-to-image "
                                                "model (target vs source prompt). It is not modified."),
                io.Vae.Input("vae", tooltip="VAE to encode the image(s) and decode the result."),
                io.Image.Input("image", tooltip="One wide / large image (panorama mode) or a batch of frames "
                                                "(frames mode). Any size: odd sizes are padded internally and "
                                                "cropped back."),
                io.Conditioning.Input("target", tooltip="InstructPix2Pix: the instruction ('turn it into a "
                                                        "watercolor'). Text-to-image: a prompt describing the "
                                                        "edited image."),
                io.Conditioning.Input("negative", tooltip="Negative / empty prompt (the papers: empty). Also the "
                                                          "source prompt when 'source' is not connected."),
                io.Combo.Input("mode", options=list(csd.MODES), default="panorama",
                               tooltip="panorama: one large image, particles = overlapping windows; frames: an "
                                       "image batch, particles = frames."),
                seed_input("Seed of the noise levels, the window subsets and the noise."),
                io.Int.Input("iterations", default=200, min=1, max=MAX_ITERATIONS,
                             tooltip="Optimization iterations (paper: 200 for images, 100 for video)."),
                io.Float.Input("lr", default=2.0, min=0.0, max=100.0, step=0.05,
                               tooltip="Learning rate of the latent update (paper: 2.0; 0.5 for video, 4.0 for "
                                       "strong edits). With SVGD the step is divided by the number of particles."),
                io.Combo.Input("lr_schedule", options=list(csd.LR_SCHEDULES), default="step",
                               tooltip="step: x0.9 every 20 iterations (paper); constant; cosine: decays to 0."),
                io.Float.Input("text_cfg", default=7.5, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Text guidance s_T (paper: 7.5; 15 for large images)."),
                io.Float.Input("image_cfg", default=5.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="InstructPix2Pix image guidance s_I (paper: 5.0; 1.5 for video). Ignored "
                                       "by text-to-image models."),
                io.Int.Input("particles", default=16, min=0, max=1024,
                             tooltip="Particles per iteration: windows (panorama) or frames drawn at random each "
                                     "iteration; 0 = all (paper: 16 windows, all frames)."),
                io.Int.Input("window", default=512, min=8, max=MAX_PIXELS, step=8,
                             tooltip="Panorama window size in image pixels (paper: 512). An image smaller than "
                                     "the window is one window along that side."),
                io.Int.Input("stride", default=128, min=8, max=MAX_PIXELS, step=8,
                             tooltip="Panorama window stride in image pixels (paper: 128); at most the window. "
                                     "A final window flush with the edge covers any remainder."),
                io.Float.Input("t_min", default=0.02, min=0.001, max=0.999, step=0.01,
                               tooltip="Lowest noise level, as a fraction of the schedule (paper: t = 20 of 1000)."),
                io.Float.Input("t_max", default=0.5, min=0.001, max=0.999, step=0.01,
                               tooltip="Highest noise level (paper: t = 500 of 1000). Higher edits more, lower "
                                       "keeps more detail."),
                io.Boolean.Input("svgd", default=True,
                                 tooltip="On: SVGD combination across particles (CSD). Off: independent DDS-like "
                                         "updates per particle (the paper's ablation)."),
                io.Combo.Input("kernel_feature", options=list(csd.FEATURES), default="noisy",
                               tooltip="What the SVGD kernel compares: noisy latents (paper) or the denoised "
                                       "estimates (compares content rather than noise)."),
                io.Int.Input("vae_tile_size", default=1024, min=0, max=MAX_PIXELS, step=64,
                             tooltip="Encode / decode images larger than this many pixels with ComfyUI's tiled "
                                     "VAE (tile/8 overlap); 0 = never tile."),
                io.Conditioning.Input("source", optional=True,
                                      tooltip="Optional prompt describing the INPUT image (text-to-image models: "
                                              "recommended). Not connected: the negative prompt (InstructPix2Pix "
                                              "convention: empty instruction on the source)."),
            ],
            outputs=[io.Image.Output(display_name="image", tooltip="Edited image(s), same size as the input."),
                     io.Latent.Output(display_name="latent", tooltip="Edited latent (of the padded image).")],
        )

    @classmethod
    def check_inputs(cls, window=512, stride=128, t_min=0.02, t_max=0.5, vae_tile_size=1024):
        return first_error(
            f"stride ({stride}) must be at most the window ({window}), or some pixels would never be edited"
            if isinstance(window, int) and isinstance(stride, int) and stride > window else None,
            f"t_min ({t_min}) must be <= t_max ({t_max})"
            if isinstance(t_min, (int, float)) and isinstance(t_max, (int, float)) and t_min > t_max else None,
            "vae_tile_size must be 0 (off) or at least 64 pixels"
            if isinstance(vae_tile_size, int) and 0 < vae_tile_size < 64 else None,
        )

    @classmethod
    def execute(cls, model, vae, image, target, negative, mode, seed, iterations, lr, lr_schedule, text_cfg,
                image_cfg, particles, window, stride, t_min, t_max, svgd, kernel_feature, vae_tile_size,
                source=None) -> io.NodeOutput:
        check_model(model)
        kind = csd_model_kind(model)
        if kind == "concat":
            raise InputError("this model concatenates extra channels (an inpainting-type model); CSD Edit supports "
                             "InstructPix2Pix models and ordinary text-to-image models.")
        check_conditioning(target, "target")
        check_conditioning(negative, "negative")
        if source is not None:
            check_conditioning(source, "source")
        pixels = check_images(image)
        B, H, W = pixels.shape[:3]
        if mode == "panorama" and B != 1:
            raise InputError(f"panorama mode edits one large image, but 'image' is a batch of {B}; use mode "
                             "'frames' for a frame sequence, or edit the images one at a time.")
        with user_errors():
            check_image_vae(vae, "CSD Edit")
        ds = vae_downscale(vae)
        samples = vae_encode(vae, pad_to_multiple(pixels, ds), vae_tile_size)
        if samples.ndim != 4 and samples.shape[2:-2] != (1,):
            raise InputError(f"the VAE encoded to shape {tuple(samples.shape)}; CSD Edit needs image latents "
                             "([batch, channels, height, width], or one frame of a video VAE), e.g. the checkpoint's "
                             "own VAE.")
        win, step = max(1, window // ds), max(1, stride // ds)
        with user_errors():
            layout = csd.make_layout(mode, samples, win, step)
        generator = torch.Generator().manual_seed(int(seed))
        n_draw = layout.count if particles <= 0 else min(int(particles), layout.count)
        log.info("CSD Edit: %s mode, %d particles (%d per iteration), %d iterations, %s model", mode, layout.count,
                 n_draw, iterations, kind)

        editor = CoreSampler(pipelines.csd_edit, iterations, mode=mode, window=win, stride=step,
                             particles=particles, iterations=iterations, lr=lr, lr_schedule=lr_schedule,
                             t_range=(t_min, t_max), svgd=svgd, feature=kernel_feature, generator=generator)
        with user_errors():
            guider = csd_guider(model, target, negative, source, text_cfg, image_cfg)
            out, _ = run_pipeline(guider, editor, csd_sigmas(sigma_at(model_sampling(model)), t_min, t_max),
                                  samples, seed=seed)
        result = vae_decode(vae, out, vae_tile_size)[:, :H, :W, :]
        return io.NodeOutput(result, {"samples": to_intermediate(out)})


NODES = [DreamCSDEdit]
