"""Real image editing: DDIM inversion -> DreamSampler with a CFG-edit regularizer."""

CKPT = "v1-5-pruned-emaonly-fp16.safetensors"


def loader(i=1):
    return {"id": i, "type": "CheckpointLoaderSimple", "widgets": {"ckpt_name": CKPT}}


def load_image(i, name="dream_example.png", size=512):
    return [
        {"id": i, "type": "LoadImage", "widgets": {"image": name}},
        {"id": i + 1, "type": "ImageScale", "title": "Working size",
         "widgets": {"upscale_method": "lanczos", "width": size, "height": size, "crop": "center"},
         "links": {"image": (i, 0)}},
    ]


WORKFLOWS = {
    "real_image_editing": {
        "title": "DreamSampler: real image editing (DDIM inversion + CFG edit)",
        "nodes": [
            loader(1),
            *load_image(2),
            {"id": 4, "type": "VAEEncode", "links": {"pixels": (3, 0), "vae": (1, 2)}},
            {"id": 5, "type": "CLIPTextEncode", "title": "Null prompt (inversion + base)",
             "widgets": {"text": ""}, "links": {"clip": (1, 1)}},
            {"id": 6, "type": "CLIPTextEncode", "title": "Target prompt",
             "widgets": {"text": "a watercolor painting of snowy mountains at sunset"}, "links": {"clip": (1, 1)}},
            {"id": 7, "type": "DreamDDIMInversion",
             "widgets": {"steps": 50, "scheduler": "ddim_uniform", "denoise": 1.0, "refine_steps": 0},
             "links": {"model": (1, 0), "conditioning": (5, 0), "latent_image": (4, 0)}},
            {"id": 12, "type": "CLIPTextEncode", "title": "Source prompt (what the image shows)",
             "widgets": {"text": "a flat illustration of green mountains under a blue sky with a sun"},
             "links": {"clip": (1, 1)}},
            {"id": 8, "type": "DreamCFGEdit",
             "widgets": {"strength": 0.2, "schedule": "invariant", "start": 1.0, "end": 0.0},
             "links": {"target": (6, 0), "source": (12, 0)}},
            {"id": 9, "type": "DreamSampler",
             "widgets": {"seed": 0, "steps": 50, "cfg": 1.0, "scheduler": "ddim_uniform", "denoise": 1.0,
                         "eta": 0.0, "eta_schedule": "constant"},
             "links": {"model": (1, 0), "positive": (5, 0), "negative": (5, 0), "latent_image": (7, 0),
                       "regularizers": (8, 0)}},
            {"id": 10, "type": "VAEDecode", "links": {"samples": (9, 0), "vae": (1, 2)}},
            {"id": 11, "type": "SaveImage", "widgets": {"filename_prefix": "DreamSampler/edit"},
             "links": {"images": (10, 0)}},
        ],
    },
}


# The same edit built from core custom-sampling nodes with the Dream SAMPLER / GUIDER pieces.
WORKFLOWS["custom_sampling_editing"] = {
    "title": "DreamSampler pieces in core SamplerCustomAdvanced (inversion sampler, Dream guider, Dream sampler)",
    "nodes": [
        loader(1),
        *load_image(2),
        {"id": 4, "type": "VAEEncode", "links": {"pixels": (3, 0), "vae": (1, 2)}},
        {"id": 5, "type": "CLIPTextEncode", "title": "Null prompt", "widgets": {"text": ""}, "links": {"clip": (1, 1)}},
        {"id": 6, "type": "CLIPTextEncode", "title": "Target prompt",
         "widgets": {"text": "a pencil sketch of mountains"}, "links": {"clip": (1, 1)}},
        {"id": 7, "type": "BasicScheduler", "widgets": {"scheduler": "ddim_uniform", "steps": 50, "denoise": 1.0},
         "links": {"model": (1, 0)}},
        {"id": 8, "type": "DisableNoise"},
        {"id": 9, "type": "BasicGuider", "links": {"model": (1, 0), "conditioning": (5, 0)}},
        {"id": 10, "type": "DreamInversionSampler", "widgets": {"refine_steps": 1}},
        {"id": 11, "type": "SamplerCustomAdvanced", "title": "Invert",
         "links": {"noise": (8, 0), "guider": (9, 0), "sampler": (10, 0), "sigmas": (7, 0), "latent_image": (4, 0)}},
        {"id": 12, "type": "DreamCFGEdit", "widgets": {"strength": 0.3, "schedule": "invariant"},
         "links": {"target": (6, 0)}},
        {"id": 13, "type": "DreamGuider", "widgets": {"cfg": 1.0},
         "links": {"model": (1, 0), "positive": (5, 0), "negative": (5, 0), "regularizers": (12, 0)}},
        {"id": 14, "type": "DreamSamplerSelect", "widgets": {"eta": 0.0, "eta_schedule": "constant"}},
        {"id": 15, "type": "SamplerCustomAdvanced", "title": "Edit",
         "links": {"noise": (8, 0), "guider": (13, 0), "sampler": (14, 0), "sigmas": (7, 0), "latent_image": (11, 0)}},
        {"id": 16, "type": "VAEDecode", "links": {"samples": (15, 0), "vae": (1, 2)}},
        {"id": 17, "type": "SaveImage", "widgets": {"filename_prefix": "DreamSampler/custom_edit"},
         "links": {"images": (16, 0)}},
    ],
}
