"""Fixtures shared by the core's oracle tests (a test module may define its own ``gm`` instead)."""
import pytest
import torch

from dreamsampler_core.analytic import GaussianMixture


@pytest.fixture(scope="module")
def gm():
    """The two-class Gaussian mixture in 64 dimensions (classes 3 apart, std 0.5)."""
    return GaussianMixture.two_class(64, sep=3.0, std=0.5)


@pytest.fixture(scope="module")
def x0(gm):
    """16 samples of class 0 (seed 1)."""
    return gm.sample(16, torch.Generator().manual_seed(1), cls_index=0)
