"""Shared by the in-process node tests.

The pack is loaded into the in-process ComfyUI when this folder is collected, so every test module
imports it at the top under one name, ``dreamsampler_pack`` (its nodes and its core alike): the
classes a node raises or returns are then the ones a test compares with.  (The top-level
``dreamsampler_core`` is the same source imported as a second module; tests/core use that one,
without ComfyUI.)  ``support.inprocess.run`` executes a node.
"""
from types import SimpleNamespace

import pytest
import torch

from tools.host import load_pack

load_pack()


@pytest.fixture(scope="session")
def N(pack):
    """The pack's modules, one attribute each under its own name (as the in-process ComfyUI
    imported them, under ``dreamsampler_pack``):

    - the node modules ``dreamsampler_pack.nodes.<name>``: ``N.common``, ``N.cycle``, ``N.drag``,
      ``N.distill``, ``N.distill_legacy``, ``N.svg``, ``N.csd``, ``N.sampling``, ``N.restoration``,
      ``N.edit``, ``N.regularizers``;
    - the host adapter: ``N.host`` (the package ``dreamsampler_pack.nodes.host``) and ``N.host_vae``
      (``dreamsampler_pack.nodes.host.vae``);
    - ``N.core``: the core modules the tests use, ``dreamsampler_pack.dreamsampler_core.<name>``
      (``N.core.operators``, ``N.core.restoration``).
    """
    from dreamsampler_pack.dreamsampler_core import operators, restoration as core_restoration
    from dreamsampler_pack.nodes import (common, csd, cycle, distill, distill_legacy, drag, edit, host, regularizers,
                                         restoration, sampling, svg)
    from dreamsampler_pack.nodes.host import vae as host_vae
    return SimpleNamespace(common=common, cycle=cycle, drag=drag, distill=distill, distill_legacy=distill_legacy,
                           svg=svg, csd=csd, sampling=sampling, restoration=restoration, edit=edit,
                           regularizers=regularizers, host=host, host_vae=host_vae,
                           core=SimpleNamespace(operators=operators, restoration=core_restoration))


@pytest.fixture(scope="module")
def vae_seed():
    """Seed of ``tiny_vae``'s weights (a test module overrides it to keep its measured numbers)."""
    return 11


@pytest.fixture(scope="module")
def tiny_vae(pack, vae_seed):
    """A small AutoencoderKL (factor 8, 4 latent channels) as ComfyUI's own VAE class."""
    import comfy.ldm.models.autoencoder as ae
    import comfy.sd
    from tools.tiny_models import seeded_init_
    dd = {"double_z": True, "z_channels": 4, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 32,
          "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
    m = seeded_init_(ae.AutoencoderKL(ddconfig=dd, embed_dim=4), vae_seed)
    with torch.inference_mode():
        return comfy.sd.VAE(sd=m.state_dict(), config={"params": {"embed_dim": 4, "ddconfig": dd}})
