"""Gradient copies (nodes/host/vae.py ``grad_copy``) hold the weights ComfyUI's forward really uses,
whatever the load state, and never touch the shared model (issue 15, "Dynamic VRAM").

A LoRA-like weight patch on the MODEL and on the VAE must be in the DPS step (Dream Data
Consistency, dps > 0) and in the distillation's differentiable VAE encoder: the patched run equals a
run on a model whose weights have the patch baked in.  The same holds when ComfyUI offloads the
model mid-run (lowvram: weights restored to the unpatched originals, the patch applied at forward
time by ``LowVramPatch``), and the copy then holds the patched weights themselves, with none of
ComfyUI's per-module load state (the newest ComfyUI's dynamic VRAM keeps lazy weights and VBAR
handles there; see COMPATIBILITY.md).
"""
import pytest
import torch

from tools.tiny_models import fake_conditioning, seeded_init_, tiny_model

KEY = "diffusion_model.time_embed.0.weight"
STEPS = 3
VAE_KEYS = ("encoder.conv_in.weight", "decoder.conv_out.weight")


def _delta(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 0.3


def _models():
    """(patched, baked, plain): the tiny UNet with a weight patch, the same weights with the patch
    added to them, and the unpatched model (three separate networks, same seed)."""
    plain, baked = tiny_model("eps", seed=3), tiny_model("eps", seed=3)
    patched = tiny_model("eps", seed=3).clone()
    delta = _delta(baked.model.diffusion_model.time_embed[0].weight.shape, 1)
    assert patched.add_patches({KEY: ("diff", (delta,))}, 1.0) == [KEY]
    with torch.no_grad():
        baked.model.diffusion_model.time_embed[0].weight += delta
    return patched, baked, plain


def _vaes():
    """(patched, baked): a small AutoencoderKL as ComfyUI's VAE, with weight patches on the
    encoder's first and the decoder's last convolution / with them baked in."""
    import comfy.ldm.models.autoencoder as ae
    import comfy.sd
    dd = {"double_z": True, "z_channels": 4, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 32,
          "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
    sd = seeded_init_(ae.AutoencoderKL(ddconfig=dd, embed_dim=4), 11).state_dict()
    deltas = {k: _delta(sd[k].shape, 2 + i) for i, k in enumerate(VAE_KEYS)}
    baked_sd = {k: v + deltas[k] if k in deltas else v for k, v in sd.items()}
    config = {"params": {"embed_dim": 4, "ddconfig": dd}}
    with torch.inference_mode():
        patched, baked = comfy.sd.VAE(sd=sd, config=config), comfy.sd.VAE(sd=baked_sd, config=config)
    patched.patcher = patched.patcher.clone()
    assert sorted(patched.patcher.add_patches({k: ("diff", (d,)) for k, d in deltas.items()}, 1.0)) == sorted(VAE_KEYS)
    return patched, baked


def _offload_during_sampling(patcher):
    """Make ComfyUI offload every module of ``patcher`` once sampling has loaded it (as it does under
    memory pressure): weights back to the unpatched originals, patches applied at forward time."""
    import comfy.patcher_extension

    def offload(p):
        p.partially_unload(p.offload_device, memory_to_free=10 ** 12)
        assert p.model.model_lowvram
    patcher.add_callback(comfy.patcher_extension.CallbacksMP.ON_PRE_RUN, offload)


def _dps_sample(N, model, vae, seed=0):
    sampling, restoration = N.sampling, N.restoration
    image = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        latent = {"samples": vae.encode(image)}
        y, deg, _ = restoration.DreamDegrade.execute(image, operator="colorization", scale=4, blur_sigma=1.0,
                                                     kernel_size=0, motion_angle=0.0, sigma_y=0.0, seed=0).result
        (regs,) = restoration.DreamDataConsistency.execute(vae, y, operator="colorization", scale=4, blur_sigma=3.0,
                                                           kernel_size=0, motion_angle=0.0, strength=1.0, sigma_y=0.0,
                                                           mu=1e-4, preset="paper", solver="auto", cg_iters=10, dps=1.0,
                                                           degradation=deg).result
        null = fake_conditioning(0)
        out, _ = sampling.DreamSampler.execute(model, seed=0, steps=STEPS, cfg=1.0, scheduler="ddim_uniform",
                                               positive=null, negative=null, latent_image=latent, denoise=1.0, eta=0.0,
                                               eta_schedule="constant", regularizers=regs).result
    return out["samples"]


def test_dps_step_runs_the_patched_weights(N):
    """DreamSampler + Dream Data Consistency (dps 1): the DPS gradient goes through copies of the
    diffusion model and of the VAE decoder; with the patches they equal the baked-in weights, with
    the model fully loaded (patched in place) and offloaded mid-run (patched at forward time)."""
    _, baked, plain = _models()
    _, vae_b = _vaes()
    ref = _dps_sample(N, baked, vae_b)
    scale = float(ref.abs().max())
    # (one DPS step in the 3: a gradient copy without the UNet patch moves the result by ~1e-3 of
    # its scale, a hundred times the tolerance)
    for offloaded in (False, True):
        patched, _, _ = _models()
        vae_p, _ = _vaes()
        if offloaded:
            _offload_during_sampling(patched)
        out = _dps_sample(N, patched, vae_p)
        assert torch.isfinite(out).all()
        assert float((out - ref).abs().max()) <= 1e-5 * scale, (offloaded, float((out - ref).abs().max()))
        # the shared network is as ComfyUI left it, the pack wrote nothing into it: patched in
        # place after a full load, the unpatched originals after the offload
        expect = (plain if offloaded else baked).model.diffusion_model.state_dict()
        for k, v in patched.model.diffusion_model.state_dict().items():
            assert torch.equal(v, expect[k]), (offloaded, k)


def test_differentiable_vae_encoder_runs_the_patched_weights(N):
    """The distillation's VAE encoder with gradients (VAECodec.encode of an input that requires
    grad): the patched VAE's copy equals the baked one, values and gradients."""
    host_vae = N.host_vae
    vae_p, vae_b = _vaes()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
    res = []
    for vae in (vae_p, vae_b):
        codec = host_vae.VAECodec(vae, "test")
        with torch.inference_mode(False), torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            z = codec.encode(xg)
            (g,) = torch.autograd.grad(z.square().sum(), xg)
        with torch.inference_mode():
            plain = codec.encode(x)               # ComfyUI's own (no-grad) encode of the same image
        res.append((z.detach(), g, plain))
        codec.release()
    (zp, gp, ref_p), (zb, gb, _) = res
    assert torch.allclose(zp, zb, atol=1e-5) and torch.allclose(gp, gb, atol=1e-5)
    assert torch.allclose(zp, ref_p, atol=1e-4)    # the copy's encoder == ComfyUI's patched encoder


def test_grad_copy_of_an_offloaded_model_holds_the_patched_weights(N):
    """ComfyUI's lowvram state (unpatched weights + LowVramPatch, cast at forward): the copy holds
    the patched weights, plain, with none of that state; the live model keeps its own."""
    import comfy.model_management
    host_vae = N.host_vae
    patched, baked, _ = _models()
    comfy.model_management.load_models_gpu([patched])
    patched.partially_unload(patched.offload_device, memory_to_free=10 ** 12)
    net = patched.model.diffusion_model
    live_op = net.time_embed[0]
    assert live_op.weight_function and live_op.comfy_cast_weights     # offloaded, patched at forward
    before = {k: v.clone() for k, v in net.state_dict().items()}
    copy = host_vae.grad_copy(net, device="cpu")
    for (name, p), q in zip(copy.named_parameters(), baked.model.diffusion_model.parameters()):
        assert not p.requires_grad and not p.is_inference() and torch.equal(p, q), name
    for m in copy.modules():
        assert not getattr(m, "weight_function", []) and not getattr(m, "bias_function", [])
        assert not hasattr(m, "prev_comfy_cast_weights")
    ptrs = {p.data_ptr() for p in net.parameters()}
    assert not any(p.data_ptr() in ptrs for p in copy.parameters())
    # the live module is read, not changed
    assert live_op.weight_function and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    # and the copy runs with autograd
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    ctx = fake_conditioning(0)[0][0]
    out = copy(x, torch.tensor([500.0]), context=ctx)
    (g,) = torch.autograd.grad(out.square().sum(), x)
    with torch.inference_mode():
        ref = baked.model.diffusion_model(x.detach(), torch.tensor([500.0]), context=ctx)
    assert torch.isfinite(g).all() and torch.allclose(out.detach(), ref, atol=1e-5)
    patched.detach()


def test_grad_copy_refuses_weights_that_are_not_loaded(N):
    """A weight ComfyUI has not handed out (a meta tensor of lazy loading) is a clear error."""
    import comfy.ops
    host_vae = N.host_vae
    net = torch.nn.Sequential(comfy.ops.disable_weight_init.Linear(4, 4, device="meta"))
    with pytest.raises(host_vae.GradCopyError, match="not loaded"):
        host_vae.grad_copy(net, device="cpu", what="test model")


def test_grad_copy_keeps_a_bypass_lora_injected_forward(N):
    """The newest ComfyUI's bypass LoRA leaves the weights alone and replaces the module's forward
    with an adapter hook (``comfy/weight_adapter/bypass.py``: ``module.forward =
    hook._bypass_forward``, the hook holding the module and its original forward).  The copy keeps
    that forward, bound to the copy, with the adapter's tensors usable by autograd."""
    import comfy.ops
    host_vae = N.host_vae

    class Hook:                    # the shape of comfy.weight_adapter.bypass.BypassForwardHook
        def __init__(self, module, up, down):
            self.module, self.up, self.down, self.original_forward = module, up, down, None

        def _bypass_forward(self, x):
            return self.original_forward(x) + (x @ self.down.t()) @ self.up.t()

        def inject(self):
            self.original_forward = self.module.forward
            self.module.forward = self._bypass_forward

    g = torch.Generator().manual_seed(5)
    with torch.inference_mode():
        op = comfy.ops.disable_weight_init.Linear(4, 3)
        op.weight.copy_(torch.randn(3, 4, generator=g))
        op.bias.zero_()
        net = torch.nn.Sequential(op)
        Hook(op, torch.randn(3, 2, generator=g), torch.randn(2, 4, generator=g)).inject()
        x = torch.randn(5, 4, generator=g)
        ref = net(x)
    copy = host_vae.grad_copy(net, device="cpu")
    hook = copy[0].forward.__self__
    assert hook.module is copy[0] and hook.original_forward.__self__ is copy[0]
    xg = x.clone().requires_grad_(True)
    out = copy(xg)
    (grad,) = torch.autograd.grad(out.sum(), xg)
    assert torch.allclose(out.detach(), ref) and torch.isfinite(grad).all()
    assert net[0].forward.__self__.module is op             # the live module keeps its own hook


def test_grad_copy_of_a_quantized_layer_is_a_plain_differentiable_layer(N):
    """An FP8 / NVFP4 / MXFP8 checkpoint's op in the newest ComfyUI quantizes its *input* while it has
    a ``layout_type`` and is not force-cast (mimicked by ``support.newest_internals.QuantizedLinear``,
    see COMPATIBILITY.md).  The gradient copy holds the dequantized weights and runs them as a plain
    layer: its output and input gradient are those of ``F.linear`` with those weights, exactly (an
    FP8-rounded activation is off by ~1e-2), while the live op keeps quantizing as before."""
    from support.newest_internals import fp8_activation, quantized_linear
    host_vae = N.host_vae
    op = quantized_linear(16, 8, seed=7)
    net = torch.nn.Sequential(op)
    w = op.weight.float()
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(8))
    with torch.inference_mode():
        live = net(x)
    assert torch.allclose(live, torch.nn.functional.linear(fp8_activation(x), w, op.bias))
    copy = host_vae.grad_copy(net, device="cpu", what="test model")
    xg = x.clone().requires_grad_(True)
    out = copy(xg)
    (grad,) = torch.autograd.grad(out.sum(), xg)
    exact = torch.nn.functional.linear(x, w, op.bias)
    assert float((live - exact).abs().max()) > 1e-3                  # quantizing the input is visible
    assert torch.allclose(out.detach(), exact, atol=1e-6), float((out.detach() - exact).abs().max())
    assert torch.allclose(grad, w.sum(0).expand_as(x), atol=1e-6)
    assert copy[0].weight.dtype == torch.float32 and not copy[0].uses_quantized_input()
    assert op.uses_quantized_input() and op.weight.dtype == torch.float8_e4m3fn     # the live op unchanged


def test_dps_step_runs_on_the_main_device_under_multigpu(N, monkeypatch):
    """The newest ComfyUI's MultiGPU runs send part of each batch to other devices' clones, without
    gradients (mimicked: ``support.newest_internals``).  The DPS gradient step swaps only the main
    model's network, so it runs on the main device: the result equals the single-device run."""
    import comfy.model_management
    import comfy.samplers
    from support.newest_internals import multigpu_calc_cond_batch, with_multigpu_clone
    _, vae = _vaes()
    ref = _dps_sample(N, tiny_model("eps", seed=3), vae)
    other = tiny_model("eps", seed=3)
    comfy.model_management.load_models_gpu([other])
    monkeypatch.setattr(comfy.samplers, "calc_cond_batch", multigpu_calc_cond_batch(comfy.samplers.calc_cond_batch))
    out = _dps_sample(N, with_multigpu_clone(tiny_model("eps", seed=3), other), vae)
    assert torch.allclose(out, ref, atol=1e-5 * float(ref.abs().max())), float((out - ref).abs().max())


def test_grad_copy_budget_is_the_patchers_free_memory(N, sd15):
    """The newest ComfyUI counts a model's free memory on its patcher (``ModelPatcher.get_free_memory``:
    torch's free memory plus what dynamic VRAM's VBARs can give back; 0.3.75's patchers have none,
    the module-level ``get_free_memory`` counts).  The copy's budget is the patcher's number: on a
    device ComfyUI's module-level estimate cannot measure (``meta``, the non-CPU device a CPU machine
    has) the weights go there when the patcher says they fit."""
    import comfy.model_management
    import comfy.ops
    host_vae = N.host_vae
    with torch.inference_mode():
        net = torch.nn.Sequential(comfy.ops.manual_cast.Linear(8, 8), comfy.ops.manual_cast.Linear(8, 8))
    size = sum(p.numel() * p.element_size() for p in net.parameters())

    class DynamicPatcher:                        # the newest patcher's view of free memory
        def get_free_memory(self, device):
            return int(2 * comfy.model_management.minimum_inference_memory()) + size + 1

    copy = host_vae.grad_copy(net, device=torch.device("meta"), budget_from=DynamicPatcher())
    assert {p.device.type for p in copy.parameters()} == {"meta"}
    cpu = torch.device("cpu")                    # 0.3.75's patcher: the module-level estimate
    assert not hasattr(sd15[0], "get_free_memory")
    free = comfy.model_management.get_free_memory(cpu)
    assert abs(host_vae.free_memory(cpu, sd15[0]) - free) <= 0.05 * free
