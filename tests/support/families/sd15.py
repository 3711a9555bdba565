"""SD1.5 (eps, 4-channel latent): the tiny checkpoint through CheckpointLoaderSimple and CLIP Text Encode."""
from . import Family, Refs
from tools.tiny_models import CKPT_NAME, tiny_sd15_checkpoint

SIZE = 64


def load(p) -> Refs:
    ckpt = p.add("CheckpointLoaderSimple", ckpt_name=CKPT_NAME)
    clip, vae = p.out(ckpt, 1), p.out(ckpt, 2)
    image = p.add("EmptyImage", width=SIZE, height=SIZE, batch_size=1, color=0x4080C0)
    return Refs(model=ckpt, vae=vae, image=image, latent=p.add("VAEEncode", pixels=image, vae=vae),
                positive=p.add("CLIPTextEncode", clip=clip, text="a red fox in the snow"),
                alt_positive=p.add("CLIPTextEncode", clip=clip, text="a city skyline at night"),
                negative=p.add("CLIPTextEncode", clip=clip, text=""), cfg=1.0,
                extra={"width": SIZE, "height": SIZE})


FAMILY = Family(name="sd15", title="SD1.5", load=load, files=lambda: {"checkpoints": [tiny_sd15_checkpoint()]},
                latent_shape=(1, 4, SIZE // 8, SIZE // 8),
                notes={"cfg": "1 on the base when editing an inverted image (the paper's setting); 7.5 to generate",
                       "steps": "50 ddim_uniform (the paper uses 200; the invariant edit schedule gives the same "
                                "edit at any step count)",
                       "refine_steps": "0-1: eps at sigma_max 14.6, the top step nearly exact; measured at 50 steps "
                                       "9.3e-3 / 4.3e-5 / 6.0e-7 at refine 0 / 1 / 2 (the checkpoint's empty prompt)",
                       "edit_strength": "0.2 (0.1-0.3): the paper's omega; 0.05-0.2 on the learned test model "
                                        "(bench/QUALITY.md)"})
