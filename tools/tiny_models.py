"""Tiny, architecture-faithful models with seeded random weights, built with ComfyUI's own classes.

* ``tiny_sd15_checkpoint()``: a .safetensors file ComfyUI's CheckpointLoaderSimple detects as SD15
  (UNet model_channels 320 with one level; standard SD VAE and CLIP-L shapes), cached on disk.
* ``tiny_model(kind)``: in-process ModelPatchers of the same small UNet as eps, v-prediction and
  flow (CONST) models.
* ``oracle_model(gm, kind)``: a ComfyUI model whose network is the exact Gaussian-mixture
  denoiser, so the real ComfyUI sampling path runs on known math.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from .host import cache_dir, import_comfy

UNET_CONFIG = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
    "legacy": False, "adm_in_channels": None, "in_channels": 4, "model_channels": 320,
    "num_res_blocks": [1], "transformer_depth": [1], "channel_mult": [1], "transformer_depth_middle": 1,
    "use_linear_in_transformer": False, "context_dim": 768, "num_heads": 8, "num_head_channels": -1,
    "transformer_depth_output": [1, 1], "use_temporal_resblock": False, "use_temporal_attention": False,
}
CKPT_NAME = "dream_tiny_sd15.safetensors"
CKPT_VERSION = "v1"


def seeded_init_(module: torch.nn.Module, seed: int, std: float = 0.02):
    """Deterministic init (ComfyUI's ops skip init, leaving empty memory)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters(), key=lambda kv: kv[0]):
            low = name.lower()
            if ("norm" in low or "ln_" in low or "layer_norm" in low) and p.ndim == 1:
                p.copy_(torch.ones_like(p) if name.endswith("weight") else torch.zeros_like(p))
            elif name.endswith("bias"):
                p.zero_()
            else:
                fan_in = p[0].numel() if p.ndim > 1 else p.numel()
                s = min(std, 1.0 / math.sqrt(max(fan_in, 1))) if p.ndim > 1 else std
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * s)
        for name, b in module.named_buffers():
            if name.endswith("position_ids"):
                b.copy_(torch.arange(b.shape[-1]).expand_as(b))
    return module


def _model_config(kind: str):
    import comfy.supported_models
    import comfy.supported_models_base
    cfg = dict(UNET_CONFIG)
    if kind == "flow":
        mc = comfy.supported_models.SD15(cfg)
        mc.sampling_settings = {"shift": 1.0, "multiplier": 1000}
        return mc
    mc = comfy.supported_models.SD15(cfg)
    return mc


def tiny_model(kind: str = "eps", seed: int = 0):
    """A ModelPatcher of the tiny SD15-shaped UNet with the given prediction type (eps | v | flow)."""
    import_comfy()
    import comfy.model_base
    import comfy.model_patcher
    mc = _model_config(kind)
    model_type = {"eps": comfy.model_base.ModelType.EPS, "v": comfy.model_base.ModelType.V_PREDICTION,
                  "flow": comfy.model_base.ModelType.FLOW}[kind]
    model = comfy.model_base.BaseModel(mc, model_type=model_type, device="cpu")
    seeded_init_(model.diffusion_model, seed)
    model.diffusion_model.to(torch.float32)
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def fake_conditioning(seed: int, tokens: int = 8, batch: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(batch, tokens, 768, generator=g), {}]]


# Full-size UNet configurations, as ComfyUI's model_detection knows them (for benchmarks: random
# weights give real timings and memory).
REAL_UNET_CONFIGS = {
    "sd15": {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
             "legacy": False, "adm_in_channels": None, "in_channels": 4, "model_channels": 320,
             "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
             "channel_mult": [1, 2, 4, 4], "transformer_depth_middle": 1, "use_linear_in_transformer": False,
             "context_dim": 768, "num_heads": 8, "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
             "use_temporal_attention": False, "use_temporal_resblock": False},
    "sdxl": {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
             "legacy": False, "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4,
             "model_channels": 320, "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 2, 2, 10, 10],
             "channel_mult": [1, 2, 4], "transformer_depth_middle": 10, "use_linear_in_transformer": True,
             "context_dim": 2048, "num_head_channels": 64, "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
             "use_temporal_attention": False, "use_temporal_resblock": False},
}


def real_size_model(arch: str, device=None, dtype=None, seed: int = 0):
    """A ModelPatcher of the full-size SD1.5 or SDXL UNet with seeded random weights, plus a
    (positive, negative) conditioning pair of the right shapes (77 tokens; SDXL with pooled output)."""
    import_comfy()
    import comfy.model_patcher
    import comfy.supported_models
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    cfg = dict(REAL_UNET_CONFIGS[arch])
    mc = {"sd15": comfy.supported_models.SD15, "sdxl": comfy.supported_models.SDXL}[arch](cfg)
    mc.set_inference_dtype(dtype, None)
    model = mc.get_model({}, device=device)
    seeded_init_(model.diffusion_model, seed)
    model.diffusion_model.to(device=device, dtype=dtype)
    model.eval()
    g = torch.Generator().manual_seed(seed + 1)

    def cond():
        ctx = torch.randn(1, 77, cfg["context_dim"], generator=g)
        extra = {"pooled_output": torch.randn(1, 1280, generator=g)} if arch == "sdxl" else {}
        return [[ctx, extra]]
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=torch.device("cpu"))
    return patcher, cond(), cond()


def tiny_sd15_checkpoint() -> Path:
    """Path of the tiny SD15 checkpoint (generated once, about 10 s; cached)."""
    out = cache_dir() / "checkpoints" / CKPT_NAME
    stamp = out.with_suffix(".version")
    if out.exists() and stamp.exists() and stamp.read_text() == CKPT_VERSION:
        return out
    import_comfy()
    import comfy.ldm.models.autoencoder as ae
    import comfy.model_base
    import comfy.sd
    import comfy.utils
    mc = _model_config("eps")
    model = comfy.model_base.BaseModel(mc, model_type=comfy.model_base.ModelType.EPS, device="cpu")
    seeded_init_(model.diffusion_model, 1)
    clip = comfy.sd.CLIP(target=mc.clip_target(), model_options={"dtype": torch.float32})
    seeded_init_(clip.cond_stage_model, 2)
    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    vae = ae.AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    seeded_init_(vae, 3)
    sd = model.state_dict_for_saving(clip.get_sd(), vae.state_dict(), None)
    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in sd.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    comfy.utils.save_torch_file(sd, str(tmp))
    tmp.replace(out)
    stamp.write_text(CKPT_VERSION)
    return out


# ----------------------------------------------------------------------------- analytic oracle
def exact_prompt_mixture(means, stds, weights):
    """A GaussianMixture whose one-hot prompts are exact: a class of weight 0 has responsibility
    exactly 0 (the core class floors weights at 1e-300, so far from class k its "class k" prompt
    still returns another class's posterior).  means / stds: [K, d]; weights: [K]."""
    from dreamsampler_core.analytic import GaussianMixture

    class ExactPromptMixture(GaussianMixture):
        def log_resp(self, x, a, s, weights):
            lr = super().log_resp(x, a, s, weights)
            return torch.where(weights[None] > 0, lr, torch.full_like(lr, -math.inf))

    return ExactPromptMixture(means, stds, weights)


class _OracleNet(torch.nn.Module):
    """Network whose output makes ComfyUI's calculate_denoised return the exact E[x0 | x].

    The condition's first token, first entries, hold class weights (null = prior).
    """

    def __init__(self, gm, kind: str, model_sampling, perturb=None):
        super().__init__()
        self.gm, self.kind, self.perturb = gm, kind, perturb
        self.ms = model_sampling
        self.dtype = torch.float32
        from dreamsampler_core.schedule import Parameterization
        self.param = Parameterization("flow" if kind == "flow" else "ve")

    def forward(self, xc, t, context=None, transformer_options={}, **kw):
        sigma = transformer_options["sigmas"].reshape(-1)[0].double()
        x = xc.double()
        if self.kind != "flow":
            x = x * (sigma ** 2 + 1) ** 0.5                       # undo calculate_input
        K = self.gm.weights.numel()
        w = context[:, 0, :K].double() if context is not None else None
        out = []
        for b in range(x.shape[0]):
            wb = self.gm.weights if w is None or w[b].sum() <= 0 else w[b] / w[b].sum()
            x0 = self.gm.denoise(x[b:b + 1], sigma, self.param, wb)
            if self.perturb is not None:
                x0 = x0 + self.perturb(x[b:b + 1], sigma)
            if self.kind == "eps":
                out.append((x[b:b + 1] - x0) / sigma)
            elif self.kind == "v":                              # sigma_data = 1
                out.append(((x[b:b + 1] / (sigma ** 2 + 1)) - x0) * (sigma ** 2 + 1) ** 0.5 / sigma)
            else:                                               # flow velocity eps - x0 = (x - x0)/sigma
                out.append((x[b:b + 1] - x0) / sigma)
        return torch.cat(out).to(xc.dtype)


def _oracle_patcher(mc, model_type, latent_format, make_net, identity_latents: bool):
    """A ModelPatcher of a ComfyUI BaseModel with ``mc`` / ``model_type`` / ``latent_format`` (its
    model_sampling built from them as ComfyUI builds it) whose network is ``make_net(model_sampling)``;
    ``identity_latents``: process_latent_in / out are the identity (latent = model space)."""
    import_comfy()
    import comfy.model_base
    import comfy.model_patcher

    class OracleBase(comfy.model_base.BaseModel):
        def __init__(self):
            torch.nn.Module.__init__(self)
            self.model_config = mc
            self.manual_cast_dtype = None
            self.device = "cpu"
            self.current_patcher = None
            self.model_type = model_type
            self.model_sampling = comfy.model_base.model_sampling(mc, model_type)
            self.latent_format = latent_format
            self.concat_keys = ()
            self.memory_usage_factor = 1.0
            self.memory_usage_factor_conds = ()
            self.memory_usage_shape_process = {}
            self.adm_channels = 0
            self.inpaint_model = False
            self.diffusion_model = make_net(self.model_sampling)
            self.training = False

        def get_dtype(self):
            return torch.float32

        def process_latent_in(self, latent):
            return latent if identity_latents else super().process_latent_in(latent)

        def process_latent_out(self, latent):
            return latent if identity_latents else super().process_latent_out(latent)

    return comfy.model_patcher.ModelPatcher(OracleBase(), load_device=torch.device("cpu"),
                                            offload_device=torch.device("cpu"))


def oracle_model(gm, kind: str = "eps", perturb=None):
    """ModelPatcher whose denoiser is the exact mixture posterior mean (latent [B,4,H,W] flattened),
    plus ``perturb(x, sigma)`` when given (e.g. ``expansive.perturbation``)."""
    import_comfy()
    import comfy.model_base
    mc = _model_config(kind)
    model_type = {"eps": comfy.model_base.ModelType.EPS, "v": comfy.model_base.ModelType.V_PREDICTION,
                  "flow": comfy.model_base.ModelType.FLOW}[kind]
    return _oracle_patcher(mc, model_type, mc.latent_format, lambda ms: _OracleNet(gm, kind, ms, perturb),
                           identity_latents=True)


class _Scales:
    """x = a x0 + s eps at one noise level, in the shape GaussianMixture.denoise takes a convention."""

    def __init__(self, a, s):
        self.a, self.s = a.reshape(-1)[0], s.reshape(-1)[0]

    def signal(self, _):
        return self.a

    def noise(self, _):
        return self.s


class _ConventionOracleNet(torch.nn.Module):
    """The exact E[x0 | x] of a Gaussian mixture for any ComfyUI model_sampling: the convention is
    read from ``ms`` itself, which is affine in everything — x = a(sigma) x0 + s(sigma) eps from
    ``noise_scaling``, the network input xc = c(sigma) x from ``calculate_input``, and denoised =
    d0 + B(sigma) output from ``calculate_denoised`` — so the output is (E[x0 | x] - d0) / B.  The
    condition's first token, first entries, hold class weights (null = prior)."""

    def __init__(self, gm, ms):
        super().__init__()
        self.gm, self.ms, self.dtype = gm, ms, torch.float32

    def forward(self, xc, t, context=None, transformer_options={}, **kw):
        ms = self.ms
        sigma = transformer_options["sigmas"].reshape(-1)[:1].float()
        one, zero = torch.ones_like(xc[:1]).float(), torch.zeros_like(xc[:1]).float()
        c = ms.calculate_input(sigma, one).double()
        a = ms.noise_scaling(sigma, zero, one).double()
        s = ms.noise_scaling(sigma, one, zero).double()
        x = xc.double() / c
        d0 = ms.calculate_denoised(sigma, torch.zeros_like(xc).float(), x.float()).double()     # [B, ...]
        B = ms.calculate_denoised(sigma, one, zero).double() - ms.calculate_denoised(sigma, zero, zero).double()
        K = self.gm.weights.numel()
        w = context[:, 0, :K].double() if context is not None else None
        x0 = []
        for b in range(xc.shape[0]):
            wb = self.gm.weights if w is None or w[b].sum() <= 0 else w[b] / w[b].sum()
            x0.append(self.gm.denoise(x[b:b + 1], 0.0, _Scales(a, s), wb))   # a = 0 (flow at sigma 1): the prior mean
        return ((torch.cat(x0) - d0) / B).to(xc.dtype)


def oracle_like(gm, model):
    """A ModelPatcher with ``model``'s (a family's ModelPatcher) model config, model type, latent
    format and a fresh model_sampling built from them exactly as ComfyUI builds it (shifted flow
    grids, Flux's timestep = sigma, Cosmos' rectified flow ...), whose network is the exact mixture
    posterior mean in that convention (model space: the latent format's process_in / out apply)."""
    return _oracle_patcher(model.model.model_config, model.model.model_type, model.model.latent_format,
                           lambda ms: _ConventionOracleNet(gm, ms), identity_latents=False)


def class_conditioning(cls_index: int | None, K: int = 2, batch: int = 1):
    """CONDITIONING selecting a mixture class (None = null prompt)."""
    c = torch.zeros(batch, 1, 768)
    if cls_index is not None:
        c[:, 0, cls_index] = 1.0
    return [[c, {}]]
