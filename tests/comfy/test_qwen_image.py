"""Qwen-Image inside the real (in-process) ComfyUI, on the tiny model of the family matrix
(tests/support/families/qwen_image.py): its VAE is Wan 2.1's, so an image is a one-frame video latent
[B, 16, 1, h, w] with Wan 2.1's per-channel mean / std.  The pack's VAE codec and its image encode /
decode map each image alone (ComfyUI's VAE Encode takes an IMAGE batch through a video VAE as one
video's frames), with and without gradients; the image-only nodes (score distillation, CSD Edit) run;
gradients pass the latent format (DPS); and unsampling (inversion, then the sampler) gives the image
back instead of the black images users report with other unsamplers.
"""
import pytest
import torch

SIZE = 64

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def qwen(pack):
    """(MODEL, VAE, positive, negative): the qwen_image family's VAE file through ComfyUI's VAE
    loader and its in-server model and Qwen2.5-VL-shaped conditioning, built here."""
    import comfy.sd
    import comfy.utils
    from support.families import qwen_image
    with torch.inference_mode():
        vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(qwen_image.FAMILY.files()["vae"][0])))
        model, pos, neg, _, _ = qwen_image.FAMILY.build()
    return model, vae, pos, neg


def images(b, h=SIZE, w=SIZE, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(b, 3, h // 8, w // 8, generator=g)
    return torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear").movedim(1, -1).clamp(0, 1)


def test_codec_maps_each_image_as_a_one_frame_video(N, qwen):
    _, vae = qwen[:2]
    host = N.host
    codec = host.VAECodec(vae, "score distillation")
    assert codec.one_frame and not codec.video and codec.frames(3) == 3
    imgs = images(2)
    with torch.inference_mode():
        each = torch.cat([vae.encode(imgs[i:i + 1]) for i in range(2)])
        assert tuple(each.shape) == (2, 16, 1, SIZE // 8, SIZE // 8)
        assert vae.encode(imgs).shape[0] == 1              # ComfyUI: the batch is one video's frames
        z = codec.encode(imgs.movedim(-1, 1) * 2 - 1)
        assert torch.allclose(z, each, atol=1e-5)
        assert torch.allclose(host.vae_encode(vae, imgs), each, atol=1e-5)
        px = codec.decode(each)
        assert tuple(px.shape) == (2, 3, SIZE, SIZE)
        assert torch.allclose(px, vae.decode(each)[:, 0].movedim(-1, 1) * 2 - 1)
        assert torch.allclose(host.vae_decode(vae, each), vae.decode(each)[:, 0])
    # the gradient paths (score distillation's latent fit, DPS) through a copy of the VAE
    x = (imgs.movedim(-1, 1) * 2 - 1).clone().requires_grad_(True)
    with torch.enable_grad():
        zg = codec.encode(x)
        zg.square().sum().backward()
    assert zg.shape == each.shape and torch.allclose(zg.detach(), each, atol=1e-4)
    assert torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0
    pg = codec.decode_grad(each)
    assert tuple(pg.shape) == (2, 3, SIZE, SIZE) and torch.allclose(pg.clamp(-1, 1), px, atol=1e-4)
    codec.release()
    with pytest.raises(ValueError, match="one-frame latent"):
        codec.decode(torch.zeros(1, 16, 2, SIZE // 8, SIZE // 8))


def test_image_only_nodes_run_on_qwen_image(N, qwen):
    model, vae, pos, neg = qwen
    img = images(1, SIZE, SIZE + 32)
    # score distillation: an image generator fit in latent space (gradients through the VAE copy)
    with torch.inference_mode():
        d = N.distill
        _, out_img, out_lat, _ = d.run_dream_distill(model, pos, neg, vae, d.raster_generator("image", img, 0.05),
                                                     seed=0, iterations=2, inner_steps=2, cfg=1.0, scheduler="simple",
                                                     denoise=1.0, eta=0.0, fit_space="latent")
    assert tuple(out_lat["samples"].shape) == (1, 16, 1, SIZE // 8, (SIZE + 32) // 8)
    assert tuple(out_img.shape) == tuple(img.shape) and torch.isfinite(out_img).all()
    assert not torch.allclose(out_img, img)
    # CSD Edit: panorama windows on the one-frame latent, and frames as separate images
    csd = N.csd.DreamCSDEdit
    args = dict(seed=0, iterations=2, lr=2.0, lr_schedule="step", text_cfg=2.0, image_cfg=1.0, particles=0,
                window=32, stride=16, t_min=0.02, t_max=0.5, svgd=True, kernel_feature="noisy", vae_tile_size=0)
    with torch.inference_mode():
        pano, lat = csd.execute(model, vae, img, pos, neg, mode="panorama", **args).result
        frames, flat = csd.execute(model, vae, images(2), pos, neg, mode="frames", **args).result
        src = N.host.vae_encode(vae, img)
    assert tuple(lat["samples"].shape) == tuple(src.shape) and not torch.allclose(lat["samples"], src)
    assert tuple(pano.shape) == tuple(img.shape) and torch.isfinite(pano).all()
    assert tuple(flat["samples"].shape) == (2, 16, 1, SIZE // 8, SIZE // 8)
    assert tuple(frames.shape) == (2, SIZE, SIZE, 3)


def test_dps_gradients_pass_qwen_images_latent_format(N, qwen, pack):
    """DPS differentiates through the model's process_latent_out: Qwen-Image's per-channel mean / std
    were built in inference mode as the model loaded (host.differentiable)."""
    from dreamsampler_pack.nodes import restoration, sampling
    model, vae, pos, neg = qwen
    img = images(1)
    with torch.inference_mode():
        z = N.host.vae_encode(vae, img)
        meas, _, _ = restoration.DreamDegrade.execute(img, operator="sr_bicubic", scale=2, blur_sigma=3.0,
                                                      kernel_size=0, motion_angle=0.0, sigma_y=0.0, seed=0).result
        outs = []
        for dps in (0.0, 1.0):
            (regs,) = restoration.DreamDataConsistency.execute(vae, meas, operator="sr_bicubic", scale=2,
                                                               blur_sigma=3.0, kernel_size=0, motion_angle=0.0,
                                                               strength=1.0, sigma_y=0.01, mu=1e-4, preset="paper",
                                                               solver="auto", cg_iters=10, dps=dps).result
            out, _ = sampling.DreamSampler.execute(model, seed=0, steps=3, cfg=1.0, scheduler="simple", positive=neg,
                                                   negative=neg, latent_image={"samples": z}, denoise=1.0, eta=0.0,
                                                   eta_schedule="constant",
                                                   regularizers=regs).result      # DPS on steps 1, 2
            outs.append(out["samples"])
    assert all(torch.isfinite(o).all() for o in outs) and not torch.allclose(outs[0], outs[1])


def test_unsampling_gives_the_image_back(N, qwen, pack):
    """Inversion (refined) then DreamSampler at shift 3.1 (ComfyUI's Qwen-Image template), and the same
    as SAMPLERs through SamplerCustomAdvanced, reconstruct the source; the decoded image is the
    source's, not black (a sampler that noise-scales the inverted latent by 1 - sigma = 0 at sigma = 1
    would start from the zero latent, Wan 2.1's mean colour)."""
    import comfy_extras.nodes_custom_sampler as cs
    import comfy_extras.nodes_model_advanced as ma
    from dreamsampler_pack.nodes import sampling
    model, vae, pos, neg = qwen
    img = images(1)
    with torch.inference_mode():
        m = ma.ModelSamplingAuraFlow().patch_aura(model, 3.1)[0]
        z = N.host.vae_encode(vae, img)
        (inv,) = sampling.DreamDDIMInversion.execute(m, neg, {"samples": z}, 10, "simple", 1.0, 2).result
        out, _ = sampling.DreamSampler.execute(m, seed=0, steps=10, cfg=1.0, scheduler="simple", positive=neg,
                                               negative=neg, latent_image=inv, denoise=1.0, eta=0.0,
                                               eta_schedule="constant").result
        (sigmas,) = cs.BasicScheduler.execute(m, "simple", 10, 1.0).result
        guider = cs.BasicGuider.execute(m, neg).result[0]
        noise = cs.DisableNoise.execute().result[0]
        inverted = cs.SamplerCustomAdvanced.execute(noise, guider, sampling.DreamInversionSampler.execute(2).result[0],
                                                    sigmas, {"samples": z}).result[0]
        custom = cs.SamplerCustomAdvanced.execute(noise, guider, sampling.DreamSamplerSelect.execute(0.0,
                                                  "constant").result[0], sigmas, inverted).result[0]
        want = vae.decode(z)
        backs = [vae.decode(r["samples"]) for r in (out, custom)]
    assert float((inv["samples"] - z).abs().mean()) > 0.1                   # inverted to noise
    for result, back in zip((out["samples"], custom["samples"]), backs):
        assert float((result - z).norm() / z.norm()) < 0.05
        assert float((back - want).abs().mean()) < 0.01 and float(back.mean()) > 0.2
