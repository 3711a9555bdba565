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
            {"id": 8, "type": "DreamCFGEdit",
             "widgets": {"strength": 0.2, "schedule": "invariant", "start": 1.0, "end": 0.0},
             "links": {"target": (6, 0)}},
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
