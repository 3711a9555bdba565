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
