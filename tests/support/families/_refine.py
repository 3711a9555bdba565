"""The measurement behind the families' ``refine_steps`` notes (``_build.ROUND_TRIP``): Dream DDIM
Inversion with refine_steps 0 / 1 / 2 / 3 / 5, then DreamSampler at eta 0 with the same steps, on a
family's tiny model in-process (the loader's file where the family has one, else its in-server build),
from a latent [1, C, 8, 8] (one frame [1, C, 1, 8, 8] on a 3-D latent format such as Qwen-Image's).

    cd tests && <host python> -m support.families._refine flux_dev,sd35 28 [scheduler]

Nothing runs on import (``families()`` imports every module of this package).
"""
from __future__ import annotations

import sys


def model_and_null(fam):
    """(MODEL, empty-prompt conditioning) of a family, the model loaded as its prompt loads it."""
    import comfy.sd
    files = fam.files()
    built = fam.build() if fam.build else None
    if "diffusion_models" in files:
        return comfy.sd.load_diffusion_model(str(files["diffusion_models"][0])), built[2]
    if "checkpoints" in files:
        model, clip = comfy.sd.load_checkpoint_guess_config(str(files["checkpoints"][0]))[:2]
        if built is None:                                   # the checkpoint's own text encoder
            tokens = clip.tokenize("")
            return model, [[clip.encode_from_tokens(tokens), {}]]
        return model, built[2]
    return built[0], built[2]


def round_trip(name: str, steps: int, scheduler: str | None = None, refines=(0, 1, 2, 3, 5)) -> dict:
    import torch

    from tools.host import load_pack
    load_pack()
    from dreamsampler_pack.nodes import sampling

    from . import families
    model, null = model_and_null(families()[name])
    flow = model.model.model_sampling.sigma_max <= 1.0 + 1e-6
    scheduler = scheduler or ("simple" if flow else "ddim_uniform")
    fmt = model.model.latent_format
    C, dims = fmt.latent_channels, getattr(fmt, "latent_dimensions", 2)
    shape = (1, C) + (1,) * (dims - 2) + (8, 8)              # a 3-D format (Wan 2.1's, Qwen-Image's): one frame
    x0 = torch.randn(shape, generator=torch.Generator().manual_seed(5))     # model space, N(0, 1)
    lat = {"samples": model.model.process_latent_out(x0)}
    errs = {}
    with torch.inference_mode():
        for r in refines:
            inv = sampling.DreamDDIMInversion.execute(model, null, lat, steps, scheduler, 1.0, r).result[0]
            out = sampling.DreamSampler.execute(model, seed=0, steps=steps, cfg=1.0, scheduler=scheduler, positive=null,
                                                negative=null, latent_image=inv, denoise=1.0, eta=0.0,
                                                eta_schedule="constant").result[0]
            errs[r] = float((model.model.process_latent_in(out["samples"]) - x0).abs().max())
    return {"scheduler": scheduler, "errors": errs}


if __name__ == "__main__":
    names, steps = sys.argv[1].split(","), int(sys.argv[2])
    for n in names:
        res = round_trip(n, steps, sys.argv[3] if len(sys.argv) > 3 else None)
        print(n, res["scheduler"], steps, " ".join(f"r{k}={v:.2e}" for k, v in res["errors"].items()), flush=True)
