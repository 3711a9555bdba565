"""Collaborative Score Distillation: a 1536x512 panorama edit and a short frame-sequence edit.

Both use an ordinary SD1.5 checkpoint (target prompt vs source prompt). With an InstructPix2Pix
checkpoint put the instruction in the target prompt and disconnect the source prompt.
"""
from .editing import loader

SOURCE = "a photo of green mountains under a blue sky"
TARGET = "a watercolor painting of green mountains under a blue sky"


def prompts(first_id, target=TARGET, source=SOURCE):
    return [
        {"id": first_id, "type": "CLIPTextEncode", "title": "Target prompt (or the IP2P instruction)",
         "widgets": {"text": target}, "links": {"clip": (1, 1)}},
        {"id": first_id + 1, "type": "CLIPTextEncode", "title": "Negative prompt",
         "widgets": {"text": ""}, "links": {"clip": (1, 1)}},
        {"id": first_id + 2, "type": "CLIPTextEncode", "title": "Source prompt (describes the input)",
         "widgets": {"text": source}, "links": {"clip": (1, 1)}},
    ]


def stitch(i, a, b, title):
    return {"id": i, "type": "ImageStitch", "title": title,
            "widgets": {"direction": "right", "match_image_size": True, "spacing_width": 0, "spacing_color": "white"},
            "links": {"image1": (a, 0), "image2": (b, 0)}}


def crop(i, x):
    return {"id": i, "type": "ImageCrop", "title": f"Frame: pan {x} px",
            "widgets": {"width": 512, "height": 512, "x": x, "y": 0}, "links": {"image": (3, 0)}}


WORKFLOWS = {
    "csd_panorama_edit": {
        "title": "DreamSampler: CSD panorama edit (1536x512, overlapping windows as SVGD particles)",
        "nodes": [
            loader(1),
            {"id": 2, "type": "LoadImage", "widgets": {"image": "dream_example.png"}},
            {"id": 3, "type": "ImageScale", "title": "Tile size",
             "widgets": {"upscale_method": "lanczos", "width": 512, "height": 512, "crop": "center"},
             "links": {"image": (2, 0)}},
            {"id": 4, "type": "ImageFlip", "widgets": {"flip_method": "y-axis: horizontally"},
             "links": {"image": (3, 0)}},
            stitch(5, 3, 4, "Image | mirror"),
            stitch(6, 5, 3, "Image | mirror | image (1536x512)"),
            *prompts(7),
            {"id": 10, "type": "DreamCSDEdit",
             "widgets": {"mode": "panorama", "seed": 0, "iterations": 200, "lr": 2.0, "lr_schedule": "step",
                         "text_cfg": 7.5, "image_cfg": 5.0, "particles": 8, "window": 512, "stride": 128,
                         "t_min": 0.02, "t_max": 0.5, "svgd": True, "kernel_feature": "noisy",
                         "vae_tile_size": 1024},
             "links": {"model": (1, 0), "vae": (1, 2), "image": (6, 0), "target": (7, 0), "negative": (8, 0),
                       "source": (9, 0)}},
            {"id": 11, "type": "SaveImage", "widgets": {"filename_prefix": "DreamSampler/csd_panorama"},
             "links": {"images": (10, 0)}},
        ],
    },
    "csd_frames_edit": {
        "title": "DreamSampler: CSD frame-sequence edit (4 panned frames as SVGD particles)",
        "nodes": [
            loader(1),
            {"id": 2, "type": "LoadImage", "widgets": {"image": "dream_example.png"}},
            {"id": 3, "type": "ImageScale", "title": "Scene (wider than a frame)",
             "widgets": {"upscale_method": "lanczos", "width": 544, "height": 512, "crop": "center"},
             "links": {"image": (2, 0)}},
            crop(4, 0), crop(5, 8), crop(6, 16), crop(7, 24),
            {"id": 8, "type": "ImageBatch", "links": {"image1": (4, 0), "image2": (5, 0)}},
            {"id": 9, "type": "ImageBatch", "links": {"image1": (8, 0), "image2": (6, 0)}},
            {"id": 10, "type": "ImageBatch", "title": "Frames", "links": {"image1": (9, 0), "image2": (7, 0)}},
            *prompts(11),
            {"id": 14, "type": "DreamCSDEdit",
             "widgets": {"mode": "frames", "seed": 0, "iterations": 100, "lr": 0.5, "lr_schedule": "step",
                         "text_cfg": 7.5, "image_cfg": 1.5, "particles": 0, "window": 512, "stride": 128,
                         "t_min": 0.02, "t_max": 0.5, "svgd": True, "kernel_feature": "noisy",
                         "vae_tile_size": 1024},
             "links": {"model": (1, 0), "vae": (1, 2), "image": (10, 0), "target": (11, 0), "negative": (12, 0),
                       "source": (13, 0)}},
            {"id": 15, "type": "SaveImage", "widgets": {"filename_prefix": "DreamSampler/csd_frames"},
             "links": {"images": (14, 0)}},
        ],
    },
}

# CI on the tiny model (a loaded CPU): the generic --fast settings scale ImageScale to 64x64, so the
# panorama is 192x64 (24x8 latent: windows of 4 every 2 -> 33 windows, 2 drawn per iteration) and the
# frames 32x32; few particles and iterations keep each run to a few dozen tiny-UNet evaluations.
TEST_OVERRIDES = {
    "csd_panorama_edit": {"DreamCSDEdit": {"window": 32, "stride": 16, "particles": 2, "iterations": 3}},
    "csd_frames_edit": {"ImageCrop": {"width": 32, "height": 32},
                        "DreamCSDEdit": {"particles": 2, "iterations": 3}},
}
