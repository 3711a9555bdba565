"""Issue 17: the quality benchmark (bench/bench_quality.py) in its small version, through a real
server with the learned shapes model (tools/shapes.py, served by the test-only nodes).
Asserts the instrument works: the judge reads real data, the model's own samples are judged as
their prompt, and every method (editing, inpainting, restoration with Dream Data Consistency vs
SDEdit through ComfyUI's pixel-space VAE, SDE-Drag) produced a finite result of the right shape
(no quality thresholds)."""
import torch

from tools import shapes
from tools.host import import_comfy


def test_the_comfy_wrapper_uses_the_schedule_the_model_was_trained_on():
    import_comfy()
    ms = shapes.comfy_model().get_model_object("model_sampling")
    abar = shapes.alphas_cumprod()
    assert torch.allclose(ms.sigmas.double(), ((1 - abar) / abar).sqrt(), rtol=1e-5)
    assert shapes.comfy_model().get_model_object("latent_format").latent_channels == 3


def test_quality_bench_small_version_through_the_server(tmp_path):
    from bench import bench_quality as bq
    res = bq.run_benchmark(quick=True, n=4, pairs=bq.PAIRS[:2], log=None, server_dir=tmp_path)
    assert res["judge_accuracy"] >= 0.95, res["judge_accuracy"]
    gen = res["sample_accuracy"][3.0]
    assert gen["finite"]
    # the model's own samples judged as their prompt: 0.47 with the committed weights at 8 steps
    # (0.53 at 20), chance is 1/9; a prompt the model ignored would land near chance
    assert gen["overall"] >= 0.3, gen
    grid = bq.grids(True)
    assert {r["family"] for r in res["results"]} == set(grid)
    assert len(res["results"]) == sum(len(v) for v in grid.values())
    for r in res["results"]:
        assert r["finite"], r["label"]
        assert all(torch.isfinite(torch.tensor(list(p.values()))).all() for p in
                   [{k: v for k, v in row.items() if k != "finite"} for row in r["per_pair"]]), r["label"]
    for (fam, si, pi), x in res["_latents"].items():
        items = grid[fam][si].get("items", 4)            # SDE-Drag runs one node per source
        assert x.shape == (items, 3, shapes.SIZE, shapes.SIZE), (fam, si, pi, x.shape)


def test_the_flow_wrapper_is_sd3s_flow_convention():
    """Issue 23: the rectified-flow shapes model is a FLOW model (CONST: denoised = x - sigma * v,
    timestep = sigma * 1000, shift 3) and ModelSamplingSD3 shift 3 + `simple` gives SD3's grid."""
    import_comfy()
    import comfy.model_sampling
    import comfy.samplers
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3
    model = shapes.comfy_model(flow=True)
    ms = model.get_model_object("model_sampling")
    assert isinstance(ms, comfy.model_sampling.CONST) and ms.shift == shapes.FLOW_SHIFT
    assert float(ms.timestep(torch.tensor(0.5))) == 500.0
    patched = ModelSamplingSD3().patch(model, 3.0)[0].get_model_object("model_sampling")
    grid = comfy.samplers.calculate_sigmas(patched, "simple", 28)
    u = 1 - torch.arange(28, dtype=torch.float64) / 28 * (1 - 1 / 1000)      # `simple` on 1000 levels
    assert abs(float(grid[0]) - 1.0) < 1e-6 and float(grid[-1]) == 0.0
    assert torch.allclose(grid[:-1].double(), shapes.shift_time(u), atol=2e-3)


def test_flow_quality_bench_small_version_through_the_server(tmp_path):
    """The flow table's small version: every peer (FlowEdit, RF-Inversion, RF-Solver, FireFlow; test-only
    nodes) and the pack's edits on the flow model through ModelSamplingSD3 shift 3 + `simple`, finite,
    with model rows counted by the wrapper (formulas in tests/comfy/test_peer_nodes.py)."""
    from bench import bench_quality as bq
    res = bq.run_flow_benchmark(quick=True, n=4, pairs=bq.PAIRS[:2], log=None, server_dir=tmp_path)
    assert res["judge_accuracy"] >= 0.95, res["judge_accuracy"]
    gen = res["sample_accuracy"][3.0]
    assert gen["finite"] and gen["shape"] == [4 * shapes.K, 3, shapes.SIZE, shapes.SIZE]
    # the flow model's own samples judged as their prompt: with the committed v2 weights 0.83 at 28 steps,
    # cfg 3 (0.84 at cfg 1; v1 was 0.66 / 0.70), fewer at this test's 8 steps; chance is 1/9
    assert gen["overall"] >= 0.4, gen
    grid = bq.flow_grids(True)
    assert {r["family"] for r in res["results"]} == set(grid)
    for r in res["results"]:
        assert r["finite"], r["label"]
        assert r["rows"] > 0, r["label"]
    rows = {r["label"]: r["rows"] for r in res["results"]}
    assert rows["FlowEdit tar cfg 2.5 n_max 4"] == 4 * 3           # n_max (1 source row + 2 target rows)
    assert rows["FireFlow cfg 2.5 d=0.6"] == (5 + 1) * 3           # (steps + 1) (1 + 2)
    for (fam, si, pi), x in res["_latents"].items():
        assert x.shape == (4, 3, shapes.SIZE, shapes.SIZE), (fam, si, pi, x.shape)
