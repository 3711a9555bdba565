"""Issue 23, item 3: Dream Distill Edit inside a mask on the learned rectified-flow model (the shapes
model as an SD3-style FLOW model, ModelSamplingSD3 shift 3), through a real server: the unmasked
latent is the source's exactly, and after decode the feathered paste-back (core GrowMask ->
ImageBlur -> ImageCompositeMasked, as the shipped masked workflows) keeps every pixel outside the
feathered mask equal to the source's own, to the 8-bit value, while the masked half is edited toward
the target prompt.  (Every family's tiny model, image and video latents: tests/e2e/test_family_matrix.py.)"""
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tools import shapes
from tools.server import ComfyServer

NODES = Path(__file__).resolve().parents[1] / "support" / "server_nodes"


@pytest.fixture(scope="module")
def shapes_server(tmp_path_factory):
    with ComfyServer(tmp_path_factory.mktemp("flowmask"), custom_nodes=[NODES]) as srv:
        yield srv


def _png(path):
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_masked_distill_edit_keeps_the_rest_and_pastes_back_exactly(shapes_server, tmp_path):
    src, tgt = shapes.class_index("triangle", "blue"), shapes.class_index("triangle", "red")
    size = shapes.SIZE
    nodes, ids = {}, iter(range(1, 100))

    def add(class_type, **inputs):
        nid = str(next(ids))
        nodes[nid] = {"class_type": class_type, "inputs": inputs}
        return [nid, 0]

    model = add("ModelSamplingSD3", model=add("TestShapesFlowModel"), shift=3.0)
    x = add("TestShapesImages", split="heldout", class_index=src, count=4)
    empty = add("SolidMask", value=0.0, width=size, height=size)
    half = add("SolidMask", value=1.0, width=size // 2, height=size)
    mask = add("MaskComposite", destination=empty, source=half, x=size // 2, y=0, operation="add")
    edited = add("DreamDistillEdit", model=model, source=add("TestShapesPrompt", class_index=src),
                 target=add("TestShapesPrompt", class_index=tgt), latent_image=x, seed=0, steps=28,
                 scheduler="simple", start=0.5, strength=1.0, fidelity=1.3, cfg=2.5, source_cfg=1.0, mask=mask)
    vae = add("VAELoader", vae_name="pixel_space")
    image = add("VAEDecode", samples=x, vae=vae)
    feather = add("ImageToMask", channel="red", image=add("ImageBlur", blur_radius=1, sigma=0.5, image=add(
        "MaskToImage", mask=add("GrowMask", expand=1, tapered_corners=True, mask=mask))))
    pasted = add("ImageCompositeMasked", destination=image, source=add("VAEDecode", samples=edited, vae=vae),
                 x=0, y=0, resize_source=False, mask=feather)
    add("SaveImage", images=pasted, filename_prefix="flowmask/result")
    add("SaveImage", images=image, filename_prefix="flowmask/source")
    add("SaveImage", images=add("MaskToImage", mask=add("ThresholdMask", mask=feather, value=0.0)),
        filename_prefix="flowmask/support")
    add("SaveLatent", samples=edited, filename_prefix="flowmask/edited")
    add("SaveLatent", samples=x, filename_prefix="flowmask/x")
    entry = shapes_server.run(nodes, timeout=600)
    files = shapes_server.fetch_outputs(entry, tmp_path)
    pick = lambda prefix: sorted(f for f in files if f.name.startswith(prefix))     # noqa: E731

    lat, lat_src = (load_file(str(pick(p)[0]))["latent_tensor"] for p in ("edited", "x"))
    half_w = size // 2
    assert torch.equal(lat[..., :half_w], lat_src[..., :half_w])                  # the unmasked latent, exactly
    assert (lat[..., half_w:] - lat_src[..., half_w:]).abs().mean() > 0.05

    for res, srcf, supf in zip(pick("result"), pick("source"), pick("support")):
        out, img, sup = _png(res), _png(srcf), _png(supf)
        outside = (sup == 0).all(-1)
        assert 0.2 < outside.mean() < 0.6, outside.mean()
        assert (out[outside] == img[outside]).all()
    # the edit inside the mask goes toward the target (blue -> red): the right half gets redder
    red = lambda t: float((t[:, 0] - t[:, 2])[..., half_w:].mean())                   # noqa: E731
    assert red(lat) > red(lat_src) + 0.2, (red(lat), red(lat_src))
