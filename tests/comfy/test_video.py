"""Video latents inside the real (in-process) ComfyUI: the tiny Wan 2.1 model and VAE of the family
matrix (tests/support/families/wan21.py; 5 frames of 32x32 px -> [1, 16, 2, 4, 4]) through the
pack's video VAE codec, Data Consistency frame by frame (and its DPS step), masks on 5-D latents, and the image-only
nodes taking each image of a batch as a one-frame video (not a batch of frames as one video)."""
import pytest
import torch

FRAMES, SIZE = 5, 32
LATENT = (1, 16, 2, SIZE // 8, SIZE // 8)


@pytest.fixture(scope="module")
def wan(pack):
    """(MODEL, VAE, positive, negative, alt_positive): the wan21 family's files through ComfyUI's own
    loaders (UNETLoader's and VAELoader's functions) and its UMT5-shaped conditioning."""
    import comfy.sd
    import comfy.utils
    from support.families import _wan, wan21
    paths = wan21.files()
    with torch.inference_mode():
        model = comfy.sd.load_diffusion_model(str(paths["diffusion_models"][0]))
        vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(paths["vae"][0])))
    return (model, vae) + tuple(_wan.prompts(13))


def run(node, *args, **kw):
    with torch.inference_mode():
        return node.execute(*args, **kw).result


def frames(n=FRAMES, size=SIZE, seed=0):
    """An IMAGE batch of n frames (a smooth moving gradient, so frames differ)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, size, size, 3, generator=g)
    return torch.cat([base.roll(k, dims=2) for k in range(n)]).clamp(0, 1)


def encode(vae, image):
    with torch.inference_mode():
        return vae.encode(image).clone()


def sample(N, model, pos, neg, latent, regs=None, steps=3):
    out, _ = run(N.sampling.DreamSampler, model, seed=0, steps=steps, cfg=1.0, scheduler="simple", positive=pos,
                 negative=neg, latent_image=latent, denoise=1.0, eta=0.0, eta_schedule="constant", regularizers=regs)
    return out["samples"]


def invert(N, model, neg, samples, steps=3):
    (inv,) = run(N.sampling.DreamDDIMInversion, model, neg, {"samples": samples}, steps=steps, scheduler="simple",
                 denoise=1.0, refine_steps=1)
    return inv


# ----------------------------------------------------------------------------- the codec
def test_video_codec_round_trips_frames_through_comfy_vae(N, wan):
    _, vae = wan[:2]
    host = N.host
    codec = host.VAECodec(vae, "data consistency", video=True)
    assert codec.video and codec.downscale() == 8 and codec.frames(5) == 5 and codec.frames(6) == 5
    z = encode(vae, frames())
    assert tuple(z.shape) == LATENT
    with torch.inference_mode():
        px = codec.decode(z)
        ref = vae.decode(z)                                   # [1, T, H, W, 3] in [0, 1]
        assert tuple(px.shape) == (1, 3, FRAMES, SIZE, SIZE)
        assert torch.allclose(px, ref.movedim(-1, 1) * 2 - 1)
        back = codec.encode(px)
        assert torch.allclose(back, encode(vae, ((px + 1) / 2).clamp(0, 1)[0].movedim(0, -1)), atol=1e-6)
        two = torch.cat([px, px.flip(2)])                     # a batch of two videos: each encoded as its frames
        z2 = codec.encode(two)
        assert tuple(z2.shape) == (2,) + LATENT[1:]
        assert torch.allclose(z2[:1], back, atol=1e-6) and not torch.allclose(z2[1], z2[0])
    with pytest.raises(ValueError, match="video VAE .*5-D latents.*shape \\(1, 16, 4, 4\\)"):
        codec.decode(z[:, :, 0])                              # a 4-D latent is not this VAE's
    image = host.VAECodec(vae, "score distillation")          # an image codec: each image a one-frame video
    assert image.one_frame and not image.video


# ----------------------------------------------------------------------------- data consistency
def test_data_consistency_measures_every_frame(N, wan):
    model, vae, pos, neg, _ = wan
    restoration, ops = N.restoration, N.core.operators
    image = frames()
    z = encode(vae, image)
    one = image[:1].expand(FRAMES, -1, -1, -1).contiguous()  # the first frame on every frame

    def dc(y, preset="restore", dps=0.0):
        return run(restoration.DreamDataConsistency, vae, y, operator="sr_bicubic", scale=2, blur_sigma=3.0,
                   kernel_size=0, motion_angle=0.0, strength=1.0, sigma_y=0.01, mu=1e-4, preset=preset, solver="auto",
                   cg_iters=10, dps=dps)[0]
    (meas, deg, _) = run(restoration.DreamDegrade, one, operator="sr_bicubic", scale=2, blur_sigma=3.0, kernel_size=0,
                         motion_angle=0.0, sigma_y=0.0, seed=0)
    (meas1, _, _) = run(restoration.DreamDegrade, one[:1], operator="sr_bicubic", scale=2, blur_sigma=3.0,
                        kernel_size=0, motion_angle=0.0, sigma_y=0.0, seed=0)
    assert tuple(meas.shape) == (FRAMES, SIZE // 2, SIZE // 2, 3)
    start = {"samples": z}
    plain = sample(N, model, neg, neg, start, steps=2)
    per_frame = sample(N, model, neg, neg, start, regs=dc(meas), steps=2)
    broadcast = sample(N, model, neg, neg, start, regs=dc(meas1), steps=2)     # one frame's measurement for all
    assert tuple(per_frame.shape) == LATENT and torch.isfinite(per_frame).all()
    assert not torch.allclose(per_frame, plain)
    assert torch.allclose(per_frame, broadcast, atol=1e-5)
    # DPS (backprop through the model and the video decoder) on the steps 'paper' leaves inactive
    paper = sample(N, model, neg, neg, start, regs=dc(meas, "paper"))
    dps = sample(N, model, neg, neg, start, regs=dc(meas, "paper", dps=1.0))
    assert torch.isfinite(dps).all() and not torch.allclose(dps, paper)
    with pytest.raises(N.common.InputError, match="6 frames.*encodes and decodes 5.*1, 5, 9"):
        dc(torch.cat([meas, meas[:1]]))
    # the core: a video's frames are solved one by one, exactly as a batch of images
    op = ops.make_operator("sr_avgpool", scale=2)
    g = torch.Generator().manual_seed(3)
    x_hat = torch.randn(2, 3, FRAMES, 8, 8, generator=g)
    y = torch.randn(FRAMES, 3, 4, 4, generator=g)
    reg = N.core.restoration.DataConsistency(op=op, y=y, sigma_y=0.05)
    flat = x_hat.movedim(2, 1).reshape(2 * FRAMES, 3, 8, 8)
    want = ops.prox(op, y.repeat(2, 1, 1, 1), flat, 1e-4, 0.05).reshape(2, FRAMES, 3, 8, 8).movedim(1, 2)
    assert torch.allclose(reg.solve(x_hat), want, atol=1e-6)
    with pytest.raises(ops.OperatorError, match="3 frames but the video has 5 frames"):
        N.core.restoration.DataConsistency(op=op, y=y[:3]).solve(x_hat)


# ----------------------------------------------------------------------------- masks
def test_masks_follow_the_video_frames(N, wan):
    common = N.common
    z = torch.zeros(2, 16, 2, 4, 4)
    m = torch.zeros(1, SIZE, SIZE)
    m[:, :, : SIZE // 2] = 1
    assert tuple(common.latent_mask(m, z).shape) == (1, 1, 1, 4, 4)            # one mask: every frame
    per_latent_frame = torch.stack([m[0], torch.flip(m[0], (1,))])
    lm = common.latent_mask(per_latent_frame, z)
    assert tuple(lm.shape) == (1, 1, 2, 4, 4) and torch.equal(lm[0, 0, 1], lm[0, 0, 0].flip(1))
    assert tuple(common.latent_mask(m.expand(FRAMES, -1, -1), z).shape) == (1, 1, 2, 4, 4)   # pixel frames
    with pytest.raises(common.InputError, match="no white"):
        common.latent_mask(torch.zeros(FRAMES, SIZE, SIZE), z)


def test_mask_inpaint_and_cycle_sde_keep_the_black_region_on_every_frame(N, wan):
    model, vae, pos, neg, alt = wan
    restoration, cycle = N.restoration, N.cycle
    z = encode(vae, frames())
    mask = torch.zeros(1, SIZE, SIZE)
    mask[:, :, : SIZE // 2] = 1                                   # left half editable: latent columns 0-1
    keep, edit = (..., slice(2, None)), (..., slice(0, 2))
    (regs,) = run(restoration.DreamMaskInpaint, mask, 1.0, "restore", 0, "average", 1.0, target=alt,
                  source={"samples": z})
    out = sample(N, model, neg, neg, invert(N, model, neg, z), regs=regs)
    assert tuple(out.shape) == LATENT
    assert float((out - z)[keep].abs().max()) < 1e-4
    assert float((out - z)[edit].abs().max()) > 1e-3
    (o,) = run(cycle.DreamCycleSDEEdit, model, source=neg, target=alt, negative=neg, latent_image={"samples": z},
               seed=0, steps=4, scheduler="simple", t0=0.7, stage2="cycle_sde", cfg=1.0, source_cfg=1.0, mask=mask)
    assert torch.allclose(o["samples"][keep], z[keep], atol=1e-5)
    assert float((o["samples"] - z)[edit].abs().max()) > 1e-3


# ----------------------------------------------------------------------------- shapes and refusals
def test_video_model_takes_an_image_latent_as_one_frame(N, wan):
    """ComfyUI's own convention (fix_empty_latent_channels): a 4-D latent on a 3-D latent format is one frame."""
    s = N.common.model_latent(wan[0], {"samples": torch.randn(1, 16, 4, 4)})
    assert tuple(s.shape) == (1, 16, 1, 4, 4)


def test_image_only_nodes_take_each_image_as_one_frame(N, wan):
    """CSD Edit, SDE-Drag and score distillation through a video VAE: an IMAGE batch is that many
    one-frame latents [B, 16, 1, h, w] (Qwen-Image's case, tests/comfy/test_qwen_image.py), never
    one video of B frames."""
    model, vae, pos, neg, _ = wan
    with torch.inference_mode():
        img, lat = run(N.csd.DreamCSDEdit, model, vae, frames(), target=pos, negative=neg, mode="frames", seed=0,
                       iterations=1, lr=0.5, lr_schedule="constant", text_cfg=7.5, image_cfg=5.0, particles=0,
                       window=512, stride=128, t_min=0.02, t_max=0.5, svgd=False, kernel_feature="noisy",
                       vae_tile_size=0)
        assert tuple(lat["samples"].shape) == (FRAMES, 16, 1, SIZE // 8, SIZE // 8)
        assert tuple(img.shape) == (FRAMES, SIZE, SIZE, 3)
        img, lat = run(N.drag.DreamSDEDrag, model, vae, frames(2, 64), positive=pos, negative=neg,
                       points='[{"x": 8, "y": 8}, {"x": 16, "y": 8}]', seed=0, steps=3, scheduler="simple", t0=0.6,
                       cfg=3.0, guidance_ramp="linear", alpha=1.1, beta=0.3, radius=5, step_size=2.0)
        assert tuple(lat["samples"].shape) == (2, 16, 1, 8, 8) and tuple(img.shape) == (2, 64, 64, 3)
        d = N.distill
        _, img, lat, _ = d.run_score_distill(model, pos, neg, vae, d.raster_generator("image", frames(1), 0.01),
                                             seed=0, iterations=1, inner_steps=1, cfg=1.0, max_t=1.0, min_t=0.02,
                                             fit_space="latent", weighting="sds")
        assert tuple(lat["samples"].shape) == (1, 16, 1, SIZE // 8, SIZE // 8)
        assert tuple(img.shape) == (1, SIZE, SIZE, 3)
