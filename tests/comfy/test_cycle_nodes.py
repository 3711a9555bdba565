"""CycleDiffusion, Cycle-SDE edit and SDE-Drag nodes inside the real (in-process) ComfyUI: oracle
math through ComfyUI's model wrapper, the tiny SD1.5 checkpoint, SamplerCustomAdvanced
composition, masks and input errors."""
import json

import numpy as np
import pytest
import torch

from dreamsampler_pack.dreamsampler_core.analytic import GaussianMixture
from support.inprocess import run


@pytest.fixture(scope="module")
def gm():
    return GaussianMixture.two_class(4 * 4 * 4, sep=3.0, std=0.5)


def _latent(gm, cls, n=4, seed=1):
    return {"samples": gm.sample(n, torch.Generator().manual_seed(seed), cls).reshape(n, 4, 4, 4).float()}


@pytest.mark.parametrize("kind", ["eps", "v", "flow"])
def test_oracle_dpm_encoder_round_trip_and_edit(N, gm, kind):
    from tools.tiny_models import class_conditioning, oracle_model
    cycle = N.cycle
    model = oracle_model(gm, kind)
    src, tgt, null = class_conditioning(0), class_conditioning(1), class_conditioning(None)
    lat = _latent(gm, 0)
    sched = "ddim_uniform" if kind != "flow" else "simple"
    enc, info = run(cycle.DreamDDPMEncode, model, source=src, negative=null, latent_image=lat, seed=3, steps=20,
                    scheduler=sched, strength=0.8, eta=0.1, source_cfg=1.0, coupling="posterior")
    code = enc[cycle.CYCLE_KEY]
    assert code.steps == 20 and float(code.sigmas[-1]) > 0 and "MiB" in info
    (rec,) = run(cycle.DreamDDPMDecode, model, src, null, enc, 1.0)
    # float32 through ComfyUI's wrapper: measured ~6e-7 (the core test shows 1e-15 in float64)
    assert float((rec["samples"] - lat["samples"]).abs().max()) < 1e-5
    assert cycle.CYCLE_KEY not in rec
    (ed,) = run(cycle.DreamDDPMDecode, model, tgt, null, enc, 1.0)
    assert (gm.classify(ed["samples"].double()) == 1).all()


def test_tiny_sd15_round_trip_sampler_and_errors(N, sd15):
    import nodes as core
    from comfy_extras import nodes_custom_sampler as cs
    cycle, common = N.cycle, N.common
    model, clip, vae = sd15
    with torch.inference_mode():
        src = core.CLIPTextEncode().encode(clip, "a photo of a cat")[0]
        tgt = core.CLIPTextEncode().encode(clip, "a photo of a dog")[0]
        null = core.CLIPTextEncode().encode(clip, "")[0]
        lat = {"samples": vae.encode(torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0)))}
    enc, _ = run(cycle.DreamDDPMEncode, model, source=src, negative=null, latent_image=lat, seed=0, steps=3,
                 scheduler="ddim_uniform", strength=0.5, eta=0.1, source_cfg=1.0, coupling="posterior")
    (rec,) = run(cycle.DreamDDPMDecode, model, src, null, enc, 1.0)
    err = float((rec["samples"] - lat["samples"]).abs().max())
    assert err < 1e-5, err                                                   # measured ~6e-7
    (ed,) = run(cycle.DreamDDPMDecode, model, tgt, null, enc, 3.0)
    assert float((ed["samples"] - lat["samples"]).abs().max()) > 1e-3
    # the same decode as a SAMPLER in core SamplerCustomAdvanced
    with torch.inference_mode():
        guider = cs.CFGGuider.execute(model, tgt, null, 3.0).result[0]
        noise = cs.DisableNoise.execute().result[0]
        sampler = cycle.DreamCycleDiffusionSampler.execute(enc).result[0]
        sigmas = cs.BasicScheduler.execute(model, "ddim_uniform", 3, 0.5).result[0]
        adv = cs.SamplerCustomAdvanced.execute(noise, guider, sampler, sigmas, enc).result[0]
        assert torch.allclose(adv["samples"], ed["samples"], atol=1e-5)
        wrong = cs.BasicScheduler.execute(model, "ddim_uniform", 4, 0.5).result[0]
        with pytest.raises(Exception, match="not the grid the code was encoded on"):
            cs.SamplerCustomAdvanced.execute(noise, guider, sampler, wrong, enc)
    with pytest.raises(common.InputError, match="no DDPM code"):
        run(cycle.DreamDDPMDecode, model, tgt, null, lat, 3.0)
    assert "eta must be greater than 0" in cycle.DreamDDPMEncode.validate_inputs(eta=0.0)
    assert "markov" in cycle.DreamDDPMEncode.validate_inputs(eta=0.5, coupling="markov")
    assert "strength" in cycle.DreamDDPMEncode.validate_inputs(strength=1.5)


def test_cycle_sde_edit_stages_and_mask(N, gm):
    from tools.tiny_models import class_conditioning, oracle_model
    cycle, common = N.cycle, N.common
    model = oracle_model(gm, "eps")
    src, tgt, null = class_conditioning(0), class_conditioning(1), class_conditioning(None)
    lat = _latent(gm, 0, n=2)
    outs = {}
    for stage in ("cycle_sde", "sde", "ode"):
        (outs[stage],) = run(cycle.DreamCycleSDEEdit, model, source=src, target=src, negative=null, latent_image=lat,
                             seed=5, steps=12, scheduler="ddim_uniform", t0=0.6, stage2=stage, cfg=1.0, source_cfg=1.0)
    errs = {k: float((v["samples"] - lat["samples"]).abs().max()) for k, v in outs.items()}
    assert errs["cycle_sde"] < 1e-4, errs            # no prompt change: Cycle-SDE reconstructs
    assert errs["sde"] > 1e-2 and errs["ode"] > 1e-3, errs
    mask = torch.zeros(1, 32, 32)
    mask[:, :16] = 1.0                               # top half editable (latent rows 0-1 of 4)
    for stage in ("cycle_sde", "sde", "ode"):
        (o,) = run(cycle.DreamCycleSDEEdit, model, source=src, target=tgt, negative=null, latent_image=lat, seed=5,
                   steps=12, scheduler="ddim_uniform", t0=0.6, stage2=stage, cfg=1.0, source_cfg=1.0, mask=mask)
        assert torch.allclose(o["samples"][..., 2:, :], lat["samples"][..., 2:, :], atol=1e-6), stage
        assert float((o["samples"][..., :2, :] - lat["samples"][..., :2, :]).abs().max()) > 1e-2, stage
    with pytest.raises(common.InputError, match="no white"):
        run(cycle.DreamCycleSDEEdit, model, source=src, target=tgt, negative=null, latent_image=lat, seed=5, steps=12,
            scheduler="ddim_uniform", t0=0.6, stage2="ode", cfg=1.0, source_cfg=1.0, mask=torch.zeros(1, 32, 32))


def test_sde_drag_node(N, sd15):
    import nodes as core
    drag, common = N.drag, N.common
    model, clip, vae = sd15
    with torch.inference_mode():
        pos = core.CLIPTextEncode().encode(clip, "a photo of a cat")[0]
        null = core.CLIPTextEncode().encode(clip, "")[0]
    img = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    pts = json.dumps([{"x": 20, "y": 20}, {"x": 36, "y": 24}, {"x": 50, "y": 50}, {"x": 44, "y": 44}])
    mask = torch.zeros(1, 64, 64)
    mask[:, :, :40] = 1.0                                               # left part editable (latent cols 0-4)
    args = (model, vae, img, pos, null)
    widgets = dict(seed=0, steps=3, scheduler="ddim_uniform", t0=0.6, cfg=3.0, guidance_ramp="linear", alpha=1.1,
                   beta=0.3, radius=2, step_size=2.0)
    with torch.inference_mode():
        out = cls_execute(drag.DreamSDEDrag, *args, points=pts, mask=mask, **widgets)
        enc = vae.encode(img)
    image, lat = out.result
    assert image.shape == img.shape and torch.isfinite(image).all()
    assert torch.allclose(lat["samples"][..., 5:], enc[..., 5:], atol=1e-5)          # black region kept
    assert float((lat["samples"][..., :5] - enc[..., :5]).abs().max()) > 1e-3
    assert out.ui[drag.EDITOR_UI_KEY][0]["type"] == "temp"
    # clear errors for bad points
    for bad, msg in (('[{"x": 70, "y": 3}, {"x": 1, "y": 1}]', "outside the 64x64 image"),
                     ("[]", "no drag points"), ("[{\"x\": 1", "not valid JSON")):
        with pytest.raises(common.InputError, match=msg):
            with torch.inference_mode():
                cls_execute(drag.DreamSDEDrag, *args, points=bad, **widgets)
        if not msg.startswith("outside"):                               # the image size is known only at run time
            assert msg in drag.DreamSDEDrag.validate_inputs(points=bad)
    assert "beta" in drag.DreamSDEDrag.validate_inputs(beta=1.5)
    assert drag.DreamSDEDrag.validate_inputs(points=pts) is True


def cls_execute(node, *args, points, mask=None, target_points="", **w):
    return node.execute(*args, points=points, mask=mask, target_points=target_points, **w)


def test_dragbench_loader_node(N, tmp_path, monkeypatch):
    import folder_paths
    from PIL import Image
    drag, common = N.drag, N.common
    monkeypatch.setattr(folder_paths, "get_input_directory", lambda: str(tmp_path / "input"))
    item = tmp_path / "input" / "DragBench" / "art_0"
    item.mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    Image.fromarray(np.full((24, 40, 3), 200, np.uint8)).save(item / "origin_image.png")
    m = np.zeros((24, 40), np.uint8)
    m[:, :20] = 255
    Image.fromarray(m).save(item / "mask.png")
    (item / "prompt.json").write_text(json.dumps({"source": [[5, 6]], "target": [[9, 10]], "prompt": "a cat"}))
    image, mask, prompt, points = run(drag.DreamDragBenchLoader, "DragBench/art_0")
    assert image.shape == (1, 24, 40, 3) and mask.shape == (1, 24, 40) and prompt == "a cat"
    assert float(mask[0, :, :20].min()) == 1.0 and float(mask[0, :, 20:].max()) == 0.0
    from dreamsampler_pack.dreamsampler_core.points import parse_drag_points
    assert parse_drag_points(points) == ([(5, 6)], [(9, 10)])
    assert drag.DreamDragBenchLoader.validate_inputs(item_folder="DragBench/art_0") is True
    with pytest.raises(common.InputError, match="not a folder in ComfyUI's input folder"):
        run(drag.DreamDragBenchLoader, "DragBench/nope")
    # outside the input folder: refused by name, the same message whether the folder exists or not
    msgs = {name: drag.DreamDragBenchLoader.validate_inputs(item_folder=name).replace(name, "<name>")
            for name in (str(item), str(tmp_path / "outside"), str(tmp_path / "missing"), "../outside", "../missing")}
    assert len(set(msgs.values())) == 1 and "not inside ComfyUI's input folder" in msgs["../outside"], msgs
    with pytest.raises(common.InputError, match="not inside ComfyUI's input folder"):
        run(drag.DreamDragBenchLoader, str(item))


def test_schemas_document_every_input(N):
    cycle, drag = N.cycle, N.drag
    for node in (*cycle.NODES, *drag.NODES):
        schema = node.define_schema()
        assert schema.node_id.startswith("Dream") and schema.category.startswith("DreamSampler")
        assert schema.description
        for inp in schema.inputs:
            assert getattr(inp, "tooltip", None), (schema.node_id, inp.id)
