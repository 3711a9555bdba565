"""The sampling nodes inside the real (in-process) ComfyUI: oracle math through ComfyUI's own model
wrapper, every parameterization on tiny models, SamplerCustomAdvanced composition, safety."""
import pytest
import torch

from dreamsampler_pack.dreamsampler_core.analytic import GaussianMixture
from support.inprocess import run


@pytest.fixture(scope="module")
def S(pack):
    from dreamsampler_pack.nodes import regularizers, sampling
    return sampling, regularizers


@pytest.fixture(scope="module")
def gm():
    return GaussianMixture.two_class(4 * 4 * 4, sep=3.0, std=0.5)


def _latent(gm, cls, n=4, seed=1):
    return {"samples": gm.sample(n, torch.Generator().manual_seed(seed), cls).reshape(n, 4, 4, 4).float()}


@pytest.mark.parametrize("kind", ["eps", "v", "flow"])
def test_oracle_inversion_round_trip_through_comfy(S, gm, kind):
    from tools.tiny_models import class_conditioning, oracle_model
    sampling, _ = S
    model = oracle_model(gm, kind)
    null = class_conditioning(None)
    lat = _latent(gm, 0)
    sched = "ddim_uniform" if kind != "flow" else "simple"
    errs = []
    for refine in (0, 4):
        (inv,) = run(sampling.DreamDDIMInversion, model, null, lat, steps=25, scheduler=sched, denoise=1.0,
                     refine_steps=refine)
        assert torch.isfinite(inv["samples"]).all()
        # how many refinement iterations helped rides along in the LATENT (DreamSampler ignores it)
        report = inv["dream_inversion"].get("refine")
        assert report is None if refine == 0 else 0 < report["helped"] <= report["requested"] == 25 * 4 * 4
        out, _ = run(sampling.DreamSampler, model, seed=0, steps=25, cfg=1.0, scheduler=sched, positive=null,
                     negative=null, latent_image=inv, denoise=1.0, eta=0.0, eta_schedule="constant")
        errs.append(float((out["samples"] - lat["samples"]).abs().max()))
    # float32 through ComfyUI's model wrapper: refined inversion reconstructs to ~1e-4
    assert errs[1] < 2e-3, errs
    assert errs[0] > 5 * errs[1], errs


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_oracle_edit_through_comfy_moves_to_target_class(S, gm, kind):
    from tools.tiny_models import class_conditioning, oracle_model
    sampling, regs = S
    model = oracle_model(gm, kind)
    null, target = class_conditioning(None), class_conditioning(1)
    lat = _latent(gm, 0)
    sched = "ddim_uniform" if kind != "flow" else "simple"
    (inv,) = run(sampling.DreamDDIMInversion, model, null, lat, steps=30, scheduler=sched, denoise=1.0, refine_steps=3)
    (r0,) = run(regs.DreamCFGEdit, target, 0.0, "invariant", 1.0, 0.0)
    (r1,) = run(regs.DreamCFGEdit, target, 0.5, "invariant", 1.0, 0.0)
    rec, _ = run(sampling.DreamSampler, model, seed=0, steps=30, cfg=1.0, scheduler=sched, positive=null, negative=null,
                 latent_image=inv, denoise=1.0, eta=0.0, eta_schedule="constant", regularizers=r0)
    ed, den = run(sampling.DreamSampler, model, seed=0, steps=30, cfg=1.0, scheduler=sched, positive=null,
                  negative=null, latent_image=inv, denoise=1.0, eta=0.0, eta_schedule="constant", regularizers=r1)
    assert (gm.classify(lat["samples"].double()) == 0).all()
    assert float((rec["samples"] - lat["samples"]).abs().max()) < 5e-3
    assert (gm.classify(ed["samples"].double()) == 1).all()
    assert torch.allclose(den["samples"], ed["samples"], atol=1e-5)   # last step outputs the Tweedie estimate


def test_oracle_edit_with_a_source_prompt_uses_it_and_strength_zero_reconstructs(S, gm):
    """'source' connected: the direction is x0(target) - x0(source) (DDS with a source text); the
    base (null) still renoises, so strength 0 reconstructs; a non-CONDITIONING source is named."""
    from tools.tiny_models import class_conditioning, oracle_model
    from dreamsampler_pack.nodes.common import InputError
    sampling, regs = S
    model = oracle_model(gm, "eps")
    null, source, target = class_conditioning(None), class_conditioning(0), class_conditioning(1)
    lat = _latent(gm, 0)
    (inv,) = run(sampling.DreamDDIMInversion, model, null, lat, steps=30, scheduler="ddim_uniform", denoise=1.0,
                 refine_steps=3)
    out = {}
    for s, src in ((0.0, source), (0.5, source), (0.5, None)):
        (r,) = run(regs.DreamCFGEdit, target, strength=s, schedule="invariant", start=1.0, end=0.0, regularizers=None,
                   source=src)
        out[s, src is None] = run(sampling.DreamSampler, model, seed=0, steps=30, cfg=1.0, scheduler="ddim_uniform",
                                  positive=null, negative=null, latent_image=inv, denoise=1.0, eta=0.0,
                                  eta_schedule="constant", regularizers=r)[0]["samples"]
    assert float((out[0.0, False] - lat["samples"]).abs().max()) < 5e-3
    assert (gm.classify(out[0.5, False].double()) == 1).all()
    assert float((out[0.5, False] - out[0.5, True]).abs().max()) > 1e-2      # the source prediction is used
    with pytest.raises(InputError, match="'source'"):
        run(regs.DreamCFGEdit, target, strength=0.5, schedule="invariant", start=1.0, end=0.0, regularizers=None,
            source="a horse")


@pytest.mark.parametrize("kind", ["eps", "v", "flow"])
def test_tiny_models_every_parameterization_is_finite_and_deterministic(S, kind):
    from tools.tiny_models import fake_conditioning, tiny_model
    sampling, regs = S
    model = tiny_model(kind)
    c, t = fake_conditioning(0), fake_conditioning(1)
    lat = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
    (inv,) = run(sampling.DreamDDIMInversion, model, c, lat, steps=6, scheduler="simple", denoise=1.0, refine_steps=1)
    (r,) = run(regs.DreamCFGEdit, t, 1.0, "invariant", 1.0, 0.0)
    outs = [run(sampling.DreamSampler, model, seed=5, steps=6, cfg=1.0, scheduler="simple", positive=c, negative=c,
                latent_image=inv, denoise=1.0, eta=0.3, eta_schedule="constant", regularizers=r)[0]["samples"]
            for _ in range(2)]
    assert torch.isfinite(inv["samples"]).all() and torch.isfinite(outs[0]).all()
    assert torch.equal(outs[0], outs[1])
    # plain generation from an ordinary latent (noise added like KSampler), cfg > 1
    gen = run(sampling.DreamSampler, model, seed=3, steps=5, cfg=4.0, scheduler="simple", positive=t, negative=c,
              latent_image=lat, denoise=1.0, eta=0.0, eta_schedule="constant")[0]["samples"]
    assert torch.isfinite(gen).all() and not torch.allclose(gen, lat["samples"])


def test_dream_sampler_without_regularizers_matches_core_ddim(S, sd15):
    """eta=0, no regularizer: DreamSampler == core KSampler 'ddim' (Euler in sigma space) on the same noise."""
    import nodes as core
    sampling, _ = S
    model, clip, _ = sd15
    with torch.inference_mode():
        pos = core.CLIPTextEncode().encode(clip, "a photo")[0]
        neg = core.CLIPTextEncode().encode(clip, "")[0]
        lat = {"samples": torch.zeros(1, 4, 8, 8)}
        # (KSampler's ddim_uniform can run one step more than asked; 'normal' and 5-step grids agree)
        for steps, sched in ((6, "normal"), (5, "ddim_uniform")):
            ref = core.KSampler().sample(model, seed=7, steps=steps, cfg=3.0, sampler_name="ddim", scheduler=sched,
                                         positive=pos, negative=neg, latent_image=lat, denoise=1.0)[0]["samples"]
            ours = sampling.DreamSampler.execute(model, seed=7, steps=steps, cfg=3.0, scheduler=sched, positive=pos,
                                                 negative=neg, latent_image=lat, denoise=1.0, eta=0.0,
                                                 eta_schedule="constant").result[0]["samples"]
            assert torch.allclose(ours, ref, atol=1e-4, rtol=1e-4), float((ours - ref).abs().max())


def test_custom_sampling_composition(S, sd15):
    """Dream guider + sampler + inversion sampler inside core SamplerCustomAdvanced."""
    import nodes as core
    from comfy_extras import nodes_custom_sampler as cs
    sampling, regs = S
    model, clip, vae = sd15
    with torch.inference_mode():
        null = core.CLIPTextEncode().encode(clip, "")[0]
        tgt = core.CLIPTextEncode().encode(clip, "a zebra")[0]
        lat = {"samples": vae.encode(torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0)))}
        sigmas = cs.BasicScheduler.execute(model, "ddim_uniform", 8, 1.0).result[0]
        noise = cs.DisableNoise.execute().result[0]
        inv_sampler = sampling.DreamInversionSampler.execute(3).result[0]
        basic = cs.BasicGuider.execute(model, null).result[0]
        inv = cs.SamplerCustomAdvanced.execute(noise, basic, inv_sampler, sigmas, lat).result[0]
        node_inv = sampling.DreamDDIMInversion.execute(model, null, lat, 8, "ddim_uniform", 1.0, 3).result[0]
        assert torch.allclose(inv["samples"], node_inv["samples"], atol=1e-4)
        # FlipSigmas (the core inversion idiom) is accepted too
        flipped = cs.FlipSigmas.execute(sigmas).result[0]
        inv2 = cs.SamplerCustomAdvanced.execute(noise, basic, inv_sampler, flipped, lat).result[0]
        assert torch.allclose(inv2["samples"], inv["samples"], atol=1e-4)
        r = regs.DreamCFGEdit.execute(tgt, 0.5, "invariant", 1.0, 0.0).result[0]
        guider = sampling.DreamGuiderNode.execute(model, null, null, 1.0, r).result[0]
        dream = sampling.DreamSamplerSelect.execute(0.0, "constant").result[0]
        adv = cs.SamplerCustomAdvanced.execute(noise, guider, dream, sigmas, inv).result[0]
        node = sampling.DreamSampler.execute(model, seed=0, steps=8, cfg=1.0, scheduler="ddim_uniform", positive=null,
                                             negative=null, latent_image=node_inv, denoise=1.0, eta=0.0,
                                             eta_schedule="constant", regularizers=r).result[0]
        assert torch.allclose(adv["samples"], node["samples"], atol=1e-3)
        # a Dream guider with regularizers refuses to silently drop them under a core sampler
        euler = cs.KSamplerSelect.execute("euler").result[0]
        with pytest.raises(RuntimeError, match="Dream Sampler"):
            cs.SamplerCustomAdvanced.execute(noise, guider, euler, sigmas, inv)


def test_model_is_not_mutated(S, sd15):
    sampling, regs = S
    model, clip, _ = sd15
    import nodes as core
    before = (dict(model.model_options), dict(model.object_patches), len(model.patches))
    with torch.inference_mode():
        c = core.CLIPTextEncode().encode(clip, "")[0]
        t = core.CLIPTextEncode().encode(clip, "a cat")[0]
        lat = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
        inv = sampling.DreamDDIMInversion.execute(model, c, lat, 4, "simple", 1.0, 1).result[0]
        r = regs.DreamCFGEdit.execute(t, 1.0, "invariant", 1.0, 0.0).result[0]
        sampling.DreamSampler.execute(model, seed=0, steps=4, cfg=2.0, scheduler="simple", positive=c, negative=c,
                                      latent_image=inv, denoise=1.0, eta=0.5, eta_schedule="alpha_bar", regularizers=r)
    assert (dict(model.model_options), dict(model.object_patches), len(model.patches)) == before
    assert "dream_inversion" not in lat and set(inv) == {"samples", "dream_inversion"}


def test_clear_errors_for_bad_inputs(S, sd15):
    from dreamsampler_pack.nodes.common import InputError
    sampling, regs = S
    model, clip, _ = sd15
    import nodes as core
    assert "steps must be at least 1" in sampling.DreamSampler.validate_inputs(steps=0)
    assert "denoise" in sampling.DreamSampler.validate_inputs(steps=5, denoise=0.0)
    assert "start" in regs.DreamCFGEdit.validate_inputs(strength=1.0, start=0.2, end=0.5)
    assert sampling.DreamSampler.validate_inputs(steps=5, cfg=1.0, denoise=0.5, eta=0.1) is True
    with torch.inference_mode():
        c = core.CLIPTextEncode().encode(clip, "")[0]
        lat = {"samples": torch.randn(1, 4, 8, 8)}
        bad = {"samples": torch.full((1, 4, 8, 8), float("nan"))}
        with pytest.raises(InputError, match="NaN"):
            sampling.DreamSampler.execute(model, seed=0, steps=4, cfg=1.0, scheduler="simple", positive=c, negative=c,
                                          latent_image=bad, denoise=1.0, eta=0.0, eta_schedule="constant")
        with pytest.raises(InputError, match="empty"):
            sampling.DreamSampler.execute(model, seed=0, steps=4, cfg=1.0, scheduler="simple", positive=[], negative=c,
                                          latent_image=lat, denoise=1.0, eta=0.0, eta_schedule="constant")
        inv = sampling.DreamDDIMInversion.execute(model, c, lat, 4, "simple", 0.5, 0).result[0]
        with pytest.raises(InputError, match="denoise"):
            sampling.DreamSampler.execute(model, seed=0, steps=4, cfg=1.0, scheduler="simple", positive=c, negative=c,
                                          latent_image=inv, denoise=1.0, eta=0.0, eta_schedule="constant")


def test_schedule_length_is_bounded_and_interruptible(S):
    """steps / denoise levels are built by ComfyUI before the tail is kept (issue 16): refused past
    10000 at queue time and in calculate_sigmas, and the build honours /interrupt."""
    import time
    import comfy.model_management as mm
    from dreamsampler_pack.nodes import host as C
    from tools.tiny_models import tiny_model
    sampling, _ = S
    msg = sampling.DreamSampler.validate_inputs(steps=4, denoise=4e-6, scheduler="normal")
    assert "1000000-level" in msg and "denoise to at least 0.0004" in msg
    assert sampling.DreamSampler.validate_inputs(steps=20, denoise=0.002) is True        # exactly 10000
    assert "steps=30 at denoise=0.001" in sampling.DreamDDIMInversion.validate_inputs(steps=30, denoise=0.001)
    model = tiny_model("eps")
    t = time.time()
    with pytest.raises(ValueError, match="over the limit of 10000"):
        C.calculate_sigmas(model, "normal", 4, 1e-9)
    assert time.time() - t < 1.0
    assert len(C.calculate_sigmas(model, "normal", 4, 0.5)) == 5
    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            C.calculate_sigmas(model, "normal", 20, 1.0)
    finally:
        mm.interrupt_current_processing(False)
