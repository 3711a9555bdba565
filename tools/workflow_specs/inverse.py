"""Inpainting and restoration: Dream Degrade -> (inversion) -> DreamSampler with Dream Data
Consistency and Dream Mask Inpaint regularizers.

Masks are drawn with core nodes (SolidMask + MaskComposite) at 512 px and scaled with the image
through MaskToImage -> ImageScale -> ImageToMask, so they always have the working image's size.
"""
from .editing import CKPT, load_image, loader

SIZE = 512
#: the titles CI reads to check the pixels outside the mask (tests/e2e/test_inpaint_paste_back.py)
WORKING_IMAGE, COMPOSITE_MASK, INPAINT_MASK = "Working size", "Feathered hole (composite)", "Inpaint mask (sun)"


def rectangle_mask(i, x, y, w, h, dest=None, size=SIZE):
    """Nodes i..i+1: a ``size`` px mask, 1 inside the rectangle (added onto ``dest`` if given)."""
    nodes = []
    if dest is None:
        nodes.append({"id": i, "type": "SolidMask", "title": "Empty mask",
                      "widgets": {"value": 0.0, "width": size, "height": size}})
        dest = (i, 0)
    nodes += [
        {"id": i + 1, "type": "SolidMask", "title": "Rectangle", "widgets": {"value": 1.0, "width": w, "height": h}},
        {"id": i + 2, "type": "MaskComposite", "widgets": {"x": x, "y": y, "operation": "add"},
         "links": {"destination": dest, "source": (i + 1, 0)}},
    ]
    return nodes


def mask_at_image_size(i, mask, size=SIZE):
    """Nodes i..i+2: scale a mask like the image (ImageScale is what the CI fast mode resizes)."""
    return [
        {"id": i, "type": "MaskToImage", "links": {"mask": mask}},
        {"id": i + 1, "type": "ImageScale", "title": "Mask to working size",
         "widgets": {"upscale_method": "bilinear", "width": size, "height": size, "crop": "center"},
         "links": {"image": (i, 0)}},
        {"id": i + 2, "type": "ImageToMask", "widgets": {"channel": "red"}, "links": {"image": (i + 1, 0)}},
    ]


def sampler(i, latent, regs, positive, steps, denoise=1.0, eta=0.0, seed=0):
    return {"id": i, "type": "DreamSampler",
            "widgets": {"seed": seed, "steps": steps, "cfg": 1.0, "scheduler": "ddim_uniform", "denoise": denoise,
                        "eta": eta, "eta_schedule": "constant"},
            "links": {"model": (1, 0), "positive": positive, "negative": positive, "latent_image": latent,
                      "regularizers": regs}}


def decode_and_save(i, samples, prefix, measurement=None):
    nodes = [
        {"id": i, "type": "VAEDecode", "links": {"samples": samples, "vae": (1, 2)}},
        {"id": i + 1, "type": "SaveImage", "widgets": {"filename_prefix": f"DreamSampler/{prefix}"},
         "links": {"images": (i, 0)}},
    ]
    if measurement is not None:
        nodes.append({"id": i + 2, "type": "PreviewImage", "title": "Measurement y", "links": {"images": measurement}})
    return nodes


def inpainting(two_masks: bool, ckpt: str = CKPT, size: int = SIZE, mask_preset: str = "paper",
               prefix: str | None = None, strength: float = 2.0):
    """Text-guided inpainting: the sun becomes a hot-air balloon (and the left forest a cabin).

    Official dream_inpaint structure (null-text DDIM inversion of the measurement, data consistency
    with the inpainting operator, then the per-mask text blend).  Mask Inpaint: preset 'paper' (the
    official fresh noise) at strength 2, the best measured on this structure (bench/INPAINTING.md:
    0.51 hole success vs 0.46 for LanPaint's best and 0.40 for core noise-mask inpainting on the learned
    test model, 288 sources x 2 seeds; 'restore' paints a grey hole as a blur there).  Its 'source' is the encoded measurement with
    keep 1, so the unmasked latent ends equal to it, and after decoding the working image is pasted
    back outside the grown, blurred hole (core ImageCompositeMasked): every pixel there is the
    source's own.  For the official data-consistency schedule set Data Consistency's preset to
    'paper', steps to 200, its sigma_y to 0 and dps to 1 (143 of the 200 steps then backpropagate
    through the UNet).  ``ckpt`` / ``size``: another checkpoint and working size (the rectangles
    scale with it); ``mask_preset`` / ``strength``: Mask Inpaint's."""
    k = size / SIZE
    nodes = [dict(loader(1), widgets={"ckpt_name": ckpt}), *load_image(2, size=size)]
    nodes += rectangle_mask(10, *(round(v * k) for v in (300, 60, 140, 140)), size=size)   # the sun
    nodes += mask_at_image_size(13, (12, 0), size=size)
    nodes[-1]["title"] = INPAINT_MASK
    mask1 = (15, 0)
    union = mask1
    if two_masks:
        nodes += rectangle_mask(20, *(round(v * k) for v in (20, 390, 220, 110)), size=size)  # the left forest
        nodes += mask_at_image_size(23, (22, 0), size=size)
        nodes.append({"id": 26, "type": "MaskComposite", "title": "Both holes",
                      "widgets": {"x": 0, "y": 0, "operation": "add"},
                      "links": {"destination": mask1, "source": (25, 0)}})
        union = (26, 0)
    nodes += [
        {"id": 30, "type": "DreamDegrade", "title": "Remove the masked pixels",
         "widgets": {"operator": "inpainting", "sigma_y": 0.01, "seed": 0},
         "links": {"image": (3, 0), "mask": union}},
        {"id": 31, "type": "VAEEncode", "links": {"pixels": (30, 2), "vae": (1, 2)}},
        {"id": 32, "type": "CLIPTextEncode", "title": "Null / source prompt",
         "widgets": {"text": "out of focus, depth of field"}, "links": {"clip": (1, 1)}},
        {"id": 33, "type": "CLIPTextEncode", "title": "Target prompt (mask 1)",
         "widgets": {"text": "a colorful hot air balloon"}, "links": {"clip": (1, 1)}},
        {"id": 35, "type": "DreamDDIMInversion",
         "widgets": {"steps": 50, "scheduler": "ddim_uniform", "denoise": 1.0, "refine_steps": 0},
         "links": {"model": (1, 0), "conditioning": (32, 0), "latent_image": (31, 0)}},
        {"id": 36, "type": "DreamDataConsistency", "title": "Keep the known pixels",
         "widgets": {"operator": "inpainting", "strength": 1.0, "sigma_y": 0.01, "mu": 1e-4, "preset": "restore",
                     "solver": "auto", "cg_iters": 500, "dps": 0.0},
         "links": {"vae": (1, 2), "measurement": (30, 0), "degradation": (30, 1)}},
    ]
    inpaint = {"id": 37, "type": "DreamMaskInpaint", "title": "Paint the prompts into the masks",
               "widgets": {"strength": strength, "preset": mask_preset, "feather": round(8 * k), "overlap": "average",
                           "keep": 1.0},
               "links": {"mask": mask1, "target": (33, 0), "source": (31, 0), "regularizers": (36, 0)}}
    if two_masks:
        nodes.append({"id": 34, "type": "CLIPTextEncode", "title": "Target prompt (mask 2)",
                      "widgets": {"text": "a small wooden cabin"}, "links": {"clip": (1, 1)}})
        inpaint["links"].update({"mask_2": (25, 0), "target_2": (34, 0)})
    nodes += [inpaint, sampler(38, (35, 0), (37, 0), (32, 0), steps=50)]
    nodes += decode_and_save(39, (38, 0), prefix or ("inpaint_two_masks" if two_masks else "inpaint"),
                             measurement=(30, 0))
    nodes[-2]["links"]["images"] = (47, 0)
    nodes += paste_back(43, (39, 0), union, feather=round(8 * k))
    return nodes


def paste_back(i, decoded, mask, feather: int, image=(3, 0)):
    """Nodes i..i+4: the decoded picture pasted onto the working ``image`` through the hole grown by
    Mask Inpaint's feather and blurred as wide (core ImageCompositeMasked), so every pixel outside
    that mask is the source's own (the VAE round trip and the measurement noise never reach it)."""
    return [
        {"id": i, "type": "GrowMask", "widgets": {"expand": feather, "tapered_corners": True}, "links": {"mask": mask}},
        {"id": i + 1, "type": "MaskToImage", "links": {"mask": (i, 0)}},
        {"id": i + 2, "type": "ImageBlur", "widgets": {"blur_radius": max(1, feather), "sigma": max(0.5, feather / 2)},
         "links": {"image": (i + 1, 0)}},
        {"id": i + 3, "type": "ImageToMask", "title": COMPOSITE_MASK, "widgets": {"channel": "red"},
         "links": {"image": (i + 2, 0)}},
        {"id": i + 4, "type": "ImageCompositeMasked", "title": "Paste the inpainting into the source",
         "widgets": {"x": 0, "y": 0, "resize_source": False},
         "links": {"destination": image, "source": decoded, "mask": (i + 3, 0)}},
    ]


def restoration(operator: str, widgets: dict, prompt: str, prefix: str):
    """Degrade the example (replace Dream Degrade's measurement by a real photo to restore one),
    then sample from the partly noised starting image with data consistency on every step."""
    return [
        loader(1), *load_image(2, size=SIZE),
        {"id": 10, "type": "DreamDegrade", "widgets": {"operator": operator, "sigma_y": 0.01, "seed": 0, **widgets},
         "links": {"image": (3, 0)}},
        {"id": 11, "type": "VAEEncode", "links": {"pixels": (10, 2), "vae": (1, 2)}},
        {"id": 12, "type": "CLIPTextEncode", "title": "Prompt", "widgets": {"text": prompt},
         "links": {"clip": (1, 1)}},
        {"id": 13, "type": "DreamDataConsistency",
         "widgets": {"operator": operator, "strength": 1.0, "sigma_y": 0.01, "mu": 1e-4, "preset": "restore",
                     "solver": "auto", "cg_iters": 10, "dps": 0.0, **widgets},
         "links": {"vae": (1, 2), "measurement": (10, 0), "degradation": (10, 1)}},
        sampler(14, (11, 0), (13, 0), (12, 0), steps=50, denoise=0.75),
        *decode_and_save(15, (14, 0), prefix, measurement=(10, 0)),
    ]


#: inpainting workflows that paste the source back outside the feathered hole (CI checks every pixel)
PASTES_BACK = ("text_guided_inpainting", "text_guided_inpainting_two_masks")

WORKFLOWS = {
    "text_guided_inpainting": {
        "title": "DreamSampler: text-guided inpainting (one mask)",
        "nodes": inpainting(two_masks=False),
    },
    "text_guided_inpainting_two_masks": {
        "title": "DreamSampler: text-guided inpainting with two masks, one prompt each",
        "nodes": inpainting(two_masks=True),
    },
    "super_resolution_x4": {
        "title": "DreamSampler: x4 super-resolution (bicubic degradation, data consistency)",
        "nodes": restoration("sr_bicubic", {"scale": 4}, "a sharp, highly detailed photograph", "sr_x4"),
    },
    "gaussian_deblurring": {
        "title": "DreamSampler: Gaussian deblurring (data consistency)",
        "nodes": restoration("deblur_gauss", {"blur_sigma": 3.0, "kernel_size": 0},
                             "a sharp, highly detailed photograph", "deblur_gauss"),
    },
}

__all__ = ["CKPT", "WORKFLOWS"]
