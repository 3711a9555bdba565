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
                latent_shape=(1, 4, SIZE // 8, SIZE // 8))
