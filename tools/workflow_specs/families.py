"""Editing and inpainting workflows for the model families beyond SD1.5 (issue 14): Flux.1-dev,
SD3.5 and Qwen-Image real-image editing, SDXL text-guided inpainting and a Wan 2.1 video edit.

Each graph loads its model the way ComfyUI's own templates for that family do (UNETLoader /
DualCLIPLoader / CLIPLoader / VAELoader or the all-in-one checkpoint, the family's sampling-shift
node, FluxGuidance) and names its files with their download sources (tools.workflows.MODEL_SOURCES:
node ``properties.models``, what the frontend's missing-models dialog offers).  The flow families'
edits (Flux.1-dev, SD3.5, Qwen-Image, Wan) are Dream Distill Edit, the inversion-free edit that won
on the project's learned flow model (bench/QUALITY.md, issue 23), with its measured defaults (start
0.5, strength 1, fidelity 1.3, cfg 2.5 against the source prompt) and the family's usual step count.

``FAMILY`` says which tiny family model CI runs each graph on: tests/support/families/stand_ins.py
swaps the loaders for that family's tiny files (or the in-server model where ComfyUI's detection
hard-codes full sizes) and the text encoders for conditioning of the family's shapes.
"""
from . import inverse
from .inverse import inpainting, mask_at_image_size, paste_back, rectangle_mask

FLUX_SIZE = 1024
NULL_TITLE = "Null prompt (inversion + base)"


def _prompt(i, title, text, clip):
    return {"id": i, "type": "CLIPTextEncode", "title": title, "widgets": {"text": text}, "links": {"clip": clip}}


def _image(i, width, height, name="dream_example.png"):
    return [
        {"id": i, "type": "LoadImage", "widgets": {"image": name}},
        {"id": i + 1, "type": "ImageScale", "title": "Working size",
         "widgets": {"upscale_method": "lanczos", "width": width, "height": height, "crop": "center"},
         "links": {"image": (i, 0)}},
    ]


def _save(i, images, prefix):
    return {"id": i, "type": "SaveImage", "widgets": {"filename_prefix": f"DreamSampler/{prefix}"},
            "links": {"images": images}}


def _distill(first, model, vae, pixels, prompts, steps, start=0.5, strength=1.0, fidelity=1.3, cfg=2.5):
    """Nodes first..first+2: VAE Encode -> Dream Distill Edit (source -> target, inversion-free, three
    model calls per level over the last start x steps levels, the target guided against the source)
    -> decode.  ``prompts``: (source, target) links.  The node's defaults, the best measured on the
    project's learned flow model at the ground-truth edit's fidelity (bench/QUALITY.md)."""
    source, target = prompts
    i = first
    return [
        {"id": i, "type": "VAEEncode", "links": {"pixels": pixels, "vae": vae}},
        {"id": i + 1, "type": "DreamDistillEdit",
         "widgets": {"seed": 0, "steps": steps, "scheduler": "simple", "start": start, "strength": strength,
                     "fidelity": fidelity, "cfg": cfg, "source_cfg": 1.0},
         "links": {"model": model, "source": source, "target": target, "latent_image": (i, 0)}},
        {"id": i + 2, "type": "VAEDecode", "links": {"samples": (i + 1, 0), "vae": vae}},
    ]


SOURCE = "a flat illustration of green mountains under a blue sky with a sun"
TARGET = "a watercolor painting of snowy mountains at sunset"


def _two_prompts(first, clip):
    return [_prompt(first, "Source prompt (what the image shows)", SOURCE, clip),
            _prompt(first + 1, "Target prompt", TARGET, clip)]


def _flux_loaders():
    """Nodes 1..4: Flux.1-dev's UNet, its two text encoders, its VAE and ModelSamplingFlux's shift for the
    working size (as ComfyUI's Flux template loads them)."""
    return [
        {"id": 1, "type": "UNETLoader", "widgets": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
        {"id": 2, "type": "DualCLIPLoader",
         "widgets": {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl_fp16.safetensors", "type": "flux"}},
        {"id": 3, "type": "VAELoader", "widgets": {"vae_name": "ae.safetensors"}},
        {"id": 4, "type": "ModelSamplingFlux", "title": "Resolution shift (set to the working size)",
         "widgets": {"max_shift": 1.15, "base_shift": 0.5, "width": FLUX_SIZE, "height": FLUX_SIZE},
         "links": {"model": (1, 0)}},
    ]


def flux_dev_edit():
    """Flux.1-dev (guidance-distilled): both prompts through FluxGuidance 3.5, the distilled model's
    own guidance; Dream Distill Edit at cfg 1; ModelSamplingFlux's shift for the working size."""
    nodes = [
        *_flux_loaders(),
        *_image(5, FLUX_SIZE, FLUX_SIZE),
        *_two_prompts(7, (2, 0)),
    ]
    for k, which in enumerate(("source", "target")):
        nodes.append({"id": 9 + k, "type": "FluxGuidance", "title": f"Flux guidance ({which} prompt)",
                      "widgets": {"guidance": 3.5}, "links": {"conditioning": (7 + k, 0)}})
    # guidance-distilled: no real CFG; the cfg-1 form (strength on the whole direction), measured 0.73
    # success at 19.9 dB on the learned flow model (bench/QUALITY.md)
    nodes += _distill(11, (4, 0), (3, 0), (6, 0), ((9, 0), (10, 0)), steps=28, start=0.75, strength=1.25,
                      fidelity=1.0, cfg=1.0)
    nodes.append(_save(14, (13, 0), "flux_edit"))
    return nodes


def sd35_edit():
    """SD3.5 from its all-in-one checkpoint (CLIP-L, CLIP-G, T5-XXL inside), ModelSamplingSD3 shift 3."""
    nodes = [
        {"id": 1, "type": "CheckpointLoaderSimple", "widgets": {"ckpt_name": "sd3.5_large_fp8_scaled.safetensors"}},
        {"id": 2, "type": "ModelSamplingSD3", "widgets": {"shift": 3.0}, "links": {"model": (1, 0)}},
        *_image(3, 1024, 1024),
        *_two_prompts(5, (1, 1)),
    ]
    nodes += _distill(7, (2, 0), (1, 2), (4, 0), ((5, 0), (6, 0)), steps=28)
    nodes.append(_save(10, (9, 0), "sd35_edit"))
    return nodes


def _split_files(unet, clip, clip_type, vae, shift_node, shift):
    """Nodes 1..4: UNETLoader, CLIPLoader, VAELoader and the family's sampling-shift node (as
    ComfyUI's templates load the split-file families)."""
    return [
        {"id": 1, "type": "UNETLoader", "widgets": {"unet_name": unet, "weight_dtype": "default"}},
        {"id": 2, "type": "CLIPLoader", "widgets": {"clip_name": clip, "type": clip_type}},
        {"id": 3, "type": "VAELoader", "widgets": {"vae_name": vae}},
        {"id": 4, "type": shift_node, "widgets": {"shift": shift}, "links": {"model": (1, 0)}},
    ]


def qwen_image_edit():
    """Qwen-Image as ComfyUI's template loads it: ModelSamplingAuraFlow shift 3.1, 20 simple steps."""
    nodes = [
        *_split_files(unet="qwen_image_fp8_e4m3fn.safetensors", clip="qwen_2.5_vl_7b_fp8_scaled.safetensors",
                      clip_type="qwen_image",
                      vae="qwen_image_vae.safetensors", shift_node="ModelSamplingAuraFlow", shift=3.1),
        *_image(5, 1024, 1024),
        *_two_prompts(7, (2, 0)),
    ]
    nodes += _distill(9, (4, 0), (3, 0), (6, 0), ((7, 0), (8, 0)), steps=20)
    nodes.append(_save(12, (11, 0), "qwen_image_edit"))
    return nodes


EDIT_SIZE = 1024                  # Qwen-Image-Edit's working size (1 Mpx, as its text encoder scales to)
#: the node titles CI reads in the masked edit (tests/e2e/test_family_matrix.py)
WORKING_IMAGE, COMPOSITE_MASK, EDIT_MASK = "Working size", "Feathered mask (composite)", "Edit mask (sun)"


def _edit_prompt(i, title, text, clip, image):
    return {"id": i, "type": "TextEncodeQwenImageEditPlus", "title": title, "widgets": {"prompt": text},
            "links": {"clip": clip, "image1": image}}


def qwen_image_edit_masked():
    """Qwen-Image-Edit 2509: an instruction edit inside a mask, everything else kept exactly.

    The image to edit is the prompts' reference latent through core ReferenceLatent, the VAE Encode of
    the very image the edit starts from (same size and grid: TextEncodeQwenImageEditPlus's own VAE
    input would re-encode it at 1 Mpx whatever the working size), so the reference and the edited
    latent cannot disagree by a scale or a shift; the text encoder still sees the picture (image1).
    Dream DDIM Inversion (null prompt + reference, refine 3) -> a noise mask on the inverted latent
    (KeepKnown: outside it the latent follows the source and ends equal to it) -> DreamSampler with the
    instruction at cfg 2.5 -> decode -> core ImageCompositeMasked onto the source through the grown
    and blurred mask, so every pixel outside that mask is the source's own."""
    edit_mask = mask_at_image_size(10, (9, 0), size=EDIT_SIZE)
    edit_mask[-1]["title"] = EDIT_MASK
    return [
        *_split_files(unet="qwen_image_edit_2509_fp8_e4m3fn.safetensors",
                      clip="qwen_2.5_vl_7b_fp8_scaled.safetensors", clip_type="qwen_image",
                      vae="qwen_image_vae.safetensors", shift_node="ModelSamplingAuraFlow", shift=3.0),
        *_image(5, EDIT_SIZE, EDIT_SIZE),
        *rectangle_mask(7, 300, 60, 140, 140),                                 # the sun, at 512 px
        *edit_mask,
        {"id": 13, "type": "VAEEncode", "links": {"pixels": (6, 0), "vae": (3, 0)}},
        _edit_prompt(14, NULL_TITLE, "", (2, 0), (6, 0)),
        _edit_prompt(15, "Target prompt (the instruction)", "replace the sun with a red hot air balloon", (2, 0),
                     (6, 0)),
        {"id": 16, "type": "ReferenceLatent", "title": "Reference: the image (null prompt)",
         "links": {"conditioning": (14, 0), "latent": (13, 0)}},
        {"id": 17, "type": "ReferenceLatent", "title": "Reference: the image (instruction)",
         "links": {"conditioning": (15, 0), "latent": (13, 0)}},
        {"id": 18, "type": "DreamDDIMInversion",
         "widgets": {"steps": 20, "scheduler": "simple", "denoise": 1.0, "refine_steps": 3},
         "links": {"model": (4, 0), "conditioning": (16, 0), "latent_image": (13, 0)}},
        {"id": 19, "type": "SetLatentNoiseMask", "title": "Edit only inside the mask (KeepKnown)",
         "links": {"samples": (18, 0), "mask": (12, 0)}},
        {"id": 20, "type": "DreamSampler",
         "widgets": {"seed": 0, "steps": 20, "cfg": 2.5, "scheduler": "simple", "denoise": 1.0, "eta": 0.0,
                     "eta_schedule": "constant"},
         "links": {"model": (4, 0), "positive": (17, 0), "negative": (16, 0), "latent_image": (19, 0)}},
        {"id": 21, "type": "VAEDecode", "links": {"samples": (20, 0), "vae": (3, 0)}},
        {"id": 22, "type": "GrowMask", "widgets": {"expand": 16, "tapered_corners": True}, "links": {"mask": (12, 0)}},
        {"id": 23, "type": "MaskToImage", "links": {"mask": (22, 0)}},
        {"id": 24, "type": "ImageBlur", "widgets": {"blur_radius": 16, "sigma": 8.0}, "links": {"image": (23, 0)}},
        {"id": 25, "type": "ImageToMask", "title": COMPOSITE_MASK, "widgets": {"channel": "red"},
         "links": {"image": (24, 0)}},
        {"id": 26, "type": "ImageCompositeMasked", "title": "Paste the edit into the source",
         "widgets": {"x": 0, "y": 0, "resize_source": False},
         "links": {"destination": (6, 0), "source": (21, 0), "mask": (25, 0)}},
        _save(27, (26, 0), "qwen_image_edit_masked"),
    ]


def flux_dev_inpainting():
    """Flux.1-dev text-guided inpainting with the recipe measured on the project's learned flow model
    (bench/INPAINTING_FLOW.md): no inversion; DreamSampler starts from the image's latent with fresh
    noise (denoise 1), the hole's prompt (through FluxGuidance 3.5) as its positive at cfg 1, eta 1
    and resample 1 (each step taken once more at the same noise level: 2 x 28 - 1 model calls); Dream
    Mask Inpaint with no target of its own keeps the rest of the latent (keep 1), and after decoding
    the working image is pasted back outside the grown, blurred hole, so every pixel there is the
    source's own."""
    k = FLUX_SIZE / inverse.SIZE
    feather = round(8 * k)
    nodes = [
        *_flux_loaders(),
        *_image(5, FLUX_SIZE, FLUX_SIZE),
        _prompt(7, "Target prompt (what to paint into the mask)", "a colorful hot air balloon in a blue sky", (2, 0)),
        {"id": 8, "type": "FluxGuidance", "widgets": {"guidance": 3.5}, "links": {"conditioning": (7, 0)}},
    ]
    nodes += rectangle_mask(10, *(round(v * k) for v in (300, 60, 140, 140)), size=FLUX_SIZE)   # the sun
    nodes += mask_at_image_size(13, (12, 0), size=FLUX_SIZE)
    nodes[-1]["title"] = inverse.INPAINT_MASK
    nodes += [
        {"id": 20, "type": "VAEEncode", "links": {"pixels": (6, 0), "vae": (3, 0)}},
        {"id": 21, "type": "DreamMaskInpaint", "title": "Keep everything outside the mask",
         "widgets": {"strength": 1.0, "preset": "paper", "feather": feather, "overlap": "average", "keep": 1.0},
         "links": {"mask": (15, 0), "source": (20, 0)}},
        {"id": 22, "type": "DreamSampler", "title": "DreamSampler (eta 1, resample 1)",
         "widgets": {"seed": 0, "steps": 28, "cfg": 1.0, "scheduler": "simple", "denoise": 1.0, "eta": 1.0,
                     "eta_schedule": "constant", "resample": 1},
         "links": {"model": (4, 0), "positive": (8, 0), "negative": (8, 0), "latent_image": (20, 0),
                   "regularizers": (21, 0)}},
        {"id": 23, "type": "VAEDecode", "links": {"samples": (22, 0), "vae": (3, 0)}},
    ]
    nodes += paste_back(24, (23, 0), (15, 0), feather=feather, image=(6, 0))
    nodes.append(_save(29, (28, 0), "flux_dev_inpainting"))
    return nodes


WAN_W, WAN_H, WAN_FRAMES, WAN_FPS = 832, 480, 33, 16
VIDEO = "dream_example_video.mp4"


def wan21_video_edit():
    """Wan 2.1 T2V 1.3B: a clip's first 33 frames (1 + 4k: the causal VAE's frame groups) at 480p,
    edited as one 5-D latent [1, 16, 9, 60, 104]; ModelSamplingSD3 shift 8 (Wan's)."""
    nodes = [
        *_split_files(unet="wan2.1_t2v_1.3B_fp16.safetensors", clip="umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                      clip_type="wan",
                      vae="wan_2.1_vae.safetensors", shift_node="ModelSamplingSD3", shift=8.0),
        {"id": 5, "type": "LoadVideo", "widgets": {"file": VIDEO}},
        {"id": 6, "type": "GetVideoComponents", "links": {"video": (5, 0)}},
        {"id": 7, "type": "ImageFromBatch", "title": "Frames to edit (1 + 4k)",
         "widgets": {"batch_index": 0, "length": WAN_FRAMES}, "links": {"image": (6, 0)}},
        {"id": 8, "type": "ImageScale", "title": "Working size",
         "widgets": {"upscale_method": "lanczos", "width": WAN_W, "height": WAN_H, "crop": "center"},
         "links": {"image": (7, 0)}},
        _prompt(9, "Source prompt (what the video shows)",
                "a camera pan over green mountains under a blue sky with a sun", (2, 0)),
        _prompt(10, "Target prompt", "a camera pan over snowy mountains at sunset, watercolor", (2, 0)),
    ]
    nodes += _distill(11, (4, 0), (3, 0), (8, 0), ((9, 0), (10, 0)), steps=30)
    nodes += [
        {"id": 14, "type": "CreateVideo", "widgets": {"fps": float(WAN_FPS)}, "links": {"images": (13, 0)}},
        {"id": 15, "type": "SaveVideo",
         "widgets": {"filename_prefix": "DreamSampler/wan_video_edit", "format": "auto", "codec": "auto"},
         "links": {"video": (14, 0)}},
    ]
    return nodes


WORKFLOWS = {
    "flux_dev_edit": {
        "title": "DreamSampler on Flux.1-dev: real image editing (inversion-free Distill Edit, source -> target prompt)",
        "nodes": flux_dev_edit()},
    "sd35_edit": {
        "title": "DreamSampler on SD3.5: real image editing (inversion-free Distill Edit, source -> target prompt)",
        "nodes": sd35_edit()},
    "qwen_image_edit": {
        "title": "DreamSampler on Qwen-Image: real image editing (inversion-free Distill Edit, source -> target prompt)",
        "nodes": qwen_image_edit()},
    "qwen_image_edit_masked": {
        "title": "DreamSampler on Qwen-Image-Edit 2509: an instruction edit inside a mask, the rest of the image kept "
                 "exactly (reference latent, noise mask, composite)",
        "nodes": qwen_image_edit_masked()},
    "flux_dev_inpainting": {
        "title": "DreamSampler on Flux.1-dev: text-guided inpainting (from noise, eta 1, resample 1; the rest of the "
                 "image kept exactly)",
        "nodes": flux_dev_inpainting()},
    "sdxl_text_guided_inpainting": {
        "title": "DreamSampler on SDXL: text-guided inpainting (one mask)",
        "nodes": inpainting(two_masks=False, ckpt="sd_xl_base_1.0.safetensors", size=1024,
                            mask_preset="paper", prefix="sdxl_text_guided_inpainting")},
    "wan21_video_edit": {
        "title": "DreamSampler on Wan 2.1: video editing (inversion-free Distill Edit of the 5-D latent)",
        "nodes": wan21_video_edit()},
}

#: the tiny family model (tests/support/families) CI runs each workflow on
FAMILY = {"flux_dev_edit": "flux_dev", "flux_dev_inpainting": "flux_dev", "sd35_edit": "sd35",
          "qwen_image_edit": "qwen_image",
          "qwen_image_edit_masked": "qwen_image_edit",
          "sdxl_text_guided_inpainting": "sdxl", "wan21_video_edit": "wan21"}

TEST_OVERRIDES = {"wan21_video_edit": {"ImageFromBatch": {"length": 5}},
                  # the feathering at CI's 64 px (16 px of 1024)
                  "qwen_image_edit_masked": {"GrowMask": {"expand": 1}, "ImageBlur": {"blur_radius": 1, "sigma": 0.5}},
                  "sdxl_text_guided_inpainting": {"GrowMask": {"expand": 1}, "ImageBlur": {"blur_radius": 1, "sigma": 0.5},
                                                  "DreamMaskInpaint": {"feather": 1}},
                  "flux_dev_inpainting": {"GrowMask": {"expand": 1}, "ImageBlur": {"blur_radius": 1, "sigma": 0.5},
                                          "DreamMaskInpaint": {"feather": 1}}}
#: masked edits whose pixels outside the composite mask must equal the source (CI checks it): the titles
#: of the working image, the composite mask and the edit (noise) mask
KEEPS_UNMASKED = {"qwen_image_edit_masked": {"image": WORKING_IMAGE, "composite_mask": COMPOSITE_MASK,
                                             "edit_mask": EDIT_MASK},
                  "sdxl_text_guided_inpainting": {"image": inverse.WORKING_IMAGE,
                                                  "composite_mask": inverse.COMPOSITE_MASK,
                                                  "edit_mask": inverse.INPAINT_MASK},
                  "flux_dev_inpainting": {"image": WORKING_IMAGE, "composite_mask": inverse.COMPOSITE_MASK,
                                          "edit_mask": inverse.INPAINT_MASK}}
