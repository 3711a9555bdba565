"""A shipped family workflow's API prompt on the family's tiny model (CI): the loader nodes the user's
graph has (UNETLoader / CheckpointLoaderSimple / VAELoader and the text-encoder loaders) are
swapped for the family's tiny files through the same loaders where ComfyUI's detection accepts
them, else for the in-server model of TestFamilyModel; every CLIPTextEncode (and Qwen-Image-Edit's
TextEncodeQwenImageEdit(Plus), without its VAE input) becomes TestFamilyText,
conditioning of the family's shapes seeded by the prompt's text (another text: another
conditioning; the same text: the same one).  Every other node (sampling-shift nodes, FluxGuidance,
the pack's nodes, image / video nodes) runs as shipped.
"""
from __future__ import annotations

from . import families

CLIP_LOADERS = {"CLIPLoader", "DualCLIPLoader", "TripleCLIPLoader"}
#: text encoder class -> its text input (Qwen-Image-Edit's encoders: the text only; the picture they show the
#: vision encoder has no stand-in, the reference latent comes through ReferenceLatent)
TEXT_ENCODERS = {"CLIPTextEncode": "text", "TextEncodeQwenImageEdit": "prompt", "TextEncodeQwenImageEditPlus": "prompt"}
#: loader class -> {output index: what it is}
OUTPUTS = {"CheckpointLoaderSimple": {0: "model", 1: "clip", 2: "vae"}, "UNETLoader": {0: "model"},
           "VAELoader": {0: "vae"}, **{c: {0: "clip"} for c in CLIP_LOADERS}}


def _relink(prompt: dict, old: tuple, new: list) -> None:
    for node in prompt.values():
        for name, v in node["inputs"].items():
            if isinstance(v, list) and len(v) == 2 and (str(v[0]), v[1]) == old:
                node["inputs"][name] = list(new)


def on_tiny_family(prompt: dict, family: str) -> dict:
    """``prompt`` (an API prompt of a shipped workflow) rewritten in place to run on ``family``'s
    tiny model; returns it."""
    fam = families()[family]
    files = fam.files()
    ids = iter(range(10_000, 20_000))

    def add(class_type, **inputs):
        nid = str(next(ids))
        prompt[nid] = {"class_type": class_type, "inputs": inputs}
        return nid

    loaders = [k for k, v in prompt.items() if v["class_type"] in OUTPUTS]
    if not loaders:
        raise ValueError(f"no model loader in the prompt for {family}")
    built = add("TestFamilyModel", family=family)
    sources = {"model": ([add("UNETLoader", unet_name=files["diffusion_models"][0].name, weight_dtype="default"), 0]
                         if files.get("diffusion_models") else [built, 0]),
               "vae": ([add("VAELoader", vae_name=files["vae"][0].name), 0] if files.get("vae") else [built, 4])}
    for k in loaders:
        for index, what in OUTPUTS[prompt[k]["class_type"]].items():
            if what != "clip":
                _relink(prompt, (k, index), sources[what])
    for k, node in list(prompt.items()):
        if node["class_type"] in TEXT_ENCODERS:
            if node["class_type"] != "CLIPTextEncode" and "vae" in node["inputs"]:
                raise ValueError(f"{node['class_type']} {k}: no stand-in for its own VAE reference (connect the "
                                 "reference through ReferenceLatent)")
            text = node["inputs"][TEXT_ENCODERS[node["class_type"]]]
            prompt[k] = {"class_type": "TestFamilyText", "inputs": {"family": family, "text": text},
                         "_meta": node.get("_meta", {})}
    for k in loaders:
        del prompt[k]
    dangling = [(k, v["class_type"]) for k, v in prompt.items()
                for src in v["inputs"].values() if isinstance(src, list) and len(src) == 2 and str(src[0]) in loaders]
    if dangling:
        raise ValueError(f"nodes still use a removed loader (no stand-in for them): {dangling}")
    return prompt
