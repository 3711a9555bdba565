"""The shipped SD1.5 text-guided inpainting workflows paste the source back after decoding (core
ImageCompositeMasked through the grown, blurred hole): on the tiny checkpoint through a real server,
every pixel of the saved PNG outside that composite mask is the working image's own, to the 8-bit
value, and the hole changed.  (The SDXL one is checked on its tiny model with the masked edits,
tests/e2e/test_family_matrix.py, KEEPS_UNMASKED.)"""
from pathlib import Path

import numpy as np
import pytest

from support.graphs import node_adder
from tools.workflow_specs import inverse
from tools.workflow_specs import test_overrides as workflow_overrides
from tools.workflows import prepare_prompt

REPO = Path(__file__).resolve().parents[2]


def _png(path):
    from PIL import Image
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


@pytest.mark.parametrize("stem", inverse.PASTES_BACK)
def test_inpainting_keeps_every_pixel_outside_the_feathered_hole(server, tiny_ckpt, tmp_path, stem):
    ui, prompt = prepare_prompt(server, REPO / "example_workflows" / f"{stem}.json", tiny_ckpt.name, fast=True,
                                test_overrides=workflow_overrides())
    add, by_title = node_adder(prompt)

    add("SaveImage", images=[by_title[inverse.WORKING_IMAGE], 0], filename_prefix="check/source")
    support = add("ThresholdMask", mask=[by_title[inverse.COMPOSITE_MASK], 0], value=0.0)    # 1 where mask > 0
    add("SaveImage", images=add("MaskToImage", mask=support), filename_prefix="check/support")
    add("SaveImage", images=add("MaskToImage", mask=[by_title[inverse.INPAINT_MASK], 0]), filename_prefix="check/hole")
    entry = server.run(prompt, timeout=900, workflow=ui)
    files = {f.name.rsplit("_", 2)[0]: f for f in server.fetch_outputs(entry, tmp_path)
             if not f.name.startswith("ComfyUI_temp")}
    (result,) = [f for name, f in files.items() if not name.startswith(("source", "support", "hole"))]
    out, src, sup, hole = _png(result), _png(files["source"]), _png(files["support"]), _png(files["hole"])
    outside = (sup == 0).all(-1)
    assert out.shape == src.shape and 0.2 < outside.mean() < 0.95, outside.mean()
    assert (out[outside] == src[outside]).all(), np.abs(out - src)[outside].max()
    inside = hole[..., 0] > 127
    assert inside.sum() > 16 and np.abs(out - src)[inside].mean() > 2.0
