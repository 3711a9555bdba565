"""DreamSampler on a diffusers Stable Diffusion pipeline: real-image editing (and CycleDiffusion).

    # a real model (a hub id, needs the weights cached or a download; or a local pipeline folder)
    python scripts/diffusers_edit.py --model stable-diffusion-v1-5/stable-diffusion-v1-5 \\
        --image horse.jpg --prompt "a zebra" --steps 200 --omega 0.2 --out zebra.png

    # CycleDiffusion instead (source prompt describes the input image)
    python scripts/diffusers_edit.py --model ... --image cat.png --method cyclediffusion \\
        --source-prompt "a photo of a cat" --prompt "a photo of a dog" --steps 50 --cfg 3

diffusers and transformers are needed only for this path (pip install diffusers transformers);
the ComfyUI nodes never import them.  tests/diffusers runs this script offline on a tiny pipeline
with random weights saved to a folder (``--model <folder>``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # run from a checkout

from dreamsampler_diffusers import DreamPipeline  # noqa: E402


def load(args):
    from diffusers import StableDiffusionPipeline
    from PIL import Image
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    pipe = StableDiffusionPipeline.from_pretrained(args.model, torch_dtype=dtype, safety_checker=None).to(device)
    image = Image.open(args.image).convert("RGB").resize((args.size, args.size))
    return pipe, image


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="stable-diffusion-v1-5/stable-diffusion-v1-5",
                    help="a hub id or a local folder (StableDiffusionPipeline.from_pretrained)")
    ap.add_argument("--image", type=Path, required=True, help="input image")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--method", choices=("edit", "cyclediffusion"), default="edit")
    ap.add_argument("--prompt", default="a zebra", help="target prompt")
    ap.add_argument("--source-prompt", default="", help="source prompt ('' = null-text, as the paper)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--omega", type=float, default=0.2, help="edit strength (the paper's omega)")
    ap.add_argument("--schedule", default="invariant", choices=("invariant", "paper", "constant"))
    ap.add_argument("--strength", type=float, default=0.8, help="CycleDiffusion: fraction of the schedule run")
    ap.add_argument("--eta", type=float, default=0.1, help="CycleDiffusion: DDIM eta (> 0)")
    ap.add_argument("--cfg", type=float, default=3.0, help="CycleDiffusion: target guidance scale")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("dreamsampler_edit.png"))
    args = ap.parse_args()

    pipe, image = load(args)
    dream = DreamPipeline(pipe)
    generator = torch.Generator().manual_seed(args.seed)
    if args.method == "edit":
        out = dream.edit(image, args.prompt, source_prompt=args.source_prompt, edit_strength=args.omega,
                         steps=args.steps, schedule=args.schedule, generator=generator)
    else:
        out = dream.cyclediffusion(image, args.prompt, args.source_prompt, steps=args.steps, strength=args.strength,
                                   eta=args.eta, guidance_scale=args.cfg, generator=generator)
    out.images[0].save(args.out)
    print(f"{args.method}: {out.info['unet_calls']} UNet calls ({out.info['unet_samples']} batch rows); "
          f"saved {out.images[0].size[0]}x{out.images[0].size[1]} image to {args.out}")


if __name__ == "__main__":
    main()
