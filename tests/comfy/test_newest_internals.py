"""Newest ComfyUI internals that changed under the pack (issue 25, section 2), in-process on the
pinned 0.3.75: where 0.3.75 shows the behaviour the test runs it, where it cannot, the newest shape
is mimicked from its source (COMPATIBILITY.md, "Newest internals")."""
from __future__ import annotations

import dataclasses
import types

import pytest


@pytest.fixture(scope="module")
def common(pack):
    return pack.nodes.common


# ----------------------------------------------------------------------------- io.Schema's shape
def test_schema_fields_of_a_dataclass_and_of_a_public_wrapper(common):
    """``supported_fields`` reads what the Schema constructor takes whether ``io.Schema`` is the
    ``_io`` dataclass (0.3.75) or a public wrapper class that is not a dataclass (the newest
    ``io`` is ``_io_public``): dataclasses.fields() raises on the latter."""
    from comfy_api.latest import io
    fields = {"node_id": "X", "display_name": "x", "search_aliases": ["a b"]}
    has = {f.name for f in dataclasses.fields(io.Schema)}
    assert common.supported_fields(io.Schema, fields) == (
        fields if "search_aliases" in has else {"node_id": "X", "display_name": "x"})

    class PublicSchema:                  # explicit parameters, search_aliases among them
        def __init__(self, node_id, display_name=None, *, search_aliases=None):
            pass

    class OldPublicSchema:               # explicit parameters, no search_aliases
        def __init__(self, node_id, display_name=None):
            pass

    class Forwarding(io.Schema):         # **kwargs over the dataclass it derives from
        def __init__(self, **kwargs):
            super().__init__(**kwargs)

    class Opaque:                        # **kwargs and nothing to read: newer fields left out
        def __init__(self, **kwargs):
            pass

    assert common.supported_fields(PublicSchema, fields) == fields
    assert common.supported_fields(OldPublicSchema, fields) == {"node_id": "X", "display_name": "x"}
    assert common.supported_fields(Forwarding, fields) == common.supported_fields(io.Schema, fields)
    assert common.supported_fields(Opaque, fields) == {"node_id": "X", "display_name": "x"}


def test_every_node_defines_its_schema_through_a_public_schema_wrapper(pack, common, monkeypatch):
    """With ``io.Schema`` a wrapper class (not the dataclass) every node still defines its schema,
    and the wrapper gets the real Schema's fields."""
    from comfy_api.latest import io
    real = io.Schema
    made = []

    class PublicSchema:
        def __init__(self, node_id, display_name=None, category="", inputs=None, outputs=None, hidden=None,
                     description="", is_output_node=False, is_deprecated=False, is_experimental=False,
                     is_api_node=False, not_idempotent=False, enable_expand=False):
            args = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
            args = {k: v for k, v in args.items() if k in {f.name for f in dataclasses.fields(real)}}
            self.schema = real(**args)
            made.append(node_id)

    monkeypatch.setattr(common, "io", types.SimpleNamespace(**{**vars(io), "Schema": PublicSchema}))
    for cls in pack.nodes.NODE_LIST:
        out = cls.define_schema()
        assert isinstance(out, PublicSchema) and out.schema.node_id == made[-1]
    assert len(made) == len(pack.nodes.NODE_LIST)


# ----------------------------------------------------------------------------- core SVG type
SVG_TEXT = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="2" height="2"/></svg>'


def _svg_value(pack):
    value = pack.nodes.host.core_svg([SVG_TEXT])
    assert [b.getvalue().decode() for b in value.data] == [SVG_TEXT]
    return value


class _Svg:
    """core's SVG value (0.3.75's comfy_extras.nodes_images.SVG, the newest io.SVG.Type): .data"""

    def __init__(self, data):
        self.data = data


def _nodes_images(monkeypatch, svg_class):
    """``comfy_extras.nodes_images`` as the server imports it (in-process it cannot import: it needs
    the server), holding ``svg_class`` as ``SVG``."""
    import sys
    module = types.ModuleType("comfy_extras.nodes_images")
    module.SVG = svg_class
    monkeypatch.setitem(sys.modules, "comfy_extras.nodes_images", module)


def test_core_svg_skips_0375s_any(pack, monkeypatch):
    """0.3.75: ``io.SVG.Type`` is ``typing.Any`` (a class since Python 3.11, but not core's SVG): the
    pack takes ``comfy_extras.nodes_images.SVG`` (through the real server: the shipped SVG workflows'
    Save SVG nodes, tests/e2e/test_server.py)."""
    import typing
    from comfy_api.latest import io
    assert io.SVG.Type is typing.Any
    _nodes_images(monkeypatch, _Svg)
    assert type(_svg_value(pack)) is _Svg


def test_core_svg_prefers_the_io_svg_type_over_the_temporary_alias(pack, monkeypatch):
    """The newest ComfyUI defines the class as ``io.SVG.Type`` and keeps ``nodes_images.SVG`` as a
    temporary alias: the pack takes ``io.SVG.Type`` first, so it keeps working once the alias goes
    (here the alias is gone: a leftover class that is not core's type any more)."""
    from comfy_api.latest import io
    monkeypatch.setattr(io.SVG, "Type", _Svg)
    _nodes_images(monkeypatch, type("Leftover", (), {"__init__": lambda self, data: None}))
    assert type(_svg_value(pack)) is _Svg


def test_core_svg_falls_back_to_the_stand_in(pack, monkeypatch):
    """Neither a class in ``io.SVG.Type`` nor an importable ``comfy_extras.nodes_images``: the
    stand-in, with the same payload."""
    import sys
    monkeypatch.setitem(sys.modules, "comfy_extras.nodes_images", None)
    assert type(_svg_value(pack)).__name__ == "_SVGData"


# ----------------------------------------------------------------------------- newest families
@pytest.fixture(scope="module")
def rgba_vae(pack):
    """A VAE shaped as Qwen-Image 2.1's (mimicked: 0.3.75 has no such VAE): RGBA pixels (4 output
    channels), 64 latent channels, 16x downscale; ComfyUI's own VAE class over a small seeded
    AutoencoderKL with those shapes."""
    import torch
    import comfy.ldm.models.autoencoder as ae
    import comfy.sd
    from tools.tiny_models import seeded_init_
    dd = {"double_z": True, "z_channels": 64, "resolution": 32, "in_channels": 4, "out_ch": 4, "ch": 32,
          "ch_mult": [1, 1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
    m = seeded_init_(ae.AutoencoderKL(ddconfig=dd, embed_dim=64), 13)
    with torch.inference_mode():
        vae = comfy.sd.VAE(sd=m.state_dict(), config={"params": {"embed_dim": 64, "ddconfig": dd}})
    vae.output_channels, vae.latent_channels = 4, 64
    vae.downscale_ratio = vae.upscale_ratio = 16
    return vae


def test_rgba_vae_is_an_image_vae_with_opaque_alpha(pack, rgba_vae):
    """Qwen-Image 2.1's RGBA VAE passes ``check_image_vae``; the pack's codec hands it RGB with an
    opaque alpha and returns RGB: ComfyUI's own encode of the RGBA image, the same through the
    differentiable copy, and 3-channel decodes (plain and with gradients)."""
    import torch
    host = pack.nodes.host
    host.check_image_vae(rgba_vae, "test")
    codec = host.VAECodec(rgba_vae, "test")
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.inference_mode():
        rgba = torch.cat([(x + 1) / 2, torch.ones_like(x[:, :1])], 1).movedim(1, -1)
        ref = rgba_vae.encode(rgba)
        z = codec.encode(x)
        assert z.shape == (1, 64, 2, 2) and torch.allclose(z, ref.to(z), atol=1e-5), float((z - ref).abs().max())
        assert codec.decode(z).shape == (1, 3, 32, 32)
        assert host.vae_decode(rgba_vae, z).shape == (1, 32, 32, 3)
        assert torch.allclose(host.vae_encode(rgba_vae, ((x + 1) / 2).movedim(1, -1)), ref, atol=1e-5)
    with torch.inference_mode(False), torch.enable_grad():
        xg = x.clone().requires_grad_(True)
        zg = codec.encode(xg)
        (g,) = torch.autograd.grad(zg.square().sum(), xg)
        assert torch.allclose(zg.detach(), ref, atol=1e-4) and torch.isfinite(g).all()
        zd = z.clone().requires_grad_(True)
        out = codec.decode_grad(zd)
        assert out.shape == (1, 3, 32, 32) and torch.autograd.grad(out.sum(), zd)[0].abs().sum() > 0
    codec.release()


def test_packed_audio_video_latent_is_refused_naming_the_model(pack):
    """LTX-2's audio-video LATENT is a packed NestedTensor (ComfyUI's own class) of a video and an
    audio stream: the nodes refuse it with an InputError naming the model type and what to connect,
    instead of failing inside the math."""
    import torch
    from comfy.nested_tensor import NestedTensor
    from support.inprocess import run
    from tools.tiny_models import fake_conditioning, tiny_model
    sampling, common = pack.nodes.sampling, pack.nodes.common
    model, null = tiny_model("eps", seed=1), fake_conditioning(0)
    packed = {"samples": NestedTensor([torch.zeros(1, 4, 2, 8, 8), torch.zeros(1, 8, 5, 16)])}
    with pytest.raises(common.InputError, match=r"packed audio-video latent \(2 streams.*this model \(SD15\).*"
                                                r"connect the video latent"):
        run(sampling.DreamDDIMInversion, model, null, packed, steps=2, scheduler="ddim_uniform", denoise=1.0,
            refine_steps=0)
    with pytest.raises(common.InputError, match="packed audio-video latent"):
        run(sampling.DreamSampler, model, seed=0, steps=2, cfg=1.0, scheduler="ddim_uniform", positive=null,
            negative=null, latent_image=packed, denoise=1.0, eta=0.0, eta_schedule="constant")
    with pytest.raises(common.InputError, match="packed audio-video latent"):
        common.check_latent(packed)
