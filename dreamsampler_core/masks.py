"""Inpainting masks: ComfyUI MASK -> the latent grid, soft edges, several regions with one rule.

Convention (ComfyUI's, the inverse of the official code's M): 1 = repaint (hole), 0 = keep.
Masks are ``[B, 1, H, W]`` float in [0, 1]; soft values are partial repaint.  On a video latent
[B, C, T, h, w] a MASK batch is the video's frames (ComfyUI's convention for video noise masks):
one mask for every frame, or a sequence resized along time to the latent's T (``frames_to_latent``),
as a [1, 1, T or 1, h, w] mask shared by the batch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

OVERLAP_RULES = ("average", "last_on_top")


class MaskError(ValueError):
    """A mask that cannot be used (wrong size, empty, not a mask)."""


def as_mask4d(mask: Tensor) -> Tensor:
    """[H, W], [B, H, W] or [B, 1, H, W] -> [B, 1, H, W] float32 clamped to [0, 1]."""
    if not torch.is_tensor(mask):
        raise MaskError(f"expected a MASK tensor, got {type(mask).__name__}")
    if mask.ndim == 2:
        mask = mask[None, None]
    elif mask.ndim == 3:
        mask = mask[:, None]
    elif not (mask.ndim == 4 and mask.shape[1] == 1):
        raise MaskError(f"a MASK must be [batch, height, width], got shape {tuple(mask.shape)}")
    if mask.numel() == 0:
        raise MaskError("the mask is empty (zero size)")
    check_mask_values(mask)
    return mask.float().clamp(0.0, 1.0)


#: how far a mask value may stray outside [0, 1] (resampling overshoot) before it is refused
MASK_RANGE_SLACK = 1e-3


def check_mask_values(mask: Tensor) -> None:
    """MaskError unless every value of ``mask`` (any shape) is finite and in [0, 1] (up to
    MASK_RANGE_SLACK): the one check of every mask the pack reads."""
    if not torch.is_floating_point(mask):
        mask = mask.float()
    if not torch.isfinite(mask).all():
        raise MaskError("the mask contains NaN or infinite values")
    lo, hi = float(mask.min()), float(mask.max())
    if lo < -MASK_RANGE_SLACK or hi > 1.0 + MASK_RANGE_SLACK:
        raise MaskError(f"the mask has values from {lo:.4g} to {hi:.4g}; a mask runs from 0 (keep) to 1 (change)")


def feather(mask: Tensor, radius: float) -> Tensor:
    """Soft edges: Gaussian blur with std radius / 2 px (support +-radius), edge-replicated.

    mask: [B, 1, H, W].  radius 0 returns the mask unchanged."""
    if radius <= 0:
        return mask
    sigma = radius / 2.0
    r = max(int(math.ceil(radius)), 1)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(mask)
    m = F.pad(mask, (r, r, 0, 0), mode="replicate")
    m = F.conv2d(m, k.reshape(1, 1, 1, -1))
    m = F.pad(m, (0, 0, r, r), mode="replicate")
    m = F.conv2d(m, k.reshape(1, 1, -1, 1))
    return m.clamp(0.0, 1.0)


def downscale_factor(mask_hw, grid_hw) -> int:
    """Integer factor f between a pixel mask and a latent grid, as ComfyUI's VAE encode crops the
    image (each side cut down to a multiple of f, centered).  Raises MaskError when they differ."""
    (H, W), (h, w) = mask_hw, grid_hw
    f = W // w if w else 0
    if f < 1 or H // f != h or W // f != w:
        raise MaskError(f"the mask is {W}x{H} pixels but the latent is {w}x{h} (an image of about {w * max(f, 1)}x"
                        f"{h * max(f, 1)}); resize the mask to the image's size (e.g. with a 'Resize Mask' node)")
    return f


def frames_to_latent(mask: Tensor, frames: int) -> Tensor:
    """A mask on the latent's spatial grid [N, 1, h, w], N = the video's mask frames, as a video
    latent's mask [1, 1, T, h, w] (T = ``frames``): N = 1 stays one frame ([1, 1, 1, h, w], the same
    on every frame); N = T frame by frame; any other N is resized linearly along time (as ComfyUI
    resizes a video's noise mask: trilinear, align_corners False)."""
    n = mask.shape[0]
    seq = mask.movedim(0, 1)[None]                           # [1, 1, N, h, w]
    if n in (1, frames):
        return seq
    return F.interpolate(seq, size=(int(frames),) + tuple(mask.shape[-2:]), mode="trilinear",
                         align_corners=False).clamp(0.0, 1.0)


def to_latent_grid(mask: Tensor, grid) -> Tensor:
    """Area pooling of a pixel mask [B, 1, H, W] onto the latent grid (h, w) -> [B, 1, h, w], or
    onto a video latent's (T, h, w) -> [1, 1, T or 1, h, w] (the batch is the frames,
    ``frames_to_latent``).

    A latent cell gets the fraction of its pixels to repaint (so a hole edge is soft), unlike the
    official stride-8 subsampling ``mask[::8, ::8]``.  The mask is center-cropped first exactly as
    ComfyUI's VAE encode crops the image to a multiple of the factor."""
    mask = as_mask4d(mask)
    H, W = mask.shape[-2:]
    grid_hw = tuple(grid)[-2:]
    f = downscale_factor((H, W), grid_hw)
    h, w = grid_hw
    oy, ox = (H % f) // 2, (W % f) // 2
    mask = mask[..., oy:oy + h * f, ox:ox + w * f]
    mask = mask if f == 1 else F.avg_pool2d(mask, f)
    return frames_to_latent(mask, grid[0]) if len(grid) == 3 else mask


def binarize(mask: Tensor, threshold: float) -> Tensor:
    """1 where mask >= threshold (threshold in (0, 1])."""
    return (mask >= threshold).to(mask.dtype)


def union(masks) -> Tensor:
    """Soft union 1 - prod(1 - m_r) (= max for binary masks; never exceeds 1)."""
    keep = None
    for m in masks:
        keep = (1.0 - m) if keep is None else keep * (1.0 - m)
    return 1.0 - keep


def region_shares(masks, rule: str = "average"):
    """Split the union hole among overlapping regions without over-counting.

    masks: list of R tensors [B, 1, h, w] (1 = repaint).  Returns (hole, shares) with
    hole = 1 - prod(1 - m_r) and sum_r shares_r = hole everywhere, shares_r >= 0, so where regions
    overlap their targets are blended instead of summed (the official code sums, over-weighting
    overlaps; spec dreamsampler §2.3).

    * ``average``:     shares_r = hole * m_r / sum_j m_j  (mask-weighted mean of the overlapping prompts)
    * ``last_on_top``: shares_r = m_r * prod_{j > r} (1 - m_j)  (later regions cover earlier ones;
      the telescoping sum is exactly the union)
    """
    if rule not in OVERLAP_RULES:
        raise MaskError(f"overlap rule must be one of {OVERLAP_RULES}, got {rule!r}")
    masks = list(masks)
    hole = union(masks)
    if rule == "average":
        total = sum(masks)
        safe = torch.where(total > 0, total, torch.ones_like(total))
        shares = [torch.where(total > 0, hole * m / safe, torch.zeros_like(m)) for m in masks]
    else:
        shares = []
        cover = torch.ones_like(masks[0])
        for m in reversed(masks):
            shares.append(m * cover)
            cover = cover * (1.0 - m)
        shares.reverse()
    return hole, shares
