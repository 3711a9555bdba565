"""CycleDiffusion text edit, Cycle-SDE vs ODE side by side, SDE-Drag with two point pairs and a mask."""
import json

from .editing import loader, load_image


def prompts(first_id, source, target):
    return [
        {"id": first_id, "type": "CLIPTextEncode", "title": "Source prompt (describes the input)",
         "widgets": {"text": source}, "links": {"clip": (1, 1)}},
        {"id": first_id + 1, "type": "CLIPTextEncode", "title": "Target prompt (describes the edit)",
         "widgets": {"text": target}, "links": {"clip": (1, 1)}},
        {"id": first_id + 2, "type": "CLIPTextEncode", "title": "Negative prompt",
         "widgets": {"text": ""}, "links": {"clip": (1, 1)}},
    ]


SOURCE = "a photo of green mountains under a blue sky"
TARGET = "a photo of snowy mountains under a blue sky"

# drag the sun to the left and lift the front ridge; pixel coordinates of the 512x512 input
DRAG_POINTS = json.dumps([{"x": 369, "y": 128}, {"x": 300, "y": 150}, {"x": 120, "y": 420}, {"x": 120, "y": 380}])
# the same drags on the 64x64 CI image (each under step_size latent px: one sub-drag)
DRAG_POINTS_FAST = json.dumps([{"x": 46, "y": 16}, {"x": 38, "y": 18}, {"x": 15, "y": 52}, {"x": 15, "y": 46}])

WORKFLOWS = {
    "cyclediffusion_text_edit": {
        "title": "DreamSampler: CycleDiffusion text edit (DPM-Encoder, e.g. cat -> dog)",
        "nodes": [
            loader(1),
            *load_image(2),
            {"id": 4, "type": "VAEEncode", "links": {"pixels": (3, 0), "vae": (1, 2)}},
            *prompts(5, SOURCE, TARGET),
            {"id": 8, "type": "DreamDDPMEncode",
             "widgets": {"seed": 0, "steps": 40, "scheduler": "ddim_uniform", "strength": 0.8, "eta": 0.1,
                         "source_cfg": 1.0, "coupling": "posterior"},
             "links": {"model": (1, 0), "source": (5, 0), "negative": (7, 0), "latent_image": (4, 0)}},
            {"id": 9, "type": "DreamDDPMDecode", "widgets": {"cfg": 3.0},
             "links": {"model": (1, 0), "target": (6, 0), "negative": (7, 0), "encoded": (8, 0)}},
            {"id": 10, "type": "VAEDecode", "links": {"samples": (9, 0), "vae": (1, 2)}},
            {"id": 11, "type": "SaveImage", "widgets": {"filename_prefix": "DreamSampler/cyclediffusion"},
             "links": {"images": (10, 0)}},
        ],
    },
    "cycle_sde_vs_ode": {
        "title": "DreamSampler: Cycle-SDE vs ODE edit, side by side (same start, same prompts)",
        "nodes": [
            loader(1),
            *load_image(2),
            {"id": 4, "type": "VAEEncode", "links": {"pixels": (3, 0), "vae": (1, 2)}},
            *prompts(5, SOURCE, TARGET),
            {"id": 8, "type": "DreamCycleSDEEdit", "title": "Cycle-SDE edit",
             "widgets": {"seed": 0, "steps": 35, "scheduler": "ddim_uniform", "t0": 0.7, "stage2": "cycle_sde",
                         "cfg": 7.5, "source_cfg": 7.5},
             "links": {"model": (1, 0), "source": (5, 0), "target": (6, 0), "negative": (7, 0),
                       "latent_image": (4, 0)}},
            {"id": 9, "type": "DreamCycleSDEEdit", "title": "ODE (DDIM) edit",
             "widgets": {"seed": 0, "steps": 35, "scheduler": "ddim_uniform", "t0": 0.7, "stage2": "ode",
                         "cfg": 7.5, "source_cfg": 7.5},
             "links": {"model": (1, 0), "source": (5, 0), "target": (6, 0), "negative": (7, 0),
                       "latent_image": (4, 0)}},
            {"id": 10, "type": "VAEDecode", "links": {"samples": (8, 0), "vae": (1, 2)}},
            {"id": 11, "type": "VAEDecode", "links": {"samples": (9, 0), "vae": (1, 2)}},
            {"id": 12, "type": "ImageStitch", "title": "Input | ODE",
             "widgets": {"direction": "right", "match_image_size": True, "spacing_width": 8, "spacing_color": "white"},
             "links": {"image1": (3, 0), "image2": (11, 0)}},
            {"id": 13, "type": "ImageStitch", "title": "Input | ODE | Cycle-SDE",
             "widgets": {"direction": "right", "match_image_size": True, "spacing_width": 8, "spacing_color": "white"},
             "links": {"image1": (12, 0), "image2": (10, 0)}},
            {"id": 14, "type": "SaveImage", "widgets": {"filename_prefix": "DreamSampler/cycle_sde_vs_ode"},
             "links": {"images": (13, 0)}},
        ],
    },
    "sde_drag": {
        "title": "DreamSampler: SDE-Drag with two point pairs and a mask (click source, then target)",
        "nodes": [
            loader(1),
            *load_image(2),
            {"id": 4, "type": "CLIPTextEncode", "title": "Prompt (describe the image)",
             "widgets": {"text": "a photo of mountains and the sun under a blue sky"}, "links": {"clip": (1, 1)}},
            {"id": 5, "type": "CLIPTextEncode", "title": "Negative prompt", "widgets": {"text": ""},
             "links": {"clip": (1, 1)}},
            {"id": 6, "type": "SolidMask", "title": "Mask: keep everything...",
             "widgets": {"value": 0.0, "width": 512, "height": 512}},
            {"id": 7, "type": "SolidMask", "title": "...except this editable rectangle",
             "widgets": {"value": 1.0, "width": 448, "height": 448}},
            {"id": 8, "type": "MaskComposite", "title": "Editable region (white)",
             "widgets": {"x": 32, "y": 32, "operation": "add"},
             "links": {"destination": (6, 0), "source": (7, 0)}},
            {"id": 9, "type": "DreamSDEDrag",
             "widgets": {"points": DRAG_POINTS, "seed": 1234, "steps": 60, "scheduler": "ddim_uniform", "t0": 0.6,
                         "cfg": 3.0, "guidance_ramp": "linear", "alpha": 1.1, "beta": 0.3, "radius": 5,
                         "step_size": 2.0, "target_points": ""},
             "links": {"model": (1, 0), "vae": (1, 2), "image": (3, 0), "positive": (4, 0), "negative": (5, 0),
                       "mask": (8, 0)}},
            {"id": 10, "type": "SaveImage", "widgets": {"filename_prefix": "DreamSampler/sde_drag"},
             "links": {"images": (9, 0)}},
        ],
    },
}

TEST_OVERRIDES = {"sde_drag": {"DreamSDEDrag": {"points": DRAG_POINTS_FAST}}}
