"""DreamSampler core: host-independent PyTorch math (never imports ComfyUI).

Modules: ``schedule`` (parameterizations eps/v/flow in sigma form), ``sampler`` (the DreamSampler
reverse loop), ``regularizers`` (proximal terms), ``inversion`` (DDIM inversion), ``analytic``
(exact Gaussian-mixture denoisers for tests and benchmarks).
"""
from .schedule import Parameterization
from .regularizers import CFGEdit, Regularizer, StepContext
from .sampler import dream_sample
from .inversion import ddim_invert, ddim_reconstruct

__all__ = ["Parameterization", "CFGEdit", "Regularizer", "StepContext", "dream_sample",
           "ddim_invert", "ddim_reconstruct"]
__version__ = "0.1.0"
