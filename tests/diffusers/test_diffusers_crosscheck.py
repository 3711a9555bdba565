"""The core outside ComfyUI: the diffusers adapter, cross-checked against diffusers' own
implementations (DDIMScheduler, DDIMInverseScheduler, the deprecated CycleDiffusionPipeline) and
against the same weights run through the ComfyUI nodes (issue 8).

Tiny models with seeded random weights (``tools.diffusers_fixtures.tiny_pipeline``): a random UNet is no
denoiser, but both sides must compute the same function of it, which is what is checked.
Tolerances are relative to the max |value| of the compared tensors; the measured values are in
the comments (float32, CPU, one thread).
"""
import math

import pytest
import torch

try:
    import diffusers  # noqa: F401
except ImportError as e:          # a missing test dependency is an error, never a skip
    raise ImportError("tests/diffusers need the test-only dependencies diffusers==0.42.1 and transformers "
                      "(tests/requirements.txt)") from e

from dreamsampler_core import cycle  # noqa: E402
from dreamsampler_core.schedule import Parameterization  # noqa: E402
from dreamsampler_diffusers import DreamPipeline  # noqa: E402
from tools.diffusers_fixtures import tiny_pipeline  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

VE = Parameterization("ve")
STEPS = 10




def rel(a, b):
    """max |a - b| / max |b|."""
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))


def latent(seed, shape=(1, 4, 8, 8)):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipeline(0)            # SD's DDIM config: steps_offset 1, set_alpha_to_one False


@pytest.fixture(scope="module")
def dream(pipe):
    return DreamPipeline(pipe)


def ddim(pipe, **over):
    from diffusers import DDIMScheduler
    return DDIMScheduler.from_config({**pipe.scheduler.config, **over})


def unet_eps(pipe, z, t, emb):
    with torch.no_grad():
        return pipe.unet(z, t, encoder_hidden_states=emb).sample


# ----------------------------------------------------------------------------- DDIM-eta step
@pytest.mark.parametrize("alpha_to_one", [False, True])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_eta_step_equals_ddimscheduler_step(pipe, eta, alpha_to_one):
    """cycle.ddim_eta_step (VE) == DDIMScheduler.step (VP) on every step of a 10-step grid, including
    the last one to final_alpha_cumprod, with the same variance noise.  Measured <= 2.9e-7 relative."""
    sched = ddim(pipe, set_alpha_to_one=alpha_to_one)
    sched.set_timesteps(STEPS)
    dream = DreamPipeline(pipe, scheduler_config=sched.config)
    sigmas = dream.sigmas(STEPS, end="scheduler")
    assert (float(sigmas[-1]) == 0.0) == alpha_to_one
    for i, t in enumerate(sched.timesteps):
        z, eps, noise = latent(3 * i), latent(3 * i + 1), latent(3 * i + 2)
        ref = sched.step(eps, t, z, eta=eta, variance_noise=noise).prev_sample
        s, s_next = sigmas[i], sigmas[i + 1]
        x = z * math.sqrt(1 + float(s) ** 2)                       # VP -> VE
        x_next = cycle.ddim_eta_step(x, VE.x0(x, eps, s), s, s_next, VE, eta, noise)
        ours = x_next / math.sqrt(1 + float(s_next) ** 2)
        assert rel(ours, ref) < 2e-6, (i, int(t), rel(ours, ref))


@pytest.mark.parametrize("prediction,eta", [("epsilon", 0.0), ("epsilon", 1.0), ("v_prediction", 1.0)])
def test_ddim_sampling_trajectory_equals_diffusers_loop(pipe, prediction, eta):
    """The adapter's denoiser + the core loop (cycle.cycle_sample, recorded noises) == diffusers'
    UNet + DDIMScheduler.step loop, 10 steps with the tiny UNet (also read as a v-prediction
    model).  Measured <= 4e-7 relative."""
    if prediction != "epsilon":
        pipe = tiny_pipeline(0, prediction_type=prediction)
    dream = DreamPipeline(pipe)
    emb = dream.embed("a photo of a cat")
    sched = ddim(pipe)
    sched.set_timesteps(STEPS)
    noises = [latent(100 + i) for i in range(STEPS)]
    z = latent(7) * 3.0
    for i, t in enumerate(sched.timesteps):
        z = sched.step(unet_eps(pipe, z, t, emb), t, z, eta=eta, variance_noise=noises[i]).prev_sample
    sigmas = dream.sigmas(STEPS, end="scheduler")
    x_T = latent(7) * 3.0 * math.sqrt(1 + float(sigmas[0]) ** 2)
    x = cycle.cycle_sample(dream.denoiser("a photo of a cat"), x_T, sigmas, VE, eta=eta,
                           noise_fn=cycle.recorded_noise(noises))
    ours = x / math.sqrt(1 + float(sigmas[-1]) ** 2)
    assert rel(ours, z) < 2e-5, rel(ours, z)


# ----------------------------------------------------------------------------- DDIM inversion
def diffusers_inversion(pipe, z0, emb, alpha_to_one):
    """DDIMInverseScheduler's loop as diffusers' pipelines run it: UNet at the HIGHER timestep t on
    the latent of the level below (t - 1000/steps, or initial_alpha_cumprod for the first step)."""
    from diffusers import DDIMInverseScheduler
    inv = DDIMInverseScheduler.from_config({**pipe.scheduler.config, "set_alpha_to_one": alpha_to_one})
    inv.set_timesteps(STEPS)
    z, traj = z0, []
    for t in inv.timesteps:
        z = inv.step(unet_eps(pipe, z, t, emb), t, z).prev_sample
        traj.append(z)
    return [int(t) for t in inv.timesteps], traj


def adapter_inversion(dream, z0, end):
    traj = []
    inv = dream.invert(z0, "", steps=STEPS, end=end, callback=lambda k, x: traj.append(x))
    levels = inv.sigmas.flip(0)[1:]                                  # ascending, one per step
    return inv, [x / math.sqrt(1 + float(s) ** 2) for x, s in zip(traj, levels)]


def test_ddim_inversion_equals_ddiminversescheduler(pipe, dream):
    """Same timesteps (1, 101, ..., 901 = the DDIM grid reversed) and the same trajectory, all 10
    levels.  Clean end at abar = 1 (set_alpha_to_one=True, the adapter's and ComfyUI's default
    end="zero"): measured <= 1.0e-6 relative.  With set_alpha_to_one=False diffusers treats the input
    as the VP latent at abar_0 = 0.99915 (the official DreamSampler code's final_alpha_cumprod):
    the adapter's end="scheduler" reproduces that to 1.3e-6, while end="zero" differs from it by
    0.8e-2 - 1.5e-2 (the first step's x0 moves by sqrt(1 - abar_0) eps = 0.029 eps), pinned in closed
    form at the first step so that a change of either side's convention shows up."""
    z0 = latent(11)
    emb = dream.embed("")
    ts, ref_one = diffusers_inversion(pipe, z0, emb, alpha_to_one=True)
    inv, ours = adapter_inversion(dream, z0, "zero")
    assert ts == sorted(inv.timesteps) == [1 + 100 * k for k in range(STEPS)]
    for k, (a, b) in enumerate(zip(ours, ref_one)):
        assert rel(a, b) < 1e-5, (k, rel(a, b))
    assert torch.allclose(inv.vp, ref_one[-1], rtol=0, atol=2e-6 * float(ref_one[-1].abs().max()))

    _, ref_abar0 = diffusers_inversion(pipe, z0, emb, alpha_to_one=False)
    _, ours_sched = adapter_inversion(dream, z0, "scheduler")
    for k, (a, b) in enumerate(zip(ours_sched, ref_abar0)):
        assert rel(a, b) < 1e-5, (k, rel(a, b))
    # the gap between the conventions, in closed form at the first step: with eps the UNet's output on
    # z0 at t = 1 (read off our abar = 1 step), diffusers' abar_0 step is
    #   z1 = sqrt(abar_1) (z0 - sqrt(1 - abar_0) eps) / sqrt(abar_0) + sqrt(1 - abar_1) eps
    abar = pipe.scheduler.alphas_cumprod.double()
    s1 = float(inv.sigmas[-2])
    eps = (ours[0] * math.sqrt(1 + s1 ** 2) - z0) / s1
    z1 = abar[1].sqrt() * (z0 - (1 - abar[0]).sqrt() * eps) / abar[0].sqrt() + (1 - abar[1]).sqrt() * eps
    assert rel(z1, ref_abar0[0]) < 2e-6, rel(z1, ref_abar0[0])
    gaps = [rel(a, b) for a, b in zip(ours, ref_abar0)]
    assert 1e-3 < gaps[0] < 5e-2 and 1e-3 < gaps[-1] < 5e-2, gaps


# ----------------------------------------------------------------------------- CycleDiffusion
def cycle_pipeline(pipe, **sched_over):
    from diffusers import CycleDiffusionPipeline
    return CycleDiffusionPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                                  unet=pipe.unet, scheduler=ddim(pipe, **sched_over), safety_checker=None,
                                  feature_extractor=None, requires_safety_checker=False)


CYCLE = dict(steps=STEPS, strength=0.8, eta=0.1, guidance_scale=3.0, source_guidance_scale=1.5)


def run_cycle_pair(pipe, z0, prompt, source, seed=5, sched=None, **over):
    """(diffusers CycleDiffusionPipeline latents, adapter DreamOutput) on the same inputs."""
    kw = {**CYCLE, **over}
    cp = cycle_pipeline(pipe, **(sched or {}))
    cp.set_progress_bar_config(disable=True)
    with torch.no_grad():
        ref = cp(prompt=prompt, source_prompt=source, image=z0.clone(), output_type="latent",
                 num_inference_steps=kw["steps"], strength=kw["strength"], eta=kw["eta"],
                 guidance_scale=kw["guidance_scale"], source_guidance_scale=kw["source_guidance_scale"],
                 generator=torch.Generator().manual_seed(seed)).images
    ours = DreamPipeline(pipe, scheduler_config=cp.scheduler.config).cyclediffusion(
        z0, prompt, source, generator=torch.Generator().manual_seed(seed), output_type="latent", **kw)
    return ref, ours


def test_cyclediffusion_reproduces_pipeline(pipe):
    """DPM-Encoder + target decode (core) vs diffusers' CycleDiffusionPipeline: same tiny model,
    prompts, seed, strength 0.8 (8 of 10 steps), eta 0.1, guidance 3 / source guidance 1.5.

    Same grid (t = 701 ... 1, then final_alpha_cumprod = abar_0), same noise draws (start noise,
    then one posterior draw per step but the last), same CFG.  The one difference is by design, the
    endpoint: diffusers adds noise to and samples the posterior around the clean latent z0 as if
    it were data at abar = 1, but pins the last level (abar_0 = 0.99915 < 1) to z0 itself; the core
    uses ONE clean latent x0 = z0 at sigma_0 (VE), whose VP latent is sqrt(abar_0) z0.  Every
    intermediate step is then identical, and at the last step out = z0 + (mu_tgt - mu_src) / c
    (ours, VE) vs z0 + (mu_tgt - mu_src) (diffusers, VP), c = sqrt(abar_0).  So exactly
        ours = z0 + (diffusers - z0) / sqrt(abar_0),
    which is pinned to 2e-5 (measured 4.6e-6); the raw difference is (1/c - 1) = 4.3e-4 of the
    edit (measured 4.3e-4), asserted in [1e-4, 1e-3].  Reconstruction (target = source prompt and
    guidance) is exact on both sides (measured <= 1e-6)."""
    z0 = latent(21)
    ref, out = run_cycle_pair(pipe, z0, "a painting of a dog", "a photo of a cat")
    ours = out.latents
    abar0 = float(pipe.scheduler.alphas_cumprod[0])
    c = math.sqrt(float(pipe.scheduler.final_alpha_cumprod))
    assert c == pytest.approx(math.sqrt(abar0)) and c < 1.0
    pinned = z0 + (ref - z0) / c
    assert rel(ours, pinned) < 2e-5, rel(ours, pinned)
    raw = float((ours - ref).abs().max()) / float((ref - z0).abs().max())
    assert 1e-4 < raw < 1e-3, raw
    assert rel(ref, z0) > 0.05                                      # the prompts really edit
    assert out.info["unet_calls"] == 2 * 8                          # source + target per step (CFG rows batched)
    code = out.info["code"]
    assert code.steps == 8 and float(code.sigmas[-1]) == pytest.approx(math.sqrt((1 - abar0) / abar0), rel=1e-12)

    ref_rec, out_rec = run_cycle_pair(pipe, z0, "a photo of a cat", "a photo of a cat", guidance_scale=1.5)
    assert rel(ref_rec, z0) < 2e-5, rel(ref_rec, z0)
    assert rel(out_rec.latents, z0) < 2e-5, rel(out_rec.latents, z0)


def test_cyclediffusion_alpha_to_one_hazard(pipe):
    """Known hazard (spec csd §2.2): with set_alpha_to_one=True the last step ends at abar = 1 and adds
    no noise, so its residual cannot be encoded; diffusers' compute_noise divides by
    eta * sqrt(variance) = 0 and the pipeline returns NaN.  The adapter puts the clean latent at the
    scheduler's final level if that keeps noise, else at the model's smallest sigma (abar_0, as the
    ComfyUI nodes' cycle.clean_end_grid): finite, and an exact reconstruction (measured <= 1e-6).
    (steps_offset = 0 is no hazard: the pipeline's constructor resets it to 1.)"""
    sched = {"set_alpha_to_one": True}
    z0 = latent(31)
    ref, out = run_cycle_pair(pipe, z0, "a painting of a dog", "a photo of a cat", sched=sched)
    assert not torch.isfinite(ref).all()
    assert torch.isfinite(out.latents).all()
    d = DreamPipeline(pipe, scheduler_config=ddim(pipe, **sched).config)
    grid = d.sigmas(STEPS, end="floor")
    assert float(grid[-1]) > 0 and bool(torch.all(grid[:-1] > grid[1:]))
    rec = d.cyclediffusion(z0, "a cat", "a cat", steps=STEPS, eta=0.1, guidance_scale=2.0, source_guidance_scale=2.0,
                           generator=torch.Generator().manual_seed(1), output_type="latent").latents
    assert rel(rec, z0) < 2e-5, rel(rec, z0)


# ----------------------------------------------------------------------------- ComfyUI parity
def comfy_unet_config(unet):
    """ComfyUI's UNetModel config for the tiny diffusers UNet (SD1 layout: conv proj_in, 8 heads)."""
    cfg = unet.config
    levels = len(cfg.block_out_channels)
    attn = ["CrossAttn" in b for b in cfg.down_block_types]
    return {
        "use_checkpoint": False, "image_size": cfg.sample_size, "in_channels": cfg.in_channels,
        "out_channels": cfg.out_channels, "model_channels": cfg.block_out_channels[0],
        "channel_mult": [c // cfg.block_out_channels[0] for c in cfg.block_out_channels],
        "num_res_blocks": [cfg.layers_per_block] * levels,
        "transformer_depth": [int(a) for a in attn for _ in range(cfg.layers_per_block)],
        "transformer_depth_output": [int(a) for a in attn for _ in range(cfg.layers_per_block + 1)],
        "transformer_depth_middle": 1, "context_dim": cfg.cross_attention_dim, "use_spatial_transformer": True,
        "legacy": False, "adm_in_channels": None, "use_linear_in_transformer": cfg.use_linear_projection,
        "use_temporal_resblock": False, "use_temporal_attention": False,
    }


@pytest.fixture(scope="module")
def comfy_model(pipe, pack):
    """The tiny diffusers UNet's weights in a ComfyUI SD1.5 EPS model, converted with ComfyUI's own
    key map (comfy.utils.unet_to_diffusers); strict load, every tensor mapped."""
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models
    import comfy.utils
    ucfg = comfy_unet_config(pipe.unet)
    mc = comfy.supported_models.SD15(ucfg)
    model = comfy.model_base.BaseModel(mc, model_type=comfy.model_base.ModelType.EPS, device="cpu")
    key_map = comfy.utils.unet_to_diffusers(mc.unet_config)
    sd = pipe.unet.state_dict()
    assert set(sd) <= set(key_map), sorted(set(sd) - set(key_map))[:5]
    model.diffusion_model.load_state_dict({key_map[k]: v for k, v in sd.items()}, strict=True)
    model.diffusion_model.to(torch.float32)
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def comfy_run(node, *args, **kw):
    with torch.inference_mode():
        return node.execute(*args, **kw).result


def test_comfyui_and_diffusers_agree_on_inversion_and_edit(pipe, comfy_model):
    """The same weights through the ComfyUI nodes (sigma space, ComfyUI's own float64 schedule,
    model wrapper and ddim_uniform grid) and through the adapter (diffusers' float32 alphas_cumprod,
    DDIM timesteps) give the same DDIM inversion and the same DreamSampler edit: 10 steps,
    set_alpha_to_one=True (ComfyUI's grid ends at sigma 0), null-text inversion, CFG-edit omega = 2
    ("invariant").  Text embeddings come from the diffusers text encoder for both.

    Measured: identical timesteps, sigmas within 2e-6; inversion 1.2e-6 and edit 1.8e-5 relative
    (tolerance 1e-4: the float32 schedules differ in the last bits and omega = 2 amplifies it).  A
    broken conversion or sigma/timestep mapping gives O(1) differences; the edit itself moves the
    latent by 2.9 relative."""
    from dreamsampler_pack.nodes import regularizers, sampling
    import comfy.samplers
    dream = DreamPipeline(pipe, scheduler_config=ddim(pipe, set_alpha_to_one=True).config)
    sf = float(pipe.vae.config.scaling_factor)
    ms = comfy_model.get_model_object("model_sampling")
    comfy_sigmas = comfy.samplers.calculate_sigmas(ms, "ddim_uniform", STEPS).double()
    assert [int(ms.timestep(s.float().reshape(1))) for s in comfy_sigmas[:-1]] == dream.timesteps(STEPS)
    assert torch.allclose(comfy_sigmas, dream.sigmas(STEPS), rtol=2e-6, atol=0)

    z0 = latent(41)
    null, target = dream.embed(""), dream.embed("a painting of a zebra")
    null_c, target_c = [[null.clone(), {}]], [[target.clone(), {}]]
    lat = {"samples": z0 / sf}                                       # ComfyUI latents are unscaled

    (inv_c,) = comfy_run(sampling.DreamDDIMInversion, comfy_model, null_c, lat, steps=STEPS, scheduler="ddim_uniform",
                         denoise=1.0, refine_steps=0)
    inv = dream.invert(z0, "", steps=STEPS)
    comfy_inv = inv_c["samples"] * sf                                # back to the scaled (model-space) latent
    assert rel(inv.latent, comfy_inv) < 1e-4, rel(inv.latent, comfy_inv)

    (regs,) = comfy_run(regularizers.DreamCFGEdit, target_c, 2.0, "invariant", 1.0, 0.0)
    out_c, _ = comfy_run(sampling.DreamSampler, comfy_model, seed=0, steps=STEPS, cfg=1.0, scheduler="ddim_uniform",
                         positive=null_c, negative=null_c, latent_image=inv_c, denoise=1.0, eta=0.0,
                         eta_schedule="constant", regularizers=regs)
    out = dream.edit(z0, "a painting of a zebra", edit_strength=2.0, steps=STEPS, output_type="latent")
    comfy_edit = out_c["samples"] * sf
    assert rel(out.latents, comfy_edit) < 1e-4, rel(out.latents, comfy_edit)
    assert rel(out.latents, z0) > 0.5                                 # a real edit, not a no-op
    assert out.info["unet_calls"] == 2 * STEPS and out.info["unet_samples"] == 3 * STEPS


# ----------------------------------------------------------------------------- the other algorithms
def test_sde_drag_without_displacement_reconstructs(dream):
    """SDE-Drag through the adapter (pixel points -> latent cells, guidance ramp per level, Markov
    noise recovery, Cycle-SDE): a drag onto the same point with alpha = 1 pastes each patch onto
    itself, so the Cycle-SDE decode must give back the image exactly (measured 1.4e-6; a wrong ramp
    lookup or level mapping between encode and decode breaks it).  A real drag changes the image
    (measured 2.7 relative)."""
    z0 = latent(51)                                                 # 8 x 8 latent = 16 x 16 pixels

    def drag(src, tgt, **kw):
        return dream.sde_drag(z0, "a cat", src, tgt, steps=STEPS, t0=0.6, guidance_scale=3.0, radius=2,
                              generator=torch.Generator().manual_seed(0), output_type="latent", **kw)

    same = drag([(6, 6)], [(6, 6)], alpha=1.0)
    assert rel(same.latents, z0) < 2e-5, rel(same.latents, z0)
    # 6 levels from t0, encode + decode; the ramp reaches cfg 1 on the last level (no uncond row there)
    assert same.info["unet_calls"] == 2 * 6 and same.info["unet_samples"] == 2 * (5 * 2 + 1)
    assert rel(drag([(4, 6)], [(9, 6)]).latents, z0) > 1e-2
    with pytest.raises(ValueError, match="outside"):
        drag([(40, 6)], [(9, 6)])


def test_restore_projection_lands_on_the_measurement(dream):
    """Restoration through the adapter's VAE codec and latent scaling (the core DataConsistency): with
    the 'project' preset (gamma = 1 on every step) and an operator that observes every pixel, the
    last step's estimate is E((y + mu x_hat) / (1 + mu)), i.e. E(y) up to mu = 1e-4.  Measured
    1.0e-4 relative (tolerance 1e-3); a wrong scaling factor or codec space is off by O(1)."""
    from dreamsampler_core.operators import Inpainting
    y01 = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))      # diffusers images: [0, 1]
    y = y01 * 2 - 1
    op = Inpainting(torch.ones(1, 1, 16, 16))
    out = dream.restore(y01, op, "a photo", steps=STEPS, strength=0.6, preset="project", sigma_y=0.0,
                        generator=torch.Generator().manual_seed(0), output_type="latent")
    expected = dream.encode_pixels(y)
    assert rel(out.latents, expected) < 1e-3, rel(out.latents, expected)
    assert out.info["unet_calls"] == 6


def test_inpaint_runs_batched_and_keeps_prompts_apart(dream):
    """Text-guided inpainting through the adapter (inversion of E(A^T y), DataConsistency + MaskInpaint
    on the 'paper' preset): one batch-2 UNet call per step (null + target) after a batch-1
    inversion, a finite result of the image's latent shape, and the target prompt matters (two
    prompts differ by 1.1 relative)."""
    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    mask = torch.zeros(16, 16)
    mask[4:12, 4:12] = 1.0
    a = dream.inpaint(img, mask, "a red balloon", steps=STEPS, preset="paper", output_type="latent")
    assert a.latents.shape == (1, 4, 8, 8) and torch.isfinite(a.latents).all()
    assert a.info["unet_calls"] == 2 * STEPS and a.info["unet_samples"] == 3 * STEPS
    b = dream.inpaint(img, mask, "a wooden cabin", steps=STEPS, preset="paper", output_type="latent")
    assert rel(a.latents, b.latents) > 1e-3
    with pytest.raises(ValueError, match="prompts"):
        dream.inpaint(img, [mask, mask], ["one"], steps=STEPS)


def test_diffusers_is_optional():
    """The core and the adapter module import without diffusers (checked in a fresh interpreter where
    diffusers cannot be imported); using the adapter then says what to install."""
    import subprocess
    import sys
    from pathlib import Path
    code = ("import sys; sys.modules['diffusers'] = None\n"
            "import dreamsampler_core, dreamsampler_diffusers as a\n"
            "try:\n    a.DreamPipeline(object())\nexcept ImportError as e:\n    print('ERR', e)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "ERR" in res.stdout and "pip install diffusers" in res.stdout


def test_edit_script_runs_offline_on_a_saved_pipeline(pipe, tmp_path):
    """scripts/diffusers_edit.py (which ships without the test fixtures) on the tiny pipeline saved
    as a local folder: it loads it with from_pretrained, edits a 16 x 16 image and saves the result."""
    import subprocess
    import sys
    from pathlib import Path
    from PIL import Image
    repo = Path(__file__).resolve().parents[2]
    pipe.save_pretrained(tmp_path / "tiny")
    ramp = torch.linspace(0, 255, 16).to(torch.uint8)
    rgb = torch.stack([ramp[None, :].expand(16, 16), ramp[:, None].expand(16, 16),
                       torch.full((16, 16), 128, dtype=torch.uint8)], -1)
    Image.fromarray(rgb.numpy()).save(tmp_path / "in.png")
    cmd = [sys.executable, str(repo / "scripts" / "diffusers_edit.py"), "--model", str(tmp_path / "tiny"),
           "--image", str(tmp_path / "in.png"), "--size", "16", "--steps", "2", "--out", str(tmp_path / "out.png")]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "edit: 4 UNet calls" in res.stdout, res.stdout
    assert Image.open(tmp_path / "out.png").size == (16, 16)
