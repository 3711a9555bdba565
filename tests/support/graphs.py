"""API prompts that grow a shipped workflow in the ways a user's graph can (shared by the graph-cost
measurements and the bad-input catalog)."""
import json


def chained_edits(prompt: dict, n: int, tag: str) -> tuple:
    """``prompt`` with its Dream CFG Edit replaced by a chain of ``n`` (all reading the same target
    prompt, strength split so the total edit is the same); returns (prompt, id of the last edit)."""
    p = json.loads(json.dumps(prompt))
    edit_id = next(k for k, v in p.items() if v["class_type"] == "DreamCFGEdit")
    sampler_id = next(k for k, v in p.items() if v["class_type"] == "DreamSampler")
    edit = p.pop(edit_id)
    prev = None
    for k in range(n):
        inputs = dict(edit["inputs"], strength=edit["inputs"]["strength"] / n)
        inputs.pop("regularizers", None)
        if prev is not None:
            inputs["regularizers"] = [prev, 0]
        prev = f"{tag}{k}"
        p[prev] = {"class_type": "DreamCFGEdit", "inputs": inputs}
    p[sampler_id]["inputs"]["regularizers"] = [prev, 0]
    p[sampler_id]["inputs"]["seed"] = len(tag) + n      # a new sampler run each time (no cache hit)
    return p, prev



def noise_mask_prompt(edit_prompt, value, where):
    """SolidMask(value) -> SetLatentNoiseMask, on the encoded image before the inversion ("before"), on
    the inverted latent ("after"), or on the latent of a SamplerCustomAdvanced with the Dream sampler
    ("custom")."""
    p = json.loads(json.dumps(edit_prompt))
    inv = next(k for k, v in p.items() if v["class_type"] == "DreamDDIMInversion")
    smp = next(k for k, v in p.items() if v["class_type"] == "DreamSampler")
    p["800"] = {"class_type": "SolidMask", "inputs": {"value": value, "width": 64, "height": 64}}
    if where == "before":
        p["801"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": p[inv]["inputs"]["latent_image"],
                                                                   "mask": ["800", 0]}}
        p[inv]["inputs"]["latent_image"] = ["801", 0]
        return p, inv, "latent_image"
    p["801"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": [inv, 0], "mask": ["800", 0]}}
    if where == "after":
        p[smp]["inputs"]["latent_image"] = ["801", 0]
        return p, smp, "latent_image"
    s = p[smp]["inputs"]
    p["802"] = {"class_type": "DreamSamplerSelect", "inputs": {"eta": 0.0, "eta_schedule": "constant"}}
    p["803"] = {"class_type": "CFGGuider", "inputs": {"model": s["model"], "positive": s["positive"],
                                                      "negative": s["negative"], "cfg": 1.0}}
    p["804"] = {"class_type": "BasicScheduler", "inputs": {"model": s["model"], "scheduler": s["scheduler"],
                                                           "steps": s["steps"], "denoise": 1.0}}
    p["805"] = {"class_type": "DisableNoise", "inputs": {}}
    p["806"] = {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["805", 0], "guider": ["803", 0],
                                                                  "sampler": ["802", 0], "sigmas": ["804", 0],
                                                                  "latent_image": ["801", 0]}}
    dec = next(k for k, v in p.items() if v["class_type"] == "VAEDecode")
    p[dec]["inputs"]["samples"] = ["806", 0]
    return p, "806", "noise_mask"


def node_adder(prompt: dict, first: int = 30_000):
    """``add(class_type, **inputs) -> [node id, 0]``: appends nodes to an API prompt (ids from
    ``first``), and the prompt's node ids by title, for checks added to a shipped workflow."""
    ids = iter(range(first, first + 1000))

    def add(class_type, **inputs):
        nid = str(next(ids))
        prompt[nid] = {"class_type": class_type, "inputs": inputs}
        return [nid, 0]
    return add, {v.get("_meta", {}).get("title"): k for k, v in prompt.items()}

