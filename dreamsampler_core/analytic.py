"""Analytic denoisers: Gaussian-mixture data whose Tweedie estimate is known in closed form.

Data: x0 ~ sum_k pi_k N(mu_k, diag(std_k^2)) in R^d (latents are flattened).  Under
x = a x0 + s eps the component marginal is N(a mu_k, a^2 std_k^2 + s^2) and

    E[x0 | x] = sum_k r_k(x) [ mu_k + a std_k^2 / (a^2 std_k^2 + s^2) (x - a mu_k) ],

with r_k the posterior responsibilities.  A "condition" is a vector of class weights: the null
condition is the prior pi, a text prompt "class k" is one-hot.  Used by the tests as exact
models (they must reproduce the papers' identities) and by the benchmarks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .schedule import Parameterization


@dataclass
class GaussianMixture:
    means: Tensor        # [K, d]
    stds: Tensor         # [K, d]
    weights: Tensor      # [K]

    @classmethod
    def two_class(cls, d: int, sep: float = 3.0, std: float = 0.5, dtype=torch.float64, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        direction = torch.randn(d, generator=g, dtype=dtype)
        direction = direction / direction.norm() * sep * math.sqrt(d) / 2
        means = torch.stack([-direction / math.sqrt(d), direction / math.sqrt(d)])
        stds = torch.full((2, d), std, dtype=dtype)
        return cls(means, stds, torch.tensor([0.5, 0.5], dtype=dtype))

    @classmethod
    def gaussian(cls, mean: Tensor, std: Tensor):
        return cls(mean[None], std[None], torch.ones(1, dtype=mean.dtype))

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def class_weights(self, cls_index: int | None) -> Tensor:
        if cls_index is None:
            return self.weights
        w = torch.zeros_like(self.weights)
        w[cls_index] = 1.0
        return w

    def log_resp(self, x: Tensor, a, s, weights: Tensor) -> Tensor:
        """log r_k(x) up to a constant; x: [B, d]."""
        var = a * a * self.stds ** 2 + s * s                                  # [K, d]
        diff = x[:, None, :] - a * self.means[None]                          # [B, K, d]
        ll = -0.5 * ((diff ** 2) / var[None] + torch.log(var)[None]).sum(-1)  # [B, K]
        return ll + torch.log(weights.clamp_min(1e-300))[None]

    def denoise(self, x: Tensor, sigma, param: Parameterization, weights: Tensor | None = None) -> Tensor:
        """Exact E[x0 | x] at noise level sigma; x: [B, ...] (flattened internally)."""
        shape = x.shape
        xf = x.reshape(shape[0], -1).to(self.means.dtype)
        w = self.weights if weights is None else weights.to(self.means.dtype)
        a = float(param.signal(torch.as_tensor(sigma, dtype=torch.float64)))
        s = float(param.noise(torch.as_tensor(sigma, dtype=torch.float64)))
        if s == 0.0:
            return x
        r = torch.softmax(self.log_resp(xf, a, s, w), dim=-1)                # [B, K]
        var0 = self.stds ** 2
        gain = a * var0 / (a * a * var0 + s * s)                             # [K, d]
        post = self.means[None] + gain[None] * (xf[:, None, :] - a * self.means[None])
        return (r[..., None] * post).sum(1).reshape(shape).to(x.dtype)

    def sample(self, n: int, generator: torch.Generator, cls_index: int | None = None) -> Tensor:
        w = self.class_weights(cls_index)
        k = torch.multinomial(w.float(), n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=self.means.dtype)
        return self.means[k] + self.stds[k] * z

    def classify(self, x0: Tensor) -> Tensor:
        """Most likely component of clean samples x0: [B, ...] -> [B]."""
        xf = x0.reshape(x0.shape[0], -1).to(self.means.dtype)
        return self.log_resp(xf, 1.0, 0.0, self.weights).argmax(-1)


def mixture_denoiser(gm: GaussianMixture, param: Parameterization, cls_index: int | None = None):
    """denoise(x, sigma) -> x0 for a fixed condition (None = null / unconditional)."""
    w = gm.class_weights(cls_index)
    return lambda x, sigma: gm.denoise(x, sigma, param, w)
