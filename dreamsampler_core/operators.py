"""Linear measurement operators y = A x + n for image restoration (spec dreamsampler §2.3, §6).

Conventions
-----------
* Images ``x``: pixel tensors ``[B, 3, H, W]`` in **[-1, 1]** (the VAE's pixel range, and the units
  of the official code's noise level sigma_y = 0.01).  Every operator is linear, so the range only
  matters for sigma_y.
* Measurements ``y``: ``[B, C, h, w]`` (see each operator's ``measurement_shape``).
* Videos ``[B, 3, T, H, W]`` (a video VAE's pixels) are measured frame by frame: ``as_frames`` gives
  the frames ``[B*T, 3, H, W]`` the operators act on, and ``frame_measurement`` fits a measurement of
  the frames (one frame, the T frames of every video, or all B*T) to them.
* Every operator has an exact adjoint ``At``: <A x, y> = <x, At y> to float precision (tested).

The proximal data step of DreamSampler's inverse solver,

    x_y = argmin_x ||y - A x||^2 + mu ||x - x_hat||^2          (spec §2.3, "data consistency")

is solved in closed form through an exact singular value decomposition where the operator has a
cheap one (inpainting: diagonal; super-resolution, Gaussian and uniform blur: separable, so the SVD
of two 1-D matrices; colorization: rank one per pixel), and by conjugate gradient otherwise (motion
blur).  With a noise level ``sigma_y > 0`` the data are fit only down to the noise (Morozov's
discrepancy principle): mu is raised until ||y - A x_y|| = sqrt(m) sigma_y, and CG stops at the
first iterate that reaches it, so noise is not amplified; sigma_y = 0 is the official solve.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .denoiser import randn_like

OPERATOR_NAMES = ("inpainting", "sr_avgpool", "sr_bicubic", "deblur_gauss", "deblur_uniform",
                  "deblur_motion", "colorization")
SR_SCALES = (2, 4, 8)


class OperatorError(ValueError):
    """A measurement or image does not fit the operator (size, channels, values)."""


# ----------------------------------------------------------------------------- base class
class LinearOperator:
    """y = A x on pixel tensors.  Subclasses implement A, At and the shape maps; closed-form
    operators also implement ``_spectrum`` / ``_lift`` (an exact thin SVD, see ``prox``)."""

    name = "linear"
    closed_form = False

    def A(self, x: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def At(self, y: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def measurement_shape(self, image_shape) -> tuple:
        """Shape of A x for an image of ``image_shape`` [B, 3, H, W]; raises OperatorError."""
        return tuple(image_shape)

    def image_shape(self, measurement_shape) -> tuple:
        """Shape of the image a measurement of ``measurement_shape`` comes from."""
        return tuple(measurement_shape)

    def num_measurements(self, y: Tensor) -> Tensor:
        """Number of scalar measurements per batch item, [B] (the m of the discrepancy rule)."""
        return torch.full((y.shape[0],), float(y[0].numel()), dtype=torch.float64, device=y.device)

    def project(self, y: Tensor) -> Tensor:
        """The part of a measurement the operator can explain (inpainting zeroes the hole)."""
        return y

    def initial_image(self, y: Tensor) -> Tensor:
        """A full-size starting image for a measurement (to VAE-encode and invert): At y rescaled."""
        return self.At(y)

    def describe(self) -> str:
        return self.name

    # --- exact SVD interface of the closed-form operators --------------------------------
    def _spectrum(self, r: Tensor):
        """(s, c): singular values broadcastable to c, and the coefficients c of the measurement-space
        residual r in the left singular basis.  Directions with s = 0 keep their residual."""
        raise NotImplementedError

    def _lift(self, coef: Tensor) -> Tensor:
        """Right singular vectors applied to a coefficient tensor: the image-space update."""
        raise NotImplementedError

    # --- checks --------------------------------------------------------------------------
    def check(self, y: Tensor, x_shape) -> None:
        """Raise OperatorError unless y is a finite measurement of an image of shape x_shape."""
        expected = self.measurement_shape(x_shape)
        if tuple(y.shape[1:]) != tuple(expected[1:]) or y.shape[0] not in (1, expected[0]):
            raise OperatorError(
                f"measurement of shape {tuple(y.shape)} does not fit the {self.describe()} operator on an image "
                f"of shape {tuple(x_shape)} (expected {tuple(expected)}); check the operator's scale / mask and "
                "that the latent has the size of the image the measurement was taken from.")
        if not torch.isfinite(y).all():
            raise OperatorError("the measurement contains NaN or infinite values")


def _usable(t: Tensor) -> Tensor:
    """A tensor made under torch.inference_mode (ComfyUI runs nodes in it) cannot be saved for
    backward: clone it when used outside inference mode (the DPS gradient step)."""
    if t.is_inference() and not torch.is_inference_mode_enabled():
        return t.clone()
    return t


def _bdot(a: Tensor, b: Tensor) -> Tensor:
    """Per-batch inner product, [B] (float64 accumulate)."""
    return (a.double() * b.double()).flatten(1).sum(1)


def _bview(v: Tensor, ref: Tensor) -> Tensor:
    return v.reshape((-1,) + (1,) * (ref.ndim - 1)).to(device=ref.device, dtype=ref.dtype)


# ----------------------------------------------------------------------------- videos
def as_frames(x: Tensor):
    """(frames, back): pixels [B, 3, H, W] as they are, a video's [B, 3, T, H, W] as its frames
    [B*T, 3, H, W] (video b's frames consecutive, in order); ``back(f)`` undoes it."""
    if x.ndim == 4:
        return x, lambda f: f
    if x.ndim != 5:
        raise OperatorError(f"pixels must be [B, C, H, W] or a video [B, C, T, H, W], got shape {tuple(x.shape)}")
    B, C, T, H, W = x.shape
    return x.movedim(2, 1).reshape(B * T, C, H, W), lambda f: f.reshape(B, T, *f.shape[1:]).movedim(1, 2)


def frame_measurement(y: Tensor, x_shape) -> Tensor:
    """A measurement of frames ``y`` [N, C, h, w] fitted to the frames of pixels of ``x_shape``: an
    image's y as it is; for a video [B, 3, T, H, W] one frame (N = 1, every frame's measurement), the
    T frames of each video (repeated for a batch of B) or all B*T frames.  OperatorError otherwise."""
    if len(x_shape) != 5:
        return y
    B, T, n = int(x_shape[0]), int(x_shape[2]), int(y.shape[0])
    if n in (1, B * T):
        return y
    if n == T:
        return y.repeat(B, *([1] * (y.ndim - 1)))
    raise OperatorError(f"the measurement has {n} frames but the video has {T} frames"
                        + (f" (a batch of {B} videos)" if B > 1 else "")
                        + "; measure the frames the latent was encoded from (the same frame count), or give one frame")


# ----------------------------------------------------------------------------- inpainting
class Inpainting(LinearOperator):
    """A x = keep * x (pixel selection; soft keep values allowed).  keep: [B or 1, 1 or 3, H, W], 1 = known.

    The official operator stacks the kept pixels into a vector; keeping them in place (zeros in the
    hole) is the same operator up to a permutation, and A^T A = diag(keep^2) (spec §2.3)."""

    name = "inpainting"
    closed_form = True

    def __init__(self, keep: Tensor):
        if keep.ndim == 2:
            keep = keep[None, None]
        elif keep.ndim == 3:
            keep = keep[:, None]
        if keep.ndim != 4:
            raise OperatorError(f"inpainting mask must be [B, 1, H, W], got shape {tuple(keep.shape)}")
        self.keep = keep.float().clamp(0.0, 1.0)

    def _k(self, ref: Tensor) -> Tensor:
        return _usable(self.keep.to(device=ref.device, dtype=ref.dtype))

    def A(self, x):
        return self._k(x) * x

    def At(self, y):
        return self._k(y) * y

    def measurement_shape(self, image_shape):
        b, c, h, w = image_shape
        if (h, w) != tuple(self.keep.shape[-2:]):
            raise OperatorError(f"the inpainting mask is {self.keep.shape[-1]}x{self.keep.shape[-2]} pixels but the "
                                f"image is {w}x{h}; give a mask of the image's size")
        if self.keep.shape[0] not in (1, b):
            raise OperatorError(f"the inpainting mask has batch {self.keep.shape[0]} but the image has batch {b}")
        return (b, c, h, w)

    def image_shape(self, measurement_shape):
        return self.measurement_shape(measurement_shape)

    def num_measurements(self, y):
        k = (self._k(y) > 0).to(torch.float64).expand(y.shape[0], y.shape[1], *y.shape[2:])
        return k.flatten(1).sum(1)

    def project(self, y):
        return torch.where(self._k(y) > 0, y, torch.zeros_like(y))

    def _spectrum(self, r):
        return self._k(r), r

    def _lift(self, coef):
        return coef

    def describe(self):
        return f"inpainting ({float((self.keep < 1).float().mean()) * 100:.0f}% unknown)"


# ----------------------------------------------------------------------------- separable operators
def _reflect(j: int, n: int) -> int:
    """Index of tap j after 'reflect' padding (edge not repeated), as torch.nn.functional.pad."""
    while j < 0 or j >= n:
        j = -j if j < 0 else 2 * (n - 1) - j
    return j


def _symmetric(j: int, n: int) -> int:
    """Index after 'symmetric' padding (edge repeated), as MATLAB imresize."""
    while j < 0 or j >= n:
        j = -j - 1 if j < 0 else 2 * n - j - 1
    return j


def conv_matrix(kernel: Tensor, n: int) -> Tensor:
    """[n, n] matrix of a 'same' 1-D correlation with reflect boundary (taps folded in)."""
    k = kernel.double()
    r = (len(k) - 1) // 2
    if r >= n:
        raise OperatorError(f"blur kernel of {len(k)} taps is too large for an image side of {n} pixels")
    m = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for t in range(-r, r + 1):
            m[i, _reflect(i + t, n)] += k[t + r]
    return m


def avgpool_matrix(n: int, s: int) -> Tensor:
    m = torch.zeros(n // s, n, dtype=torch.float64)
    for i in range(n // s):
        m[i, i * s:(i + 1) * s] = 1.0 / s
    return m


def _cubic(x: Tensor, a: float = -0.5) -> Tensor:
    """Keys' cubic convolution kernel (a = -0.5, as MATLAB's imresize)."""
    ax = x.abs()
    return torch.where(ax <= 1, (a + 2) * ax ** 3 - (a + 3) * ax ** 2 + 1,
                       torch.where(ax < 2, a * ax ** 3 - 5 * a * ax ** 2 + 8 * a * ax - 4 * a, torch.zeros_like(ax)))


def bicubic_matrix(n: int, s: int) -> Tensor:
    """[n/s, n] antialiased bicubic downsampling by s (MATLAB imresize: kernel widened by s,
    symmetric boundary), rows normalized to sum 1."""
    m = torch.zeros(n // s, n, dtype=torch.float64)
    for i in range(n // s):
        center = (i + 0.5) * s - 0.5
        lo, hi = math.floor(center - 2 * s), math.ceil(center + 2 * s)
        taps = torch.arange(lo, hi + 1, dtype=torch.float64)
        w = _cubic((taps - center) / s) / s
        for j, wj in zip(taps.tolist(), w.tolist()):
            if wj != 0.0:
                m[i, _symmetric(int(j), n)] += wj
        m[i] /= m[i].sum()
    return m


def gaussian_kernel(sigma: float, size: int | None = None) -> Tensor:
    if size is None:
        size = 2 * math.ceil(3 * sigma) + 1
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


class Separable(LinearOperator):
    """A x = M_h x M_w^T per channel, M_h / M_w 1-D matrices built for each image size.

    Its SVD is the Kronecker product of the two 1-D SVDs, so the proximal step is exact and costs
    four small matrix products per channel (no iterations)."""

    closed_form = True

    def __init__(self, name: str, factor: int = 1):
        self.name = name
        self.factor = factor           # downsampling factor (1 = same size)
        self._cache: dict = {}

    def matrix(self, n: int) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def _parts(self, n: int, ref: Tensor):
        """(M, U, S, V) of the 1-D matrix for side n, on ref's device/dtype (SVD in float64, cached)."""
        key = (n, ref.device, ref.dtype, torch.is_inference_mode_enabled())
        if key not in self._cache:
            cpu_key = (n, "cpu64")
            if cpu_key not in self._cache:
                m = self.matrix(n)
                u, s, vh = torch.linalg.svd(m, full_matrices=False)
                self._cache[cpu_key] = (m, u, s, vh.T.contiguous())
            self._cache[key] = tuple(_usable(t.to(device=ref.device, dtype=ref.dtype, copy=True))
                                     for t in self._cache[cpu_key])
        return self._cache[key]

    def _mats(self, h: int, w: int, ref: Tensor):
        return self._parts(h, ref), self._parts(w, ref)

    def A(self, x):
        (mh, *_), (mw, *_) = self._mats(x.shape[-2], x.shape[-1], x)
        return mh @ x @ mw.T

    def At(self, y):
        h, w = y.shape[-2] * self.factor, y.shape[-1] * self.factor
        (mh, *_), (mw, *_) = self._mats(h, w, y)
        return mh.T @ y @ mw

    def measurement_shape(self, image_shape):
        b, c, h, w = image_shape
        s = self.factor
        if h % s or w % s:
            raise OperatorError(f"the image is {w}x{h} pixels, which the x{s} {self.name} operator cannot divide; "
                                f"use an image whose sides are multiples of {s}")
        return (b, c, h // s, w // s)

    def image_shape(self, measurement_shape):
        b, c, h, w = measurement_shape
        return (b, c, h * self.factor, w * self.factor)

    def _spectrum(self, r):
        h, w = r.shape[-2] * self.factor, r.shape[-1] * self.factor
        (_, uh, sh, _), (_, uw, sw, _) = self._mats(h, w, r)
        return sh[:, None] * sw[None, :], uh.T @ r @ uw

    def _lift(self, coef):
        h, w = coef.shape[-2] * self.factor, coef.shape[-1] * self.factor
        (_, _, _, vh), (_, _, _, vw) = self._mats(h, w, coef)
        return vh @ coef @ vw.T

    def initial_image(self, y):
        if self.factor == 1:
            return y.clone()
        return F.interpolate(y, scale_factor=self.factor, mode="bicubic", align_corners=False)

    def describe(self):
        return self.name if self.factor == 1 else f"{self.name} x{self.factor}"


class AvgPoolSR(Separable):
    """Super-resolution by s x s average pooling (A A^T = I / s^2)."""

    def __init__(self, scale: int):
        super().__init__("sr_avgpool", int(scale))

    def matrix(self, n):
        return avgpool_matrix(n, self.factor)


class BicubicSR(Separable):
    """Super-resolution by antialiased bicubic downsampling (MATLAB imresize)."""

    def __init__(self, scale: int):
        super().__init__("sr_bicubic", int(scale))

    def matrix(self, n):
        return bicubic_matrix(n, self.factor)


class GaussianBlur(Separable):
    """Gaussian blur with standard deviation ``sigma`` px (``size`` taps, reflect boundary)."""

    def __init__(self, sigma: float, size: int | None = None):
        super().__init__("deblur_gauss", 1)
        self.kernel = gaussian_kernel(float(sigma), size)
        self.sigma = float(sigma)

    def matrix(self, n):
        return conv_matrix(self.kernel, n)

    def describe(self):
        return f"Gaussian blur (sigma {self.sigma:g} px, {len(self.kernel)} taps)"


class UniformBlur(Separable):
    """Box blur of size x size pixels (reflect boundary)."""

    def __init__(self, size: int):
        super().__init__("deblur_uniform", 1)
        self.kernel = torch.full((int(size),), 1.0 / int(size), dtype=torch.float64)

    def matrix(self, n):
        return conv_matrix(self.kernel, n)

    def describe(self):
        return f"uniform blur ({len(self.kernel)} px)"


# ----------------------------------------------------------------------------- convolution (CG)
def motion_kernel(length: float, angle: float, size: int | None = None) -> Tensor:
    """Linear motion-blur kernel: a segment of ``length`` px at ``angle`` degrees through the
    center, rasterized with bilinear splats, normalized to sum 1.  [size, size], size odd."""
    length = max(float(length), 1.0)
    if size is None:
        size = int(math.ceil(length)) | 1
    k = torch.zeros(size, size, dtype=torch.float64)
    c = (size - 1) / 2
    th = math.radians(angle)
    n = max(int(length * 8), 2)
    for t in torch.linspace(-(length - 1) / 2, (length - 1) / 2, n).tolist():
        px, py = c + t * math.cos(th), c - t * math.sin(th)
        x0, y0 = math.floor(px), math.floor(py)
        fx, fy = px - x0, py - y0
        for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            if 0 <= y0 + dy < size and 0 <= x0 + dx < size:
                k[y0 + dy, x0 + dx] += wgt
    return k / k.sum()


def _reflect_pad_adjoint(g: Tensor, p: int) -> Tensor:
    """Adjoint of F.pad(x, (p, p, p, p), mode='reflect') on the last two dims."""
    for dim in (-1, -2):
        n = g.shape[dim] - 2 * p
        core = g.narrow(dim, p, n).clone()
        left = g.narrow(dim, 0, p).flip(dim)          # left pad position k <- x[p - k]
        right = g.narrow(dim, p + n, p).flip(dim)     # right pad position k <- x[n - 2 - k]
        core.narrow(dim, 1, p).add_(left)
        core.narrow(dim, n - 1 - p, p).add_(right)
        g = core
    return g


class Convolution(LinearOperator):
    """Blur by an arbitrary 2-D kernel (same on every channel), reflect boundary.  No cheap SVD:
    the proximal step runs conjugate gradient."""

    closed_form = False

    def __init__(self, kernel: Tensor, name: str = "deblur_motion", label: str = ""):
        if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[0] != kernel.shape[1]:
            raise OperatorError(f"blur kernel must be square with an odd size, got {tuple(kernel.shape)}")
        self.kernel = kernel.double()
        self.name = name
        self.label = label or name
        self.pad = (kernel.shape[0] - 1) // 2

    def _w(self, ref: Tensor) -> Tensor:
        k = _usable(self.kernel.to(device=ref.device, dtype=ref.dtype))
        return k[None, None].expand(ref.shape[1], 1, *k.shape)

    def _check_size(self, h, w):
        if self.pad >= min(h, w):
            raise OperatorError(f"blur kernel of {self.kernel.shape[0]} px is too large for a {w}x{h} image")

    def A(self, x):
        self._check_size(*x.shape[-2:])
        xp = F.pad(x, (self.pad,) * 4, mode="reflect")
        return F.conv2d(xp, self._w(x), groups=x.shape[1])

    def At(self, y):
        self._check_size(*y.shape[-2:])
        g = F.conv_transpose2d(y, self._w(y), groups=y.shape[1])
        return _reflect_pad_adjoint(g, self.pad)

    def measurement_shape(self, image_shape):
        self._check_size(*image_shape[-2:])
        return tuple(image_shape)

    def describe(self):
        return self.label


class MotionBlur(Convolution):
    def __init__(self, length: float, angle: float = 0.0):
        super().__init__(motion_kernel(length, angle), "deblur_motion",
                         f"motion blur ({float(length):g} px at {float(angle):g} deg)")
        self.length, self.angle = float(length), float(angle)


# ----------------------------------------------------------------------------- colorization
class Colorization(LinearOperator):
    """A x = sum_c w_c x_c: the gray image, [B, 1, H, W] (default w = 1/3 each, as DDRM).

    Per pixel A is one row w, so its SVD is s = ||w||, u = 1, v = w / ||w||."""

    name = "colorization"
    closed_form = True

    def __init__(self, weights=(1 / 3, 1 / 3, 1 / 3)):
        self.weights = torch.tensor(weights, dtype=torch.float64)

    def _wt(self, ref):
        return _usable(self.weights.to(device=ref.device, dtype=ref.dtype)).reshape(1, -1, 1, 1)

    def A(self, x):
        if x.shape[1] != len(self.weights):
            raise OperatorError(f"colorization expects {len(self.weights)}-channel images, got {x.shape[1]}")
        return (self._wt(x) * x).sum(1, keepdim=True)

    def At(self, y):
        return self._wt(y) * y

    def measurement_shape(self, image_shape):
        b, c, h, w = image_shape
        if c != len(self.weights):
            raise OperatorError(f"colorization expects {len(self.weights)}-channel images, got {c}")
        return (b, 1, h, w)

    def image_shape(self, measurement_shape):
        b, _, h, w = measurement_shape
        return (b, len(self.weights), h, w)

    def _spectrum(self, r):
        return torch.linalg.vector_norm(self.weights).to(device=r.device, dtype=r.dtype), r

    def _lift(self, coef):
        w = self._wt(coef)
        return w / torch.linalg.vector_norm(w) * coef

    def initial_image(self, y):
        return y.expand(-1, len(self.weights), -1, -1).clone()


# ----------------------------------------------------------------------------- factory
DEFAULT_KERNEL_SIZE = {"deblur_uniform": 9, "deblur_motion": 15}


def operator_errors(name, scale=None, kernel_size=None) -> list:
    """What is wrong with the operator widgets beyond each one's range (None per check that passes):
    the scales super-resolution takes, an odd uniform blur.  Values of another type are not judged
    (a host's validation may see them before conversion).  ``make_operator`` raises the same messages."""
    sr = name in ("sr_avgpool", "sr_bicubic")
    return [
        f"scale must be one of {SR_SCALES} for super-resolution, got {scale}"
        if sr and isinstance(scale, int) and scale not in SR_SCALES else None,
        "kernel_size must be odd (or 0) for the uniform blur"
        if name == "deblur_uniform" and isinstance(kernel_size, int) and kernel_size > 0 and kernel_size % 2 == 0
        else None,
    ]


def make_operator(name: str, *, scale: int = 4, blur_sigma: float = 3.0, kernel_size: int = 0,
                  motion_angle: float = 0.0, keep: Tensor | None = None, mask: Tensor | None = None,
                  image_hw: tuple | None = None) -> LinearOperator:
    """Build an operator by name (``OPERATOR_NAMES``): the one factory of both hosts' degradations.

    scale: super-resolution factor (2, 4 or 8).  blur_sigma: Gaussian std in px.  kernel_size:
    taps of the Gaussian, box size of the uniform blur, length of the motion blur; 0 = default
    (Gaussian 6 sigma + 1, uniform 9, motion 15).  motion_angle: degrees.  Inpainting's pixels:
    ``keep`` (1 = known pixel) or ``mask`` [B, 1, H, W] (1 = missing: keep = 1 - mask), which must
    have the size ``image_hw`` (H, W) of the image when that is given.  OperatorError says what is wrong."""
    if name not in OPERATOR_NAMES:
        raise OperatorError(f"unknown operator {name!r}; expected one of {OPERATOR_NAMES}")
    for err in operator_errors(name, int(scale), int(kernel_size)):
        if err:
            raise OperatorError(err)
    if not kernel_size:
        kernel_size = DEFAULT_KERNEL_SIZE.get(name, 0)
    if name == "inpainting":
        if keep is None:
            keep = 1.0 - _missing(mask, image_hw)
        return Inpainting(keep)
    if name in ("sr_avgpool", "sr_bicubic"):
        return AvgPoolSR(scale) if name == "sr_avgpool" else BicubicSR(scale)
    if name == "deblur_gauss":
        if not blur_sigma > 0:
            raise OperatorError(f"Gaussian blur sigma must be > 0, got {blur_sigma}")
        size = int(kernel_size) if kernel_size and int(kernel_size) > 0 else None
        if size is not None and size % 2 == 0:
            size += 1
        return GaussianBlur(blur_sigma, size)
    if name == "deblur_uniform":
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise OperatorError(f"uniform blur size must be an odd number >= 1, got {kernel_size}")
        return UniformBlur(int(kernel_size))
    if name == "deblur_motion":
        if int(kernel_size) < 1:
            raise OperatorError(f"motion blur length must be >= 1, got {kernel_size}")
        return MotionBlur(int(kernel_size), motion_angle)
    return Colorization()


def _missing(mask: Tensor | None, image_hw) -> Tensor:
    """Inpainting's mask of missing pixels (1 = missing), checked against the image size."""
    if mask is None:
        raise OperatorError("the 'inpainting' operator needs a mask of the missing pixels (white = missing)")
    if image_hw is not None and tuple(mask.shape[-2:]) != tuple(image_hw):
        raise OperatorError(f"the mask is {mask.shape[-1]}x{mask.shape[-2]} pixels but the image is "
                            f"{image_hw[1]}x{image_hw[0]}; give a mask of the image's size")
    return mask


def fit_measurement(op: LinearOperator, y: Tensor, image_shape: tuple | None = None) -> tuple[Tensor, tuple]:
    """A measurement y [B, C, h, w] as ``op`` reads it, and the shape of the image it comes from
    (``image_shape`` where the caller knows it, e.g. a canvas; else the one y implies): a colorization
    measurement is gray (the channel mean of an RGB image).  OperatorError unless y fits."""
    if op.name == "colorization":
        y = y.mean(1, keepdim=True)
    image_shape = op.image_shape(tuple(y.shape)) if image_shape is None else tuple(image_shape)
    op.check(y, image_shape)
    return y, image_shape


# ----------------------------------------------------------------------------- measurements
def degrade(x: Tensor, op: LinearOperator, sigma_y: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
    """Measurement y = A x + sigma_y n, n ~ N(0, I) drawn from ``generator`` (its device).

    x: [B, 3, H, W] in [-1, 1]; sigma_y in the same units (the official inpainting uses 0.01)."""
    y = op.A(x)
    if sigma_y > 0:
        y = y + sigma_y * randn_like(y, generator)
    return op.project(y)


# ----------------------------------------------------------------------------- proximal solve
def _discrepancy_mu(s2: Tensor, c2: Tensor, target: Tensor, mu: float, iters: int = 60) -> Tensor:
    """Per batch item, the mu >= mu_min whose residual sum (mu / (s2 + mu))^2 c2 equals target^2.

    The residual grows monotonically with mu, so bisection on log mu; items already at or above
    the target at mu_min keep mu_min.  Returns [B] float64."""
    B = c2.shape[0]
    s2 = s2.double().expand_as(c2).reshape(B, -1)
    c2 = c2.double().reshape(B, -1)

    def res(m):
        return ((m[:, None] / (s2 + m[:, None])) ** 2 * c2).sum(1)

    mu_min = max(float(mu), 1e-12)
    lo = torch.full((B,), math.log(mu_min), dtype=torch.float64, device=c2.device)
    hi = torch.full((B,), math.log(1e12), dtype=torch.float64, device=c2.device)
    t2 = target.double() ** 2
    done = res(lo.exp()) >= t2
    for _ in range(iters):
        mid = (lo + hi) / 2
        up = res(mid.exp()) < t2
        lo = torch.where(up, mid, lo)
        hi = torch.where(up, hi, mid)
    return torch.where(done, torch.full_like(lo, mu_min), hi.exp())


def prox_closed_form(op: LinearOperator, y: Tensor, x_hat: Tensor, mu: float, sigma_y: float = 0.0) -> Tensor:
    """Exact argmin_x ||y - A x||^2 + mu ||x - x_hat||^2 through the operator's SVD:

        x = x_hat + V diag(s / (s^2 + mu)) U^T (y - A x_hat)

    With sigma_y > 0, mu is raised per batch item to the discrepancy value (see module doc)."""
    if not op.closed_form:
        raise OperatorError(f"the {op.describe()} operator has no closed-form proximal step; use CG")
    r0 = op.project(y) - op.A(x_hat)
    s, c = op._spectrum(r0)
    if sigma_y > 0:
        target = sigma_y * op.num_measurements(y).sqrt()
        mu_b = _bview(_discrepancy_mu(torch.as_tensor(s) ** 2, c ** 2, target, mu), c)
    else:
        mu_b = mu
    return x_hat + op._lift(s * c / (s * s + mu_b))


_CG_SLACK = 1e-3      # relative rise of the CG objective taken as divergence, not round-off

#: CG defaults: run to the tolerance, at most CG_MAX_ITERS iterations.  The official solver stops
#: after 10 (tol 1e-4), which at mu = 1e-4 on a 15 px motion blur (condition ~1e4) leaves 66 % of
#: the correction to the exact proximal solution undone; tol 1e-5 stops after ~220 iterations
#: there, 0.3 % from it (tests/core/test_restoration.py).
CG_MAX_ITERS = 500
CG_TOL = 1e-5


def _cg_objective(y: Tensor, Ax: Tensor, x: Tensor, x_hat: Tensor, mu: float) -> Tensor:
    """||y - A x||^2 + mu ||x - x_hat||^2 per batch item, [B] float64."""
    return _bdot(y - Ax, y - Ax) + mu * _bdot(x - x_hat, x - x_hat)


def prox_cg(op: LinearOperator, y: Tensor, x_hat: Tensor, mu: float, sigma_y: float = 0.0,
            iters: int = CG_MAX_ITERS, tol: float = CG_TOL) -> Tensor:
    """Conjugate gradient on (A^T A + mu I) x = A^T y + mu x_hat, started at x_hat (the official
    solver: 10 iterations, tol 1e-4; here at most ``iters``).  Each batch item stops when its
    normal-equation residual is below tol * ||rhs|| or, with sigma_y > 0, when ||y - A x|| <= sqrt(m)
    sigma_y (discrepancy).  Guarded: exact CG lowers J = ||y - A x||^2 + mu ||x - x_hat||^2
    monotonically, so an item whose iterate turns NaN / inf or raises J clearly (round-off aside)
    stops and keeps its last good iterate."""
    y = op.project(y)
    x = x_hat.clone()
    Ax = op.A(x)
    rhs = op.At(y) + mu * x_hat
    r = rhs - op.At(Ax) - mu * x
    p = r.clone()
    rs = _bdot(r, r)
    stop = rs.sqrt() <= tol * _bdot(rhs, rhs).sqrt()
    target2 = (sigma_y ** 2) * op.num_measurements(y) if sigma_y > 0 else None
    if target2 is not None:
        stop |= _bdot(y - Ax, y - Ax) <= target2
    good, best_j = x, _cg_objective(y, Ax, x, x_hat, mu)
    for _ in range(int(iters)):
        if bool(stop.all()):
            break
        Ap_meas = op.A(p)
        Ap = op.At(Ap_meas) + mu * p
        pAp = _bdot(p, Ap)
        alpha = torch.where(stop | (pAp <= 0), torch.zeros_like(rs), rs / pAp.clamp_min(1e-300))
        if target2 is not None:
            # stop exactly on the noise level: ||(y - A x) - t alpha A p||^2 = target^2, t in [0, 1]
            d, q = y - Ax, Ap_meas
            qq, dq, dd = _bdot(q, q) * alpha ** 2, _bdot(d, q) * alpha, _bdot(d, d)
            crossing = ~stop & (dd - 2 * dq + qq <= target2)
            disc = (dq ** 2 - qq * (dd - target2)).clamp_min(0.0)
            t = torch.where(qq > 0, (dq - disc.sqrt()) / qq.clamp_min(1e-300), torch.ones_like(qq)).clamp(0.0, 1.0)
            alpha = torch.where(crossing, alpha * t, alpha)
        x = x + _bview(alpha, x) * p
        Ax = Ax + _bview(alpha, Ax) * Ap_meas
        r = r - _bview(alpha, r) * Ap
        rs_new = _bdot(r, r)
        j = _cg_objective(y, Ax, x, x_hat, mu)
        ok = torch.isfinite(j) & (j <= best_j * (1.0 + _CG_SLACK))
        good = torch.where(ok.reshape((-1,) + (1,) * (x.ndim - 1)), x, good)
        best_j = torch.where(ok, torch.minimum(j, best_j), best_j)
        stop = stop | ~ok
        stop = stop | (rs_new.sqrt() <= tol * _bdot(rhs, rhs).sqrt())
        if target2 is not None:
            stop = stop | (_bdot(y - Ax, y - Ax) <= target2)
        beta = rs_new / rs.clamp_min(1e-300)
        p = r + _bview(beta, p) * p
        rs = rs_new
    return good


SOLVERS = ("auto", "cg")


def prox(op: LinearOperator, y: Tensor, x_hat: Tensor, mu: float, sigma_y: float = 0.0, solver: str = "auto",
         iters: int = CG_MAX_ITERS, tol: float = CG_TOL) -> Tensor:
    """argmin_x ||y - A x||^2 + mu ||x - x_hat||^2 (fit down to sigma_y): closed form when the
    operator has one and solver is 'auto', else conjugate gradient."""
    if solver not in SOLVERS:
        raise OperatorError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if solver == "auto" and op.closed_form:
        return prox_closed_form(op, y, x_hat, mu, sigma_y)
    return prox_cg(op, y, x_hat, mu, sigma_y, iters=iters, tol=tol)


def residual_norm(op: LinearOperator, y: Tensor, x: Tensor) -> Tensor:
    """||y - A x|| / sqrt(m) per batch item, [B]: comparable to sigma_y (RMS residual)."""
    r = op.project(y) - op.A(x)
    return (_bdot(r, r) / op.num_measurements(y)).sqrt()
