"""Dream CSD Edit inside the real (in-process) ComfyUI: panorama and frames on the tiny SD1.5 checkpoint,
odd sizes, tiled VAE, InstructPix2Pix's three-way guidance and image condition, validation, progress with
previews, interruption."""
import pytest
import torch

from support.inprocess import run
from tools.tiny_models import UNET_CONFIG

pytestmark = pytest.mark.usefixtures("one_thread")




@pytest.fixture(scope="module")
def prompts(sd15):
    import nodes as core
    _, clip, _ = sd15
    with torch.inference_mode():
        enc = lambda t: core.CLIPTextEncode().encode(clip, t)[0]
        return enc("a watercolor painting"), enc(""), enc("a photo")


def image(b, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, h // 4 + 1, w // 4 + 1, 3, generator=g)
    img = torch.nn.functional.interpolate(base.movedim(-1, 1), size=(h, w), mode="bilinear").movedim(1, -1)
    return (img + 0.05 * torch.rand(b, h, w, 3, generator=g)).clamp(0, 1)


DEFAULTS = dict(mode="panorama", seed=0, iterations=3, lr=2.0, lr_schedule="step", text_cfg=7.5, image_cfg=5.0,
                particles=3, window=16, stride=8, t_min=0.02, t_max=0.5, svgd=True, kernel_feature="noisy",
                vae_tile_size=0)


def edit(N, sd15, prompts, img, source=True, **kw):
    """DreamCSDEdit on the tiny SD1.5 checkpoint with DEFAULTS, overridden by ``kw``."""
    model, _, vae = sd15
    target, neg, src = prompts
    return run(N.csd.DreamCSDEdit, model, vae, img, target, neg, source=src if source else None, **dict(DEFAULTS, **kw))


def test_panorama_odd_size_is_padded_deterministic_and_lr0_keeps_the_source(N, sd15, prompts):
    _, _, vae = sd15
    img = image(1, 38, 66)                                    # not multiples of 8: padded, cropped back
    out, lat = edit(N, sd15, prompts, img)
    assert out.shape == (1, 38, 66, 3) and torch.isfinite(out).all()
    assert lat["samples"].shape == (1, 4, 5, 9)              # padded 40 x 72: windows 2 x 2 latent, stride 1
    again, lat2 = edit(N, sd15, prompts, img)
    assert torch.equal(lat["samples"], lat2["samples"])
    keep, lat0 = edit(N, sd15, prompts, img, lr=0.0)
    with torch.inference_mode():
        from dreamsampler_pack.nodes.csd import pad_to_multiple
        enc = vae.encode(pad_to_multiple(img, 8))
    assert torch.allclose(lat0["samples"], enc, atol=1e-5)   # process_latent_in/out round trip only
    assert float((lat["samples"] - enc).abs().max()) > 1e-3  # lr > 0 edits


def test_frames_mode_edits_every_frame_of_a_batch(N, sd15, prompts):
    img = image(3, 24, 24, seed=2)
    out, lat = edit(N, sd15, prompts, img, mode="frames", particles=2, iterations=4, source=False)
    assert out.shape == (3, 24, 24, 3) and torch.isfinite(out).all()
    assert lat["samples"].shape == (3, 4, 3, 3)
    _, lat0 = edit(N, sd15, prompts, img, mode="frames", particles=2, iterations=4, source=False, lr=0.0)
    moved = (lat["samples"] - lat0["samples"]).flatten(1).abs().amax(1)
    assert bool((moved > 1e-4).all()), moved                  # each frame drawn at least once in 4 draws of 2


def test_tiled_vae_is_used_for_large_images(N, sd15, prompts, monkeypatch):
    _, _, vae = sd15
    calls = []
    for name in ("encode_tiled", "decode_tiled"):
        orig = getattr(vae, name)
        monkeypatch.setattr(vae, name, lambda *a, _o=orig, _n=name, **k: calls.append(_n) or _o(*a, **k))
    out, _ = edit(N, sd15, prompts, image(1, 24, 80), vae_tile_size=64, iterations=1)
    assert calls == ["encode_tiled", "decode_tiled"] and out.shape == (1, 24, 80, 3)
    calls.clear()
    edit(N, sd15, prompts, image(1, 24, 32), vae_tile_size=64, iterations=1)
    assert calls == []                                        # smaller than the tile: plain VAE


def test_bad_inputs_are_clear_errors(N, sd15, prompts):
    v = N.csd.DreamCSDEdit.validate_inputs
    assert v() is True
    assert "stride" in v(window=64, stride=128)
    assert "t_min" in v(t_min=0.6, t_max=0.5)
    assert "iterations must be at least 1" in v(iterations=0)
    assert "vae_tile_size" in v(vae_tile_size=32)
    assert "lr must be at most" in v(lr=1000.0)
    from dreamsampler_pack.nodes.common import InputError
    with pytest.raises(InputError, match="panorama mode edits one large image"):
        edit(N, sd15, prompts, image(2, 32, 32))
    with pytest.raises(InputError, match="IMAGE"):
        edit(N, sd15, prompts, torch.zeros(1, 32, 32))
    with pytest.raises(InputError, match="NaN"):
        edit(N, sd15, prompts, torch.full((1, 32, 32, 3), float("nan")))


def test_progress_with_previews_and_interrupt(N, sd15, prompts):
    import comfy.model_management as mm
    import comfy.utils
    import latent_preview
    from comfy.cli_args import LatentPreviewMethod
    seen = []
    old_hook, old_method = comfy.utils.PROGRESS_BAR_HOOK, latent_preview.args.preview_method
    comfy.utils.set_progress_bar_global_hook(lambda v, total, preview, node_id=None: seen.append((v, total, preview)))
    latent_preview.args.preview_method = LatentPreviewMethod.Latent2RGB
    try:
        edit(N, sd15, prompts, image(1, 16, 32), iterations=3)
        mm.interrupt_current_processing(True)
        with pytest.raises(mm.InterruptProcessingException):
            edit(N, sd15, prompts, image(1, 16, 32), iterations=3)
    finally:
        mm.interrupt_current_processing(False)
        comfy.utils.set_progress_bar_global_hook(old_hook)
        latent_preview.args.preview_method = old_method
    steps = [(v, t) for v, t, p in seen if t == 3]
    assert steps[:3] == [(1, 3), (2, 3), (3, 3)]
    assert all(p is not None for v, t, p in seen[:3])         # a latent preview each iteration


# ----------------------------------------------------------------------------- InstructPix2Pix
class _FakeIP2PNet(torch.nn.Module):
    """eps = 0.5 * image_condition + context[0, 0]: each chunk's prediction is known by hand."""

    def __init__(self):
        super().__init__()
        self.dtype = torch.float32

    def forward(self, xc, t, context=None, **kw):
        assert xc.shape[1] == 8
        return 0.5 * xc[:, 4:] + context[:, 0, 0].reshape(-1, 1, 1, 1)


def fake_ip2p_model():
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models
    cfg = dict(UNET_CONFIG, in_channels=8, disable_unet_model_creation=True)
    mc = comfy.supported_models.SD15_instructpix2pix(cfg)
    base = comfy.model_base.SD15_instructpix2pix(mc, device="cpu")
    base.diffusion_model = _FakeIP2PNet()
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def text(value):
    c = torch.zeros(1, 2, 768)
    c[0, :, 0] = value
    return [[c, {}]]


@pytest.mark.parametrize("with_source", [False, True])
def test_ip2p_three_way_guidance_uses_the_source_image_and_zero_for_none(pack, with_source):
    from dreamsampler_pack.nodes import host as C
    from dreamsampler_pack.nodes.csd import csd_guider
    model = fake_ip2p_model()
    assert C.csd_model_kind(model) == "ip2p"
    s_t, s_i, a, b = 7.5, 1.5, 0.3, -0.2
    src = torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(0))          # VAE space
    got = {}

    def body(run):
        x = run.latent
        assert torch.allclose(x, src * 0.18215)                  # the run sees model space
        g = torch.Generator().manual_seed(1)
        x_t, xs_t = torch.randn(x.shape, generator=g), torch.randn(x.shape, generator=g)
        sigma = torch.tensor(2.0)
        pred = (run.model(x_t, sigma, image=x), run.branches["source"](xs_t, sigma, image=x))
        got.update(x_t=x_t, xs_t=xs_t, sigma=sigma, pred=pred)
        run.progress(x, x)
        return x, None

    guider = csd_guider(model, text(a), text(0.0), text(b) if with_source else None, s_t, s_i)
    with torch.inference_mode():
        out, _ = C.run_pipeline(guider, C.CoreSampler(body, 1), torch.tensor([3.0, 0.1]), src)
    assert torch.allclose(out, src, atol=1e-6)
    x0_t, x0_s = got["pred"]
    img = src                                                   # image condition = the SOURCE latent, VAE space
    # none: 0; img: 0.5 img; text: 0.5 img + a   ->   eps = s_I 0.5 img + s_T a
    eps_t = s_i * 0.5 * img + s_t * a
    eps_s = s_i * 0.5 * img + (s_t * b if with_source else 0.0)
    assert torch.allclose(x0_t, got["x_t"] - 2.0 * eps_t, atol=1e-5)
    assert torch.allclose(x0_s, got["xs_t"] - 2.0 * eps_s, atol=1e-5)


def test_ip2p_model_runs_through_the_node(N, pack, sd15):
    _, _, vae = sd15
    model = fake_ip2p_model()
    # conds from core InstructPixToPixConditioning carry a whole-image concat latent: replaced per window
    ip2p_target = [[text(0.3)[0][0], {"concat_latent_image": torch.ones(1, 4, 2, 4)}]]
    with torch.inference_mode():
        out, lat = N.csd.DreamCSDEdit.execute(model, vae, image(1, 16, 32), ip2p_target, text(0.0),
                                              **dict(DEFAULTS, iterations=2)).result
    assert out.shape == (1, 16, 32, 3) and torch.isfinite(lat["samples"]).all()
