"""A small *learned* model for quality benchmarks (issue 17): coloured shapes, a class-conditional
eps-prediction UNet trained here, and a judge classifier trained on held-out real samples.

* Data: 16x16 RGB pictures of one shape (circle / square / triangle, equal areas) in one colour
  (red / green / blue) on a grey background; 9 classes, index ``shape * 3 + colour``. Every sample
  is drawn from its parameters (class, centre, radius, background, colour jitter), so an edit has a
  ground truth: the same parameters with the target class (``counterfactual``).
* Latent = the pixels: ``[B, 3, 16, 16]`` in [-1, 1] (``PixelLatent``: 3 channels, scale 1; no VAE of
  its own: benchmarks build latents with the test-only node and read ``SaveLatent`` files back, and
  nodes that need a VAE get ComfyUI's own pixel-space one, ``VAELoader`` ``pixel_space``, whose
  encode / decode are the identity between IMAGE [0, 1] and this latent).
* Prompt = CONDITIONING ``[B, 1, 768]`` whose first K entries are the class one-hot (zeros = the
  null prompt), as the analytic oracles' ``class_conditioning``.
* Model: ``ShapesUNet`` wrapped by ComfyUI's own ``BaseModel`` with SD1.5's discrete eps schedule
  (``scaled_linear`` 0.00085..0.012, 1000 steps), so every sampler runs the real path.

Training is deterministic (seeded, one thread); the weights are committed in ``bench/weights``.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

from .host import REPO, import_comfy

SHAPES = ("circle", "square", "triangle")
COLOURS = ("red", "green", "blue")
CLASSES = tuple(f"{c} {s}" for s in SHAPES for c in COLOURS)
K = len(CLASSES)
SIZE = 16
RGB = {"red": (0.90, 0.15, 0.12), "green": (0.15, 0.80, 0.20), "blue": (0.20, 0.30, 0.95)}
SPLIT_SEEDS = {"train": 1000, "judge": 2000, "judge_test": 3000, "heldout": 4000, "inpaint": 5000}
VERSION = "v1"
#: per-model weights versions where a model was retrained (flow_unet v2: v1 plus a 3000-iteration
#: phase at lr 7e-4, ``train_flow_model_v2``; v1 judged its red squares 0.19 at cfg 3)
VERSIONS = {"flow_unet": "v2"}
SS = 4                                                          # supersampling for antialiasing


def class_index(shape: str, colour: str) -> int:
    return SHAPES.index(shape) * len(COLOURS) + COLOURS.index(colour)


# ----------------------------------------------------------------------------- data
def sample_params(split: str, n: int, cls=None, right_half: bool = False) -> dict:
    """Deterministic parameters of n samples of a split (``cls``: fixed class or None = uniform).
    ``right_half``: small shapes centred in the right half (the inpainting task's sources)."""
    rng = np.random.RandomState(SPLIT_SEEDS[split] + (0 if cls is None else 97 * (int(cls) + 1))
                                + (7 if right_half else 0))
    c = rng.randint(0, K, n) if cls is None else np.full(n, int(cls))
    if right_half:
        r = rng.uniform(3.0, 3.8, n)
        cx = rng.uniform(11.5, 12.2, n)
    else:
        r = rng.uniform(3.2, 5.5, n)
        cx = rng.uniform(r + 0.6, SIZE - r - 0.6)
    cy = rng.uniform(r + 0.6, SIZE - r - 0.6)
    bg = rng.uniform(0.05, 0.45, (n, 1)) + rng.uniform(-0.04, 0.04, (n, 3))
    jitter = rng.uniform(-0.07, 0.07, (n, 3))
    return {"cls": c, "r": r, "cx": cx, "cy": cy, "bg": bg, "jitter": jitter}


def render(p: dict) -> torch.Tensor:
    """Parameters -> images [n, 3, 16, 16] in [-1, 1] (float32)."""
    out = np.empty((len(p["cls"]), SIZE, SIZE, 3), np.float32)
    for i in range(len(p["cls"])):
        shape, colour = SHAPES[p["cls"][i] // 3], COLOURS[p["cls"][i] % 3]
        bg = tuple(int(round(255 * min(max(v, 0.0), 1.0))) for v in p["bg"][i])
        fg = tuple(int(round(255 * min(max(v + j, 0.0), 1.0))) for v, j in zip(RGB[colour], p["jitter"][i]))
        im = Image.new("RGB", (SIZE * SS, SIZE * SS), bg)
        d = ImageDraw.Draw(im)
        cx, cy, r = p["cx"][i] * SS, p["cy"][i] * SS, p["r"][i] * SS
        if shape == "circle":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
        elif shape == "square":                                  # same area as the circle
            h = r * math.sqrt(math.pi) / 2
            d.rectangle([cx - h, cy - h, cx + h, cy + h], fill=fg)
        else:                                                    # equilateral, same area, centroid at (cx, cy)
            a = r * math.sqrt(4 * math.pi / math.sqrt(3))
            d.polygon([(cx, cy - a / math.sqrt(3)), (cx - a / 2, cy + a / (2 * math.sqrt(3))),
                       (cx + a / 2, cy + a / (2 * math.sqrt(3)))], fill=fg)
        out[i] = np.asarray(im.resize((SIZE, SIZE), Image.BOX), np.float32) / 255.0
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous() * 2 - 1


def dataset(split: str, n: int, cls=None, right_half: bool = False):
    """(images [n, 3, 16, 16] in [-1, 1], labels [n] long, params)."""
    p = sample_params(split, n, cls, right_half)
    return render(p), torch.from_numpy(p["cls"]).long(), p


def counterfactual(p: dict, cls: int) -> torch.Tensor:
    """The ground-truth edit: the same pictures drawn with class ``cls``."""
    return render(dict(p, cls=np.full(len(p["cls"]), int(cls))))


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """Latent / pixels in [-1, 1] -> [0, 1] (the identity 'VAE')."""
    return ((x.float() + 1) / 2).clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor, mask=None) -> torch.Tensor:
    """PSNR in dB per item of [B, 3, H, W] images in [0, 1] (``mask`` [H, W]: pixels scored)."""
    d = (a - b) ** 2
    if mask is not None:
        m = mask.to(d).expand_as(d)
        mse = (d * m).flatten(1).sum(1) / m.flatten(1).sum(1)
    else:
        mse = d.flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


# ----------------------------------------------------------------------------- schedule
def alphas_cumprod() -> torch.Tensor:
    """SD1.5's discrete schedule, as ComfyUI's ModelSamplingDiscrete builds it ('linear' = scaled)."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


# ----------------------------------------------------------------------------- rectified flow
FLOW_SHIFT = 3.0                # SD3's shift: the grid users run (ModelSamplingSD3 3 + `simple`)
FLOW_MULTIPLIER = 1000          # ComfyUI's ModelSamplingDiscreteFlow: timestep = sigma * 1000


def shift_time(u, shift: float = FLOW_SHIFT):
    """SD3's time shift t = s u / (1 + (s - 1) u) (ComfyUI's ``time_snr_shift``)."""
    return shift * u / (1 + (shift - 1) * u)


def flow_times(batch: int, g) -> torch.Tensor:
    """Training times t in (0, 1] for the flow model: 70 % logit-normal(0, 1), 30 % uniform, both
    shifted by SD3's shift 3, so the shifted sampling grid (mostly t > 0.5) and its last, small
    levels are both covered."""
    u = torch.sigmoid(torch.randn(batch, generator=g))
    u = torch.where(torch.rand(batch, generator=g) < 0.3, torch.rand(batch, generator=g), u)
    return shift_time(u).clamp(1e-3, 1.0)


# ----------------------------------------------------------------------------- networks
class _Res(nn.Module):
    def __init__(self, cin, cout, emb):
        super().__init__()
        self.n1, self.c1 = nn.GroupNorm(8, cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.e = nn.Linear(emb, cout)
        self.n2, self.c2 = nn.GroupNorm(8, cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.c1(F.silu(self.n1(x))) + self.e(emb)[:, :, None, None]
        return self.skip(x) + self.c2(F.silu(self.n2(h)))


class ShapesUNet(nn.Module):
    """eps(x_t, t, class): x [B, 3, 16, 16] (ComfyUI's calculate_input: sqrt(abar) x0 + sqrt(1-abar) eps),
    t [B] timestep 0..999, context [B, T, 768] whose first token's first K entries weight the classes
    (zeros = unconditional). Levels 16 / 8 / 4 px with 16 / 32 / 64 channels, ~0.2 M parameters."""

    def __init__(self, ch=(16, 32, 64)):
        super().__init__()
        a, b, c = ch
        emb = 128
        self.t_dim = 32
        self.t_mlp = nn.Sequential(nn.Linear(self.t_dim, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.c_emb = nn.Linear(K, emb, bias=False)
        self.inp = nn.Conv2d(3, a, 3, padding=1)
        self.d1 = _Res(a, a, emb)
        self.down1 = nn.Conv2d(a, b, 3, stride=2, padding=1)
        self.d2 = _Res(b, b, emb)
        self.down2 = nn.Conv2d(b, c, 3, stride=2, padding=1)
        self.m = _Res(c, c, emb)
        self.up2 = nn.Conv2d(c, b, 1)
        self.u2 = _Res(2 * b, b, emb)
        self.up1 = nn.Conv2d(b, a, 1)
        self.u1 = _Res(2 * a, a, emb)
        self.out = nn.Sequential(nn.GroupNorm(8, a), nn.SiLU(), nn.Conv2d(a, 3, 3, padding=1))

    @property
    def dtype(self):
        return self.inp.weight.dtype

    def embed(self, t, y):
        half = self.t_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        a = t.float()[:, None] * freqs[None]
        return self.t_mlp(torch.cat([a.cos(), a.sin()], 1)) + self.c_emb(y)

    def forward(self, x, timesteps, context=None, y=None, **kw):
        if y is None:
            y = context[:, 0, :K].to(x) if context is not None else x.new_zeros(x.shape[0], K)
        t = timesteps.reshape(-1)
        e = self.embed(t.expand(x.shape[0]) if t.numel() == 1 else t, y)
        h1 = self.d1(self.inp(x), e)
        h2 = self.d2(self.down1(h1), e)
        h = self.m(self.down2(h2), e)
        h = self.u2(torch.cat([F.interpolate(self.up2(h), scale_factor=2.0), h2], 1), e)
        h = self.u1(torch.cat([F.interpolate(self.up1(h), scale_factor=2.0), h1], 1), e)
        return self.out(h)


class Judge(nn.Module):
    """Classifier of [B, 3, 16, 16] images in [-1, 1] -> logits [B, K]."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.SiLU(), nn.Conv2d(32, 32, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, K))

    def forward(self, x):
        return self.net(x)


# ----------------------------------------------------------------------------- training
def _one_hot(labels, p_null, g):
    y = F.one_hot(labels, K).float()
    if p_null > 0:
        y = y * (torch.rand(len(labels), 1, generator=g) >= p_null)
    return y


def _train_phase(net, ema, x, labels, iters, lr, g, log, tag, flow=False):
    """Adam with warm-up and cosine decay, EMA 0.995, 15 % null prompt, horizontal flips
    (``flow``: the rectified-flow velocity target instead of eps)."""
    n, batch = len(x), 64
    abar = alphas_cumprod().float()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / 200) * 0.5 * (1 + math.cos(math.pi * i / iters)))
    t0, run = time.time(), 0.0
    for i in range(iters):
        idx = torch.randint(0, n, (batch,), generator=g)
        x0 = x[idx]
        flip = torch.rand(batch, 1, 1, 1, generator=g) < 0.5         # horizontal flips keep every class
        x0 = torch.where(flip, x0.flip(-1), x0)
        if flow:                        # rectified flow: x_t = (1 - t) x0 + t eps, target v = eps - x0
            t = flow_times(batch, g)
            eps = torch.randn(x0.shape, generator=g)
            tt = t[:, None, None, None]
            xt, target, ts = (1 - tt) * x0 + tt * eps, eps - x0, t * FLOW_MULTIPLIER
        else:
            t = torch.randint(0, 1000, (batch,), generator=g)
            eps = torch.randn(x0.shape, generator=g)
            a = abar[t][:, None, None, None]
            xt, target, ts = a.sqrt() * x0 + (1 - a).sqrt() * eps, eps, t.float()
        loss = F.mse_loss(net(xt, ts, y=_one_hot(labels[idx], 0.15, g)), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            d = min(0.995, (1 + i) / (10 + i))
            for pe, pn in zip(ema.parameters(), net.parameters()):
                pe.mul_(d).add_(pn, alpha=1 - d)
        run = 0.98 * run + 0.02 * float(loss.detach()) if i else float(loss.detach())
        if log and (i % 500 == 0 or i == iters - 1):
            log(f"  model {tag} iter {i:5d}  loss {run:.4f}  ({time.time() - t0:.0f} s)")


def train_model(phases=((2500, 2e-3),), n: int = 8000, seed: int = 0, log=print,
                start: ShapesUNet | None = None, flow: bool = False) -> ShapesUNet:
    """Deterministic eps-prediction training on one thread (about 6 minutes per 2500-iteration phase;
    a later phase restarts Adam from the previous phase's EMA weights, ``start`` skips phase 1).
    The committed weights are the default single phase."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        x, labels, _ = dataset("train", n)
        ema = ShapesUNet()
        for k, (iters, lr) in enumerate(phases):
            g = torch.Generator().manual_seed(seed + k)
            if k == 0 and start is not None:
                ema.load_state_dict(start.state_dict())
                g = None
                continue
            net = ShapesUNet()
            net.load_state_dict(ema.state_dict())
            _train_phase(net, ema, x, labels, iters, lr, g, log, f"phase {k + 1}", flow)
        return ema.eval()
    finally:
        torch.set_num_threads(threads)


def train_judge(iters: int = 800, n: int = 6000, batch: int = 64, seed: int = 0, log=print) -> Judge:
    """Classifier on the 'judge' split (disjoint from the model's training data); light pixel-noise
    augmentation so that slightly imperfect generations are still read by shape and colour."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed + 1)
        x, labels, _ = dataset("judge", n)
        net = Judge()
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        for i in range(iters):
            idx = torch.randint(0, n, (batch,), generator=g)
            xb = x[idx] + 0.06 * torch.rand(batch, 1, 1, 1, generator=g) * torch.randn(x[idx].shape, generator=g)
            xb = torch.where(torch.rand(batch, 1, 1, 1, generator=g) < 0.5, xb.flip(-1), xb)
            loss = F.cross_entropy(net(xb), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if log and (i % 500 == 0 or i == iters - 1):
                log(f"  judge iter {i:5d}  loss {float(loss.detach()):.4f}")
        return net.eval()
    finally:
        torch.set_num_threads(threads)


def judge_accuracy(judge: Judge, n: int = 2000) -> float:
    """Accuracy on the 'judge_test' split (real samples the judge never saw)."""
    x, labels, _ = dataset("judge_test", n)
    with torch.no_grad():
        return float((judge(x).argmax(1) == labels).float().mean())


def weights_path(name: str) -> Path:
    """Committed weights (bench/weights, < 1 MB); ``python -m bench.bench_quality --retrain`` rebuilds them."""
    return REPO / "bench" / "weights" / f"shapes_{name}_{VERSIONS.get(name, VERSION)}.pt"


def _cached(name: str, build, cls, log, retrain=False):
    path = weights_path(name)
    if retrain or not path.exists():
        if log:
            log(f"training {name} (cached at {path})")
        net = build(log=log)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(net.state_dict(), tmp)
        tmp.replace(path)
    net = cls()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


def trained_unet(log=print, retrain=False) -> ShapesUNet:
    return _cached("unet", train_model, ShapesUNet, log, retrain)


def trained_judge(log=print, retrain=False) -> Judge:
    return _cached("judge", train_judge, Judge, log, retrain)


def train_flow_model(phases=((3000, 2e-3),), n: int = 8000, seed: int = 0, log=print) -> ShapesUNet:
    """The rectified-flow (velocity) model: the same UNet, data and recipe as ``train_model`` with
    the target v = eps - x0 at x_t = (1 - t) x0 + t eps, t from ``flow_times``; the UNet reads the
    timestep t * 1000 (ComfyUI's flow multiplier). About 7 minutes on one thread."""
    return train_model(phases, n, seed, log, flow=True)


def trained_flow_unet(log=print, retrain=False) -> ShapesUNet:
    return _cached("flow_unet", train_flow_model, ShapesUNet, log, retrain)


# ----------------------------------------------------------------------------- ComfyUI wrapping
def comfy_model(net: ShapesUNet | None = None, flow: bool = False):
    """A ModelPatcher: ComfyUI's BaseModel (EPS, SD1.5 discrete schedule) around the trained UNet,
    with a 3-channel scale-1 latent format (latent = pixels in [-1, 1]). ``flow``: the rectified-flow
    model as SD3 is wrapped (ModelType.FLOW: ModelSamplingDiscreteFlow + CONST, shift 3, timestep =
    sigma * 1000), for ModelSamplingSD3 + the `simple` scheduler."""
    import_comfy()
    import comfy.latent_formats
    import comfy.model_base
    import comfy.model_patcher
    import comfy.supported_models_base

    class PixelLatent(comfy.latent_formats.LatentFormat):
        latent_channels = 3
        scale_factor = 1.0

    class ShapesConfig(comfy.supported_models_base.BASE):
        unet_config = {}
        unet_extra_config = {}
        latent_format = PixelLatent
        memory_usage_factor = 0.01
        sampling_settings = {"shift": FLOW_SHIFT, "multiplier": FLOW_MULTIPLIER} if flow else {}

    if net is None:
        net = trained_flow_unet(log=None) if flow else trained_unet(log=None)
    mc = ShapesConfig({})
    kind = comfy.model_base.ModelType.FLOW if flow else comfy.model_base.ModelType.EPS
    model = comfy.model_base.BaseModel(mc, model_type=kind, device="cpu", unet_model=lambda **kw: net)
    model.eval()
    return comfy.model_patcher.ModelPatcher(model, load_device=torch.device("cpu"),
                                            offload_device=torch.device("cpu"))


def conditioning(cls, batch: int = 1):
    """CONDITIONING for class ``cls`` (None or -1 = the null prompt): [[ [batch, 1, 768], {} ]]."""
    c = torch.zeros(batch, 1, 768)
    if cls is not None and int(cls) >= 0:
        c[:, 0, int(cls)] = 1.0
    return [[c, {}]]
