"""SDE-Drag (spec csd §3.3) and the DragBench item loader (§3.5)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from comfy_api.latest import io, ui

from .host.files import input_file_path
from .host.model import to_intermediate
from .host.sampling import CoreSampler, new_guider, run_pipeline
from .host.vae import vae_decode, vae_downscale, vae_encode
from .common import (CATEGORY, MAX_STEPS, InputError, check_cdata_end, check_conditioning, check_image, check_model,
                     check_schedule, first_error, latent_mask, scheduler_input, user_errors)
from .common import DreamNode, schema, seed_input
from .cycle import cycle_grid
from ..dreamsampler_core import pipelines
from ..dreamsampler_core.formats.dragbench import load_dragbench_item
from ..dreamsampler_core.points import PointsError, check_points_inside, format_points, parse_drag_points

SUB = f"{CATEGORY}/drag"
RAMPS = ("linear", "constant")
#: ui key the in-canvas point editor (web/js/dream_points.js) reads the source image from
EDITOR_UI_KEY = "dream_drag_source"
#: smallest image side in latent cells (SD's UNet halves the latent three times)
MIN_LATENT_SIDE = 8
#: largest DragBench image / mask read (pixels); DragBench items are 512 x 512
MAX_ITEM_PIXELS = 4096 * 4096


def _check_image(image) -> torch.Tensor:
    return check_image(image, "image")


def drag_pairs(points: str, target_points: str, width: int, height: int):
    """Pixel (sources, targets), checked against the image size; InputError with the reason."""
    with user_errors(PointsError):
        src, tgt = parse_drag_points(points, target_points or "")
        check_points_inside(src, width, height, "points: source point")
        check_points_inside(tgt, width, height, "points: target point")
    return src, tgt


class DreamSDEDrag(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamSDEDrag",
            search_aliases=["drag", "point drag", "draggan", "dragdiffusion"],
            display_name="Dream SDE-Drag",
            category=SUB,
            description="Drags image content from source points to target points without gradients (SDE-Drag, "
                        "'SDE beats ODE'): in sub-drags of ~step_size latent pixels the latent is noised to t0, "
                        "a patch around each source is copied onto its target (alpha) and the source is "
                        "re-noised (beta), then Cycle-SDE denoises it with the noise recovered from the forward "
                        "path, so the rest of the image stays. Click source then target on the image in the node "
                        "(right-click removes the last point), or type the points. Cost: 2 x steps model calls "
                        "per sub-drag.",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model (it is not modified; no LoRA fine-tuning)."),
                io.Vae.Input("vae", tooltip="VAE to encode the image and decode the result."),
                io.Image.Input("image", tooltip="Image to edit (SD1.5 works best near 512x512)."),
                io.Conditioning.Input("positive", tooltip="Prompt describing the image (describe the TARGET image)."),
                io.Conditioning.Input("negative", tooltip="Negative / empty prompt for the guidance."),
                io.String.Input("points", multiline=True, default="[]",
                                tooltip="Drag points in image pixels: JSON list of {\"x\", \"y\"} (KJNodes' "
                                        "format), interleaved source, target, source, target... Written by the "
                                        "point editor below; also accepts {\"source\": [[x, y]], \"target\": "
                                        "[[x, y]]} (DragBench prompt.json)."),
                seed_input("Seed of the forward noising and the source re-noising (results depend on it).",
                           default=1234),
                io.Int.Input("steps", default=60, min=1, max=MAX_STEPS,
                             tooltip="Steps per sub-drag actually run (as denoise does). 60 at t0 = 0.6 is the "
                                     "official 100-step grid."),
                scheduler_input(),
                io.Float.Input("t0", default=0.6, min=0.0, max=1.0, step=0.01,
                               tooltip="Noise level of the copy-paste (0.6 in the paper). Higher is more faithful "
                                       "to the image, lower follows the drag more."),
                io.Float.Input("cfg", default=3.0, min=0.0, max=100.0, step=0.1, round=0.01,
                               tooltip="Guidance at t0 (3 in the paper)."),
                io.Combo.Input("guidance_ramp", options=list(RAMPS), default="linear",
                               tooltip="linear: guidance falls from cfg at t0 to 1 at the end (official); "
                                       "constant: cfg at every step."),
                io.Float.Input("alpha", default=1.1, min=0.0, max=10.0, step=0.01,
                               tooltip="Amplification of the pasted patch at the target (1.1)."),
                io.Float.Input("beta", default=0.3, min=0.0, max=1.0, step=0.01,
                               tooltip="Share of the source patch kept when it is re-noised (0.3; "
                                       "beta*F + sqrt(1-beta^2)*noise keeps its variance)."),
                io.Int.Input("radius", default=5, min=1, max=64,
                             tooltip="Half-size of the copied patch in latent pixels (5 = 80x80 image pixels)."),
                io.Float.Input("step_size", default=2.0, min=0.1, max=64.0, step=0.1,
                               tooltip="Length of one sub-drag in latent pixels (2): long drags run several."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Optional: white = may change, black = kept exactly (the official code's "
                                      "convention). Without a mask everything may change."),
                io.String.Input("target_points", optional=True, default="",
                                tooltip="Optional: targets as a separate point list (then 'points' holds only the "
                                        "sources), e.g. from two KJNodes point editors."),
            ],
            outputs=[io.Image.Output(display_name="image", tooltip="Dragged image."),
                     io.Latent.Output(display_name="latent", tooltip="Dragged latent.")],
        )

    @classmethod
    def check_inputs(cls, steps=60, t0=0.6, points=None, target_points=None):
        err = first_error("t0 must be greater than 0" if t0 is not None and t0 <= 0 else None,
                          check_schedule(steps, t0, "steps", "t0"))
        err = first_error(err, check_cdata_end(points, "points"), check_cdata_end(target_points, "target_points"))
        if err is True and isinstance(points, str):
            try:
                parse_drag_points(points, target_points if isinstance(target_points, str) else "")
            except PointsError as e:
                return str(e)
        return err

    @classmethod
    def execute(cls, model, vae, image, positive, negative, points, seed, steps, scheduler, t0, cfg, guidance_ramp,
                alpha, beta, radius, step_size, mask=None, target_points="") -> io.NodeOutput:
        check_model(model)
        check_conditioning(positive, "positive")
        check_conditioning(negative, "negative")
        pixels = _check_image(image)
        H, W = pixels.shape[1:3]
        f = vae_downscale(vae)
        if min(H, W) < MIN_LATENT_SIDE * f:
            raise InputError(f"image is {W}x{H} pixels; SDE-Drag needs at least {MIN_LATENT_SIDE * f}x"
                             f"{MIN_LATENT_SIDE * f} ({MIN_LATENT_SIDE} latent cells of the VAE's {f}-pixel factor): "
                             "resize it (SD1.5 works best near 512x512)")
        src, tgt = drag_pairs(points, target_points, W, H)
        samples = vae_encode(vae, pixels)
        h, w = samples.shape[-2:]
        plan = pipelines.plan_drag(src, tgt, (W, H), (w, h), step_size)
        m = latent_mask(mask, samples)
        sigmas = cycle_grid(model, scheduler, steps, t0, "t0")
        generator = torch.Generator().manual_seed(int(seed))

        dragger = CoreSampler(pipelines.sde_drag, plan.model_calls(sigmas), plan=plan, cfg=cfg,
                              guidance_ramp=guidance_ramp, mask=m, alpha=alpha, beta=beta, radius=radius,
                              generator=generator)
        with user_errors():
            out, _ = run_pipeline(new_guider(model, positive, negative, cfg), dragger, sigmas, samples, seed=seed)
        result = vae_decode(vae, out)
        preview = ui.PreviewImage(pixels, cls=None).values
        return io.NodeOutput(result, {"samples": to_intermediate(out)}, ui={EDITOR_UI_KEY: preview})


def _item_path(item_folder) -> str:
    """The item folder inside ComfyUI's input folder (the same confinement and message as Dream Load SVG)."""
    try:
        return input_file_path(str(item_folder).strip(), kind="folder")
    except ValueError as e:
        raise InputError(f"item_folder: {e}") from None


def _open_image(path: Path, label: str, mode: str, size=None) -> np.ndarray:
    """An item image as float32 in 0..1 (mode "RGB" [H, W, 3] or "L" [H, W]), resized to ``size``
    (W, H) if given; its size is checked from the header before any pixel is decoded."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_ITEM_PIXELS:
                raise InputError(f"{label} is {w}x{h} px, over the limit of {MAX_ITEM_PIXELS // 10 ** 6} Mpx "
                                 "(4096x4096) for a DragBench item; resize it (DragBench images are 512x512)")
            im = im.convert(mode)
            return np.asarray(im.resize(size) if size is not None else im, dtype=np.float32) / 255.0
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise InputError(f"{label} is a decompression bomb (far over the limit of 4096x4096 px); "
                         "resize it") from None
    except (OSError, ValueError) as e:
        raise InputError(f"{label} is not a readable image ({type(e).__name__}); re-save it as PNG") from None


class DreamDragBenchLoader(DreamNode):
    @classmethod
    def define_schema(cls):
        return schema(
            node_id="DreamDragBenchLoader",
            search_aliases=["dragbench", "drag benchmark"],
            display_name="Dream DragBench Item",
            category=SUB,
            description="Loads one DragBench item folder from ComfyUI's input folder in either published format: "
                        "SDE-Drag's (origin_image.png, mask.png, prompt.json) or DragDiffusion's "
                        "(original_image.png, meta_data.pkl; the pickle is read with a loader that only builds "
                        "lists, dicts, numbers and numeric numpy arrays from the file's own data). Outputs plug "
                        "into Dream SDE-Drag.",
            inputs=[io.String.Input("item_folder", default="",
                                    tooltip="Path of one item folder inside ComfyUI's input folder, e.g. "
                                            "DragBench/art_0 (copy or link the benchmark into input/).")],
            outputs=[io.Image.Output(display_name="image"),
                     io.Mask.Output(display_name="mask", tooltip="White = editable (all white without a mask)."),
                     io.String.Output(display_name="prompt"),
                     io.String.Output(display_name="points", tooltip="Interleaved source/target pixel points.")],
        )

    @classmethod
    def check_inputs(cls, item_folder=""):
        if not isinstance(item_folder, str) or not item_folder.strip():
            return "item_folder is empty; give the path of one DragBench item folder inside ComfyUI's input folder"
        err = check_cdata_end(item_folder, "item_folder")
        if err:
            return err
        try:
            _item_path(item_folder)
        except InputError as e:
            return str(e)
        return True

    @classmethod
    def fingerprint_inputs(cls, item_folder=""):
        try:
            folder = Path(_item_path(item_folder))
            return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir()))
        except (InputError, OSError):
            return str(item_folder)        # execute reports the problem

    @classmethod
    def execute(cls, item_folder) -> io.NodeOutput:
        label = str(item_folder).strip()
        with user_errors(PointsError):
            item = load_dragbench_item(Path(_item_path(item_folder)), label=label)
        rgb = _open_image(item.image_path, f"{label}/{item.image_path.name}", "RGB")
        H, W = rgb.shape[:2]
        if item.mask_path is not None:
            mask = _open_image(item.mask_path, f"{label}/mask.png", "L", size=(W, H))
        elif item.mask is not None:
            arr = item.mask[..., 0] if item.mask.ndim == 3 else item.mask
            if arr.shape != (H, W):
                raise InputError(f"{label}/meta_data.pkl: mask shape {arr.shape} differs from the image ({H}, {W})")
            mask = (arr > 0).astype(np.float32)
        else:
            mask = np.ones((H, W), dtype=np.float32)
        points = format_points(item.sources, item.targets)
        return io.NodeOutput(torch.from_numpy(rgb)[None], torch.from_numpy(mask)[None], item.prompt, points)


NODES = [DreamSDEDrag, DreamDragBenchLoader]
