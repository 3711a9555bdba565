"""Issue 23: Dream Distill Edit (nodes/edit.py over dreamsampler_core.distill.distill_edit), the
inversion-free edit, on the analytic flow oracle (exact E[x0 | x] of a Gaussian mixture as a ComfyUI
FLOW model, ModelSamplingSD3 shift 3, `simple`) and an eps oracle, in the in-process ComfyUI:
its identities, FlowEdit as its strength = fidelity = 1 case, the mask that keeps the rest exactly
(video latents: tests/core/test_distill_edit.py), and its model rows."""
from __future__ import annotations

import pytest
import torch
from dreamsampler_pack.dreamsampler_core.analytic import GaussianMixture
from dreamsampler_pack.nodes.common import InputError
from dreamsampler_pack.nodes.edit import DreamDistillEdit
from support import peer_nodes as P
from support.inprocess import run

from tools.tiny_models import class_conditioning, oracle_model

SHAPE = (2, 4, 4, 4)


def c(k):
    return class_conditioning(k)


def _sources(gm, n=2):
    return torch.stack([gm.means[0] + gm.stds[0] * torch.randn(64, generator=torch.Generator().manual_seed(s),
                                                               dtype=gm.means.dtype) for s in range(n)]).float()


@pytest.fixture(scope="module")
def gm():
    return GaussianMixture.two_class(64, sep=3.0, std=0.5)


@pytest.fixture(scope="module")
def flow(pack, gm):
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3
    with torch.inference_mode():
        model = ModelSamplingSD3().patch(oracle_model(gm, "flow"), 3.0)[0]
    return model, {"samples": _sources(gm).reshape(SHAPE)}


@pytest.fixture(scope="module")
def eps(pack, gm):
    return oracle_model(gm, "eps"), {"samples": _sources(gm).reshape(SHAPE)}


def edit(model, lat, source=0, target=1, **kw):
    args = dict(seed=7, steps=20, scheduler="simple", start=0.6, strength=1.5, fidelity=1.0, cfg=1.0, source_cfg=1.0)
    args.update(kw)
    return run(DreamDistillEdit, model, c(source), c(target), lat, **args)[0]["samples"]


def class_score(gm, x):
    """Mean log-odds of class 1 vs class 0 under the oracle's mixture (x flattened per row)."""
    x = x.reshape(x.shape[0], -1).double()
    d = [(((x - gm.means[k]) / gm.stds[k]) ** 2 / 2).sum(1) for k in range(2)]
    return float((d[0] - d[1]).mean())


@pytest.mark.parametrize("kind", ["flow", "eps"])
def test_the_target_equal_to_the_source_returns_the_source_exactly(kind, flow, eps):
    model, lat = flow if kind == "flow" else eps
    out = edit(model, lat, source=1, target=1, strength=2.0)
    assert torch.equal(out, lat["samples"])


@pytest.mark.parametrize("kind", ["flow", "eps"])
def test_the_edit_moves_toward_the_target_class(kind, flow, eps, gm):
    model, lat = flow if kind == "flow" else eps
    before = class_score(gm, lat["samples"])
    out = edit(model, lat, start=0.8)
    assert torch.isfinite(out).all()
    assert class_score(gm, out) > before + 10, (before, class_score(gm, out))


def test_strength_1_fidelity_1_is_flowedit(flow):
    """FlowEdit (Algorithm 1, the test-only peer) over the same last n_max levels with the same noise
    is the node's step at strength = fidelity = 1 (target guided against the null prompt)."""
    from comfy_extras.nodes_custom_sampler import BasicScheduler
    model, lat = flow
    sg = run(BasicScheduler, model, "simple", 20, 1.0)[0]
    with torch.inference_mode():
        fe = P.TestFlowEdit().edit(model, source=c(0), target=c(1), negative=c(None), latent_image=lat, sigmas=sg,
                                   n_max=12, n_min=0, n_avg=1, source_cfg=1.0, target_cfg=2.5, seed=7)[0]["samples"]
    ours = run(DreamDistillEdit, model, c(0), c(1), lat, seed=7, steps=20, scheduler="simple", start=0.6,
               strength=1.0, fidelity=1.0, cfg=2.5, source_cfg=1.0, negative=c(None))[0]["samples"]
    other = run(DreamDistillEdit, model, c(0), c(1), lat, seed=7, steps=20, scheduler="simple", start=0.6,
                strength=1.5, fidelity=1.0, cfg=2.5, source_cfg=1.0, negative=c(None))[0]["samples"]
    err = (fe - ours).abs().max()
    assert err < 1e-4, err
    assert (other - fe).abs().max() > 1e3 * err


def test_the_mask_keeps_the_rest_of_the_latent_exactly(flow):
    model, lat = flow
    mask = torch.zeros(1, 32, 32)
    mask[:, :, :16] = 1.0                       # the latent is 4 x 4: the left half (columns 0, 1) edits
    out = edit(model, lat, mask=mask, start=0.8)
    x = lat["samples"]
    assert torch.equal(out[..., 2:], x[..., 2:])
    assert (out[..., :2] - x[..., :2]).abs().max() > 0.1


def test_two_model_rows_per_level_at_cfg_1_three_with_guidance(flow):
    model, lat = flow
    n = SHAPE[0]
    for key, kw, rows in (("edit-cfg1", {}, 2), ("edit-cfg2", {"cfg": 2.0, "negative": c(None)}, 3)):
        counted = P.TestCountRows().patch(model, key)[0]
        edit(counted, lat, steps=10, start=0.5, **kw)
        assert P.ROWS[key] == n * 5 * rows, (key, P.ROWS[key])


def test_clear_errors(flow):
    model, lat = flow
    with pytest.raises(InputError, match="source_cfg"):
        edit(model, lat, source_cfg=2.0)
    with pytest.raises(InputError, match="edits no level"):
        edit(model, lat, steps=1, start=0.2)
    assert "start" in DreamDistillEdit.validate_inputs(steps=2, start=0.1)
