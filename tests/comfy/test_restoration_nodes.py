"""Inpainting / restoration nodes inside the real (in-process) ComfyUI: the analytic oracle through
ComfyUI's model wrapper (identity "VAE" codec on the latent), the real VAE path on tiny models,
the opt-in DPS step on an inference-mode model, and clear errors for bad inputs."""
import pytest
import torch

from dreamsampler_pack.dreamsampler_core import operators as O
from dreamsampler_pack.dreamsampler_core.analytic import GaussianMixture
from dreamsampler_pack.dreamsampler_core.restoration import DataConsistency, IdentityCodec, preset
from support.inprocess import run

LATENT = (1, 4, 8, 8)


@pytest.fixture(scope="module")
def gm():
    return GaussianMixture.two_class(4 * 8 * 8, sep=3.0, std=0.5)


def _image(size=32, seed=0):
    return torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(seed))


def _sample(N, model, pos, latent, steps=3, regs=None, eta=0.0, sched="ddim_uniform", seed=0):
    sampling = N.sampling
    out, _ = run(sampling.DreamSampler, model, seed=seed, steps=steps, cfg=1.0, scheduler=sched, positive=pos,
                 negative=pos, latent_image=latent, denoise=1.0, eta=eta, eta_schedule="constant", regularizers=regs)
    return out["samples"]


def _identity_dc(N, op, y, **kw):
    """A data-consistency regularizer with the identity codec: the operator acts on the latent."""
    common = N.common
    core = DataConsistency(op=op, y=y, codec=IdentityCodec(), **kw)
    return (common.RegularizerSpec(core, {}, "data_consistency"),)


# ----------------------------------------------------------------------------- oracle through ComfyUI
@pytest.mark.parametrize("kind", ["eps", "v", "flow"])
def test_oracle_data_consistency_residual_falls_to_noise_level(N, gm, kind):
    from tools.tiny_models import class_conditioning, oracle_model
    model = oracle_model(gm, kind)
    null = class_conditioning(None)
    src = gm.sample(1, torch.Generator().manual_seed(0), 0).reshape(LATENT).float()
    op = O.make_operator("sr_avgpool", scale=2)
    sigma_y = 0.05
    y = O.degrade(src, op, sigma_y, torch.Generator().manual_seed(1))
    sched = "ddim_uniform" if kind != "flow" else "simple"
    empty = {"samples": torch.zeros(LATENT)}
    free = _sample(N, model, null, empty, steps=20, sched=sched)
    fit = _sample(N, model, null, empty, steps=20, sched=sched,
                  regs=_identity_dc(N, op, y, sigma_y=sigma_y, schedule=preset("restore")))
    r_free, r_fit = float(O.residual_norm(op, y, free)), float(O.residual_norm(op, y, fit))
    assert r_free > 5 * sigma_y
    assert abs(r_fit - sigma_y) < 0.15 * sigma_y, (r_fit, r_free)


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_oracle_mask_inpaint_node_keeps_source_and_follows_text(N, gm, kind):
    from tools.tiny_models import class_conditioning, oracle_model
    sampling, restoration = N.sampling, N.restoration
    model = oracle_model(gm, kind)
    null, target = class_conditioning(None), class_conditioning(1)
    src = gm.sample(1, torch.Generator().manual_seed(0), 0).reshape(LATENT).float()
    mask = torch.zeros(1, 8, 8)
    mask[:, :, :4] = 1                                             # repaint the left half (latent-size mask)
    sched = "ddim_uniform" if kind != "flow" else "simple"
    (inv,) = run(sampling.DreamDDIMInversion, model, null, {"samples": src}, steps=20, scheduler=sched, denoise=1.0,
                 refine_steps=2)
    (regs,) = run(restoration.DreamMaskInpaint, mask, 1.0, "restore", 0, "average", 1.0, target=target,
                  source={"samples": src})
    (keep_only,) = run(restoration.DreamMaskInpaint, mask, 1.0, "restore", 0, "average", 1.0, source={"samples": src})
    out = _sample(N, model, null, inv, steps=20, regs=regs, sched=sched)
    plain = _sample(N, model, null, inv, steps=20, regs=keep_only, sched=sched)
    known = (mask == 0)[:, None].expand(LATENT)
    assert float((out - src)[known].abs().max()) < 1e-2
    axis = (gm.means[1] - gm.means[0]).reshape(LATENT).float()
    side = lambda x: float(((x - src)[~known] * axis[~known]).sum())
    assert side(out) > side(plain) + 1.0, (side(out), side(plain))


def test_oracle_zero_strength_is_exactly_the_unregularized_sampler(N, gm):
    from tools.tiny_models import class_conditioning, oracle_model
    restoration = N.restoration
    model = oracle_model(gm, "eps")
    null, target = class_conditioning(None), class_conditioning(1)
    src = gm.sample(1, torch.Generator().manual_seed(0), 0).reshape(LATENT).float()
    op = O.make_operator("sr_bicubic", scale=2)
    y = O.degrade(src, op, 0.01, torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 8, 8)
    mask[:, 2:6, 2:6] = 1
    empty = {"samples": torch.zeros(LATENT)}
    regs = _identity_dc(N, op, y, strength=0.0, schedule=preset("paper"), dps=1.0)
    (regs,) = run(restoration.DreamMaskInpaint, mask, 0.0, "paper", 2, "average", 0.0, target=target,
                  source={"samples": src}, regularizers=regs)
    base = _sample(N, model, null, empty, steps=12, eta=0.5)
    assert torch.equal(_sample(N, model, null, empty, steps=12, eta=0.5, regs=regs), base)


# ----------------------------------------------------------------------------- real VAE, tiny models
@pytest.mark.parametrize("opname,kind", [("sr_bicubic", "eps"), ("deblur_motion", "v"), ("colorization", "flow")])
def test_restoration_graph_on_tiny_model(N, tiny_vae, opname, kind):
    """Degrade -> VAE encode(initial) -> Data Consistency -> DreamSampler on ComfyUI's VAE class,
    for each parameterization."""
    from tools.tiny_models import fake_conditioning, tiny_model
    restoration = N.restoration
    model = tiny_model(kind)
    cond = fake_conditioning(0)
    mask = torch.zeros(1, 32, 32)
    mask[:, 8:20, 4:28] = 1
    y, deg, initial = run(restoration.DreamDegrade, _image(), operator=opname, scale=4, blur_sigma=1.5, kernel_size=0,
                          motion_angle=20.0, sigma_y=0.01, seed=0, mask=mask)
    assert initial.shape == (1, 32, 32, 3)
    assert y.shape == ((1, 8, 8, 3) if opname == "sr_bicubic" else (1, 32, 32, 3))
    with torch.inference_mode():
        latent = {"samples": tiny_vae.encode(initial)}
    (regs,) = run(restoration.DreamDataConsistency, tiny_vae, y, operator="sr_bicubic", scale=4, blur_sigma=3.0,
                  kernel_size=0, motion_angle=0.0, strength=1.0, sigma_y=0.01, mu=1e-4, preset="restore", solver="auto",
                  cg_iters=10, dps=0.0, degradation=deg)
    out = _sample(N, model, cond, latent, steps=1, regs=regs)
    plain = _sample(N, model, cond, latent, steps=1)
    assert out.shape == latent["samples"].shape and torch.isfinite(out).all()
    assert float((out - plain).abs().max()) > 1e-3


def test_dps_backprops_through_an_inference_mode_model(N, sd15, tiny_vae):
    """The checkpoint's weights are inference tensors (loaded under inference_mode, as in ComfyUI):
    DPS must run through the compat layer's deep copies, and change the result."""
    from tools.tiny_models import fake_conditioning
    restoration = N.restoration
    model = sd15[0]
    assert next(model.model.diffusion_model.parameters()).is_inference()
    null = fake_conditioning(0)
    with torch.inference_mode():
        latent = {"samples": tiny_vae.encode(_image(seed=1))}
    y, deg, _ = run(restoration.DreamDegrade, _image(seed=1), operator="colorization", scale=4, blur_sigma=1.0,
                    kernel_size=0, motion_angle=0.0, sigma_y=0.0, seed=0)
    outs = []
    for dps in (0.0, 1.0):
        (regs,) = run(restoration.DreamDataConsistency, tiny_vae, y, operator="colorization", scale=4, blur_sigma=3.0,
                      kernel_size=0, motion_angle=0.0, strength=1.0, sigma_y=0.0, mu=1e-4, preset="paper",
                      solver="auto", cg_iters=10, dps=dps, degradation=deg)
        outs.append(_sample(N, model, null, latent, steps=3, regs=regs))
    assert all(torch.isfinite(o).all() for o in outs)
    assert float((outs[0] - outs[1]).abs().max()) > 1e-4


def test_two_masks_with_their_own_prompts(N, tiny_vae):
    from tools.tiny_models import fake_conditioning, tiny_model
    restoration = N.restoration
    model = tiny_model("eps")
    null, a, b = fake_conditioning(0), fake_conditioning(1), fake_conditioning(2)
    m1, m2 = torch.zeros(1, 32, 32), torch.zeros(1, 32, 32)
    m1[:, 4:12, 4:28] = 1
    m2[:, 18:26, 8:24] = 1
    y, deg, initial = run(restoration.DreamDegrade, _image(), operator="inpainting", scale=4, blur_sigma=1.0,
                          kernel_size=0, motion_angle=0.0, sigma_y=0.01, seed=0, mask=torch.maximum(m1, m2))
    with torch.inference_mode():
        latent = {"samples": tiny_vae.encode(initial)}
    (dc,) = run(restoration.DreamDataConsistency, tiny_vae, y, operator="inpainting", scale=4, blur_sigma=3.0,
                kernel_size=0, motion_angle=0.0, strength=1.0, sigma_y=0.01, mu=1e-4, preset="restore", solver="auto",
                cg_iters=10, dps=0.0, degradation=deg)
    (two,) = run(restoration.DreamMaskInpaint, m1, 1.0, "restore", 2, "average", 1.0, target=a, mask_2=m2,
                 target_2=b, regularizers=dc)
    (swapped,) = run(restoration.DreamMaskInpaint, m1, 1.0, "restore", 2, "average", 1.0, target=b, mask_2=m2,
                     target_2=a, regularizers=dc)
    assert len(two) == 2 and two[1].core.predictions() == ("target", "target_2")
    out_two = _sample(N, model, null, latent, steps=2, regs=two)
    out_swapped = _sample(N, model, null, latent, steps=2, regs=swapped)
    assert torch.isfinite(out_two).all()
    assert float((out_two - out_swapped).abs().max()) > 1e-4         # each region reads its own prompt


# ----------------------------------------------------------------------------- bad inputs
def test_bad_inputs_give_clear_errors(N, tiny_vae):
    restoration, common = N.restoration, N.common
    InputError = common.InputError
    img = _image()
    zero = torch.zeros(1, 32, 32)
    mask = torch.zeros(1, 32, 32)
    mask[:, :8] = 1
    with pytest.raises(InputError, match="all zero"):
        run(restoration.DreamMaskInpaint, zero, 1.0, "paper", 0, "average", 1.0)
    with pytest.raises(InputError, match="resize the mask"):
        run(restoration.DreamMaskInpaint, torch.ones(1, 40, 32), 1.0, "paper", 0, "average", 1.0,
            source={"samples": torch.zeros(1, 4, 4, 4)})
    with pytest.raises(InputError, match="all masks must have the image's size"):
        run(restoration.DreamMaskInpaint, mask, 1.0, "paper", 0, "average", 1.0, mask_2=torch.ones(1, 16, 16))
    with pytest.raises(InputError, match="'target_3' is connected but 'mask_3' is not"):
        run(restoration.DreamMaskInpaint, mask, 1.0, "paper", 0, "average", 1.0, target_3=[[torch.zeros(1, 1, 768), {}]])
    with pytest.raises(InputError, match="multiples of 4"):
        run(restoration.DreamDegrade, _image(30), operator="sr_bicubic", scale=4, blur_sigma=1.0, kernel_size=0,
            motion_angle=0.0, sigma_y=0.01, seed=0)
    with pytest.raises(InputError, match="needs a mask"):
        run(restoration.DreamDegrade, img, operator="inpainting", scale=4, blur_sigma=1.0, kernel_size=0,
            motion_angle=0.0, sigma_y=0.01, seed=0)
    with pytest.raises(InputError, match="mask is 16x16 pixels but the image is 32x32"):
        run(restoration.DreamDegrade, img, operator="inpainting", scale=4, blur_sigma=1.0, kernel_size=0,
            motion_angle=0.0, sigma_y=0.01, seed=0, mask=torch.ones(1, 16, 16))
    with pytest.raises(InputError, match="all zero"):
        run(restoration.DreamDegrade, img, operator="inpainting", scale=4, blur_sigma=1.0, kernel_size=0,
            motion_angle=0.0, sigma_y=0.01, seed=0, mask=zero)
    nan = img.clone()
    nan[0, 3, 3, 0] = float("nan")
    dc_args = dict(operator="sr_bicubic", scale=4, blur_sigma=3.0, kernel_size=0, motion_angle=0.0, strength=1.0,
                   sigma_y=0.01, mu=1e-4, preset="restore", solver="auto", cg_iters=10, dps=0.0)
    with pytest.raises(InputError, match="NaN"):
        run(restoration.DreamDataConsistency, tiny_vae, nan, **dc_args)
    with pytest.raises(InputError, match="not a valid VAE"):
        run(restoration.DreamDataConsistency, object(), img, **dc_args)
    y, deg, _ = run(restoration.DreamDegrade, img, operator="sr_bicubic", scale=4, blur_sigma=1.0, kernel_size=0,
                    motion_angle=0.0, sigma_y=0.01, seed=0)
    with pytest.raises(InputError, match="degradation makes 8x8 measurements"):
        run(restoration.DreamDataConsistency, tiny_vae, img, **dc_args, degradation=deg)
    with pytest.raises(InputError, match="mask is 16x16 pixels but the image is 32x32"):
        run(restoration.DreamDataConsistency, tiny_vae, img, **dict(dc_args, operator="inpainting"),
            mask=torch.ones(1, 16, 16))
    with pytest.raises(InputError, match="not a multiple of the VAE's factor 8"):
        run(restoration.DreamDataConsistency, tiny_vae, _image(13), **dict(dc_args, operator="sr_avgpool", scale=2))
    # a measurement that fits the operator but not the sampled latent: refused while sampling
    from tools.tiny_models import fake_conditioning, tiny_model
    (regs,) = run(restoration.DreamDataConsistency, tiny_vae, y, **dc_args, degradation=deg)   # a 32x32 image
    with pytest.raises(O.OperatorError, match="does not fit the sr_bicubic x4 operator"):
        _sample(N, tiny_model("eps"), fake_conditioning(0), {"samples": torch.zeros(1, 4, 8, 8)}, steps=1, regs=regs)


def test_validate_inputs_checks_ranges_and_combos(N):
    restoration = N.restoration
    DC, DG, MI = restoration.DreamDataConsistency, restoration.DreamDegrade, restoration.DreamMaskInpaint
    assert DC.validate_inputs() is True and DG.validate_inputs() is True and MI.validate_inputs() is True
    assert "scale must be one of" in DC.validate_inputs(operator="sr_bicubic", scale=3)
    assert DC.validate_inputs(operator="deblur_gauss", scale=3) is True
    assert "operator: expected one of" in DC.validate_inputs(operator="denoise")
    assert "sigma_y" in DC.validate_inputs(sigma_y=-0.1)
    assert "mu" in DC.validate_inputs(mu=0.0)
    assert "odd" in DG.validate_inputs(operator="deblur_uniform", kernel_size=4)
    assert "seed" in DG.validate_inputs(seed=-1)
    assert "strength" in MI.validate_inputs(strength=-1.0)
    assert "feather" in MI.validate_inputs(feather=2.5)


def test_schemas_follow_pack_conventions(N):
    restoration = N.restoration
    assert [n.define_schema().node_id for n in restoration.NODES] == ["DreamMaskInpaint", "DreamDataConsistency",
                                                                 "DreamDegrade"]
    for node in restoration.NODES:
        s = node.define_schema()
        assert s.node_id.startswith("Dream") and s.category.startswith("DreamSampler/") and s.description
        for inp in s.inputs:
            assert inp.tooltip, f"{s.node_id}.{inp.id} has no tooltip"
    dps = next(i for i in restoration.DreamDataConsistency.define_schema().inputs if i.id == "dps")
    assert "backward" in dps.tooltip and "memory" in dps.tooltip
