"""SDE-Drag geometry, point parsing, DragBench loaders and the point editor's format (no host).

Claims checked (spec csd §3.3, §3.5, §3.9): patches shrink at borders to a shared shape; the paste
overwrites the perturbed source where patches overlap; the beta perturbation keeps unit variance;
sub-drags follow P + trunc(k/m d); a no-op drag reconstructs the latent exactly and a mask keeps
the black region exactly; bad points give clear errors; the pickle loader refuses code.
"""
import itertools
import json
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamsampler_core import drag, points
from dreamsampler_core.analytic import GaussianMixture, mixture_denoiser
from dreamsampler_core.formats import dragbench
from dreamsampler_core.schedule import Parameterization, scaled_linear_sigmas

REPO = Path(__file__).resolve().parents[2]
FORMAT_JS = REPO / "web" / "js" / "dream_points_format.js"
VE = Parameterization("ve")


# ----------------------------------------------------------------------------- points
def test_parse_formats():
    kj = '[{"x": 10, "y": 20}, {"x": 30, "y": 25.5}, {"x": 1, "y": 2}, {"x": 3, "y": 4}]'
    assert points.parse_drag_points(kj) == ([(10, 20), (1, 2)], [(30, 25.5), (3, 4)])
    assert points.parse_drag_points("[[10, 20], [30, 25]]") == ([(10, 20)], [(30, 25)])
    bench = '{"source": [[10, 20]], "target": [[30, 25]], "prompt": "a cat"}'
    assert points.parse_drag_points(bench) == ([(10, 20)], [(30, 25)])
    two = points.parse_drag_points('[{"x": 1, "y": 2}]', '[{"x": 5, "y": 6}]')
    assert two == ([(1, 2)], [(5, 6)])
    s = points.format_points([(1, 2), (7, 8)], [(3.5, 4), (9, 10)])
    assert points.parse_drag_points(s) == ([(1, 2), (7, 8)], [(3.5, 4), (9, 10)])


@pytest.mark.parametrize("text, target, message", [
    ("", "", "no drag points"),
    ("[]", "", "no drag points"),
    ("[{\"x\": 1, \"y\": 2", "", "not valid JSON"),
    ("{\"x\": 1}", "", "\"source\" and \"target\""),
    ("\"hello\"", "", "JSON list"),
    ("[{\"x\": 1, \"y\": 2}]", "", "pairs"),
    ("[{\"x\": 1}, {\"x\": 2, \"y\": 3}]", "", "keys \"x\" and \"y\""),
    ("[{\"x\": \"a\", \"y\": 2}, {\"x\": 2, \"y\": 3}]", "", "finite number"),
    ("[{\"x\": 1, \"y\": 2}]", "[{\"x\": 1, \"y\": 2}, {\"x\": 3, \"y\": 4}]", "must pair up"),
    ("[[1, 2, 3], [4, 5]]", "", "[x, y]"),
])
def test_parse_errors_are_clear(text, target, message):
    with pytest.raises(points.PointsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        points.parse_drag_points(text, target)


def test_points_outside_image():
    points.check_points_inside([(0, 0), (511, 511)], 512, 512)
    for p in [(512, 10), (-1, 3), (10, 600)]:
        with pytest.raises(points.PointsError, match="outside the 512x512 image"):
            points.check_points_inside([p], 512, 512)
    assert points.to_latent_points([(0, 0), (15.9, 8), (511, 7)], 8, 8) == [(0, 0), (1, 1), (63, 0)]


# ----------------------------------------------------------------------------- geometry
def test_substeps():
    assert drag.substep_count([(0, 0)], [(1, 1)], 2.0) == 1
    assert drag.substep_count([(0, 0)], [(10, 0)], 2.0) == 5
    assert drag.substep_count([(0, 0)], [(5, 0)], 2.0) == 3          # 5/3 is closer to 2 than 5/2
    assert drag.substep_count([(0, 0), (0, 0)], [(2, 0), (0, 9)], 2.0) == 5   # longest: 9/5 beats 9/4
    P, Q, m = [(10, 10)], [(3, 17)], 3
    first, _ = drag.substep_points(P, Q, m, 0)
    _, last = drag.substep_points(P, Q, m, m - 1)
    assert first == P and last == Q
    assert drag.substep_points(P, Q, m, 1) == ([(8, 12)], [(6, 14)])  # trunc toward zero: -7/3 -> -2


def test_border_clipping_gives_equal_shapes():
    H = W = 16
    assert drag.patch_extent((0, 0), (3, 3), 5, H, W) == (0, 5, 0, 5)
    assert drag.patch_extent((15, 14), (12, 12), 5, H, W) == (5, 2, 5, 1)
    z = torch.arange(H * W, dtype=torch.float64).reshape(1, 1, H, W)
    out = drag.copy_paste(z, [(15, 14)], [(12, 12)], 5, alpha=2.0, beta=1.0)
    # patch rows y-5 .. y+1, cols x-5 .. x: source rows 9..15, cols 10..15 -> target rows 7..13, cols 7..12
    assert torch.equal(out[0, 0, 7:14, 7:13], 2.0 * z[0, 0, 9:16, 10:16])
    outside = torch.ones(H, W, dtype=torch.bool)
    outside[7:14, 7:13] = False
    outside[9:16, 10:16] = False
    assert torch.equal(out[0, 0][outside], z[0, 0][outside])


def test_overlapping_patches_paste_overwrites_perturbed_source():
    z = torch.randn(1, 4, 20, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p, q, r, beta, alpha = (8, 8), (10, 8), 3, 0.3, 1.1
    out = drag.copy_paste(z, [p], [q], r, alpha, beta, generator=torch.Generator().manual_seed(7))
    noise = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(7)).double()
    feat = z[..., 5:11, 5:11]
    perturbed = beta * feat + (1 - beta ** 2) ** 0.5 * noise
    assert torch.allclose(out[..., 5:11, 5:7], perturbed[..., :, :2])        # source-only columns
    assert torch.equal(out[..., 5:11, 7:13], alpha * feat)                   # the paste wins on the overlap
    # pairs run in order: pair 2 copies what pair 1 pasted (the original at (14, 14) is gone)
    out2 = drag.copy_paste(z, [(2, 2), (14, 14)], [(14, 14), (2, 2)], 2, 1.0, 1.0)
    assert torch.equal(out2[..., 12:16, 12:16], z[..., 0:4, 0:4])
    assert torch.equal(out2[..., 0:4, 0:4], z[..., 0:4, 0:4])


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.9])
def test_beta_perturbation_preserves_variance(beta):
    z = torch.randn(1, 4, 96, 96, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = drag.copy_paste(z, [(32, 48)], [(80, 48)], 16, 1.0, beta, generator=torch.Generator().manual_seed(2))
    src_new, src_old = out[..., 32:64, 16:48], z[..., 32:64, 16:48]
    assert abs(float(src_new.var()) - 1.0) < 0.05                            # 4096 samples
    corr = float(((src_new - src_new.mean()) * (src_old - src_old.mean())).mean() / (src_new.std() * src_old.std()))
    assert abs(corr - beta) < 0.05


def test_guidance_ramp():
    assert drag.guidance_ramp(5, 3.0) == [3.0, 2.5, 2.0, 1.5, 1.0]
    assert drag.guidance_ramp(3, 3.0, "constant") == [3.0] * 3
    assert drag.guidance_ramp(1, 3.0) == [3.0]


# ----------------------------------------------------------------------------- algorithm
def _setup():
    table = scaled_linear_sigmas()
    sig = torch.stack([table[t] for t in range(5, 300, 20)][::-1])
    gm = GaussianMixture.two_class(4 * 8 * 8, sep=3.0, std=0.5)
    den = mixture_denoiser(gm, VE, 0)
    x0 = gm.sample(1, torch.Generator().manual_seed(0), 0).reshape(1, 4, 8, 8)
    return sig, (lambda x, s: den(x.reshape(1, -1), s).reshape(x.shape)), x0


def test_noop_drag_reconstructs_exactly_and_mask_keeps_black_region():
    sig, den, x0 = _setup()
    same = drag.sde_drag(den, x0, sig, VE, [(3, 3)], [(3, 3)], alpha=1.0, beta=1.0, radius=2,
                         generator=torch.Generator().manual_seed(1))
    assert float((same - x0).abs().max()) < 1e-10                            # Cycle-SDE: exact
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    mask[..., :, :5] = 1.0
    calls = []
    moved = drag.sde_drag(den, x0, sig, VE, [(1, 2)], [(4, 5)], mask=mask, radius=1, step_size=2.0,
                          generator=torch.Generator().manual_seed(1), callback=lambda *a: calls.append(a[:3]))
    assert torch.equal(moved[..., 5:], x0[..., 5:])                          # kept exactly
    assert float((moved[..., :5] - x0[..., :5]).abs().max()) > 1e-3
    m = drag.substep_count([(1, 2)], [(4, 5)], 2.0)
    assert m == 2 and len(calls) == 2 * m * (len(sig) - 1)
    with pytest.raises(points.PointsError, match="outside"):
        drag.sde_drag(den, x0, sig, VE, [(8, 0)], [(1, 1)])
    with pytest.raises(ValueError, match="sigma > 0"):
        drag.sde_drag(den, x0, torch.cat([sig, sig.new_zeros(1)]), VE, [(1, 1)], [(2, 2)])


# ----------------------------------------------------------------------------- DragBench
def _png(path, arr):
    from PIL import Image
    Image.fromarray(arr).save(path)


def test_dragbench_prompt_json(tmp_path):
    item = tmp_path / "art_0"
    item.mkdir()
    _png(item / "origin_image.png", np.zeros((32, 48, 3), np.uint8))
    _png(item / "mask.png", np.full((32, 48), 255, np.uint8))
    (item / "prompt.json").write_text(json.dumps({"source": [[5, 6], [7, 8]], "target": [[9, 10], [11, 12]],
                                                  "prompt": "a photo of a cat"}))
    it = dragbench.load_dragbench_item(item)
    assert it.prompt == "a photo of a cat" and it.sources == [(5, 6), (7, 8)] and it.targets == [(9, 10), (11, 12)]
    assert it.image_path.name == "origin_image.png" and it.mask_path.name == "mask.png"
    (item / "prompt.json").write_text('{"source": [[1, 2]], "target": []}')
    with pytest.raises(points.PointsError, match="1 source points but 0 target"):
        dragbench.load_dragbench_item(item)


def test_dragbench_meta_pkl_and_refusal(tmp_path):
    item = tmp_path / "animals" / "cat_1"
    item.mkdir(parents=True)
    _png(item / "original_image.png", np.zeros((16, 16, 3), np.uint8))
    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 1
    meta = {"prompt": "a dog", "points": [np.array([1, 2]), np.array([3, 4]), [5, 6], (7.5, 8)], "mask": mask}
    (item / "meta_data.pkl").write_bytes(pickle.dumps(meta, protocol=2))
    it = dragbench.load_dragbench_item(item)
    assert it.prompt == "a dog" and it.sources == [(1, 2), (5, 6)] and it.targets == [(3, 4), (7.5, 8)]
    assert np.array_equal(it.mask, mask)
    (item / "meta_data.pkl").write_bytes(pickle.dumps(meta, protocol=4))
    assert dragbench.load_dragbench_item(item).sources == [(1, 2), (5, 6)]

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    (item / "meta_data.pkl").write_bytes(pickle.dumps({"prompt": "x", "points": [], "mask": Evil()}))
    with pytest.raises(points.PointsError, match="refusing to load"):
        dragbench.load_dragbench_item(item)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(points.PointsError, match="neither prompt.json"):
        (item / "meta_data.pkl").unlink()
        dragbench.load_dragbench_item(item)
    with pytest.raises(points.PointsError, match="not a folder"):
        dragbench.load_dragbench_item(tmp_path / "missing")


# ----------------------------------------------------------------------------- editor format
CLICKS = [{"x": 10.4, "y": 20.6}, {"x": 30, "y": 40}, {"x": 0, "y": 511.2}, {"x": 255.5, "y": 3}, {"x": 7, "y": 7}]


def test_point_editor_serialization_round_trips_into_the_parser():
    """Run the editor's own serializer (web/js/dream_points_format.js) in node and parse its output."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node.js is not installed; the editor format is also pinned by the literal below")
    script = (f"import * as f from {json.dumps(FORMAT_JS.as_uri())};\n"
              f"const clicks = {json.dumps(CLICKS)};\n"
              f"const back = f.parsePoints({json.dumps(points.format_points([(1, 2), (7.5, 8)], [(3, 4), (9, 10)]))});\n"
              "const view = f.fitImage(512, 256, 256, 256);\n"
              "console.log(JSON.stringify({s: f.serializePoints(clicks), back,\n"
              "  hit: f.canvasToImage(128, 128, view), miss: f.canvasToImage(5, 5, view)}));\n")
    res = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    # the dangling fifth click (a source without target) is not written; coordinates are rounded
    assert json.loads(out["s"]) == [{"x": 10, "y": 21}, {"x": 30, "y": 40}, {"x": 0, "y": 511}, {"x": 256, "y": 3}]
    assert points.parse_drag_points(out["s"]) == ([(10, 21), (0, 511)], [(30, 40), (256, 3)])
    assert out["back"] == [{"x": 1, "y": 2}, {"x": 3, "y": 4}, {"x": 7.5, "y": 8}, {"x": 9, "y": 10}]
    assert out["hit"] == {"x": 256, "y": 128} and out["miss"] is None


def test_point_editor_literal_format():
    # what JSON.stringify writes for the editor's points; must stay parseable by the node
    assert points.parse_drag_points('[{"x":10,"y":21},{"x":30,"y":40}]') == ([(10, 21)], [(30, 40)])
    js = FORMAT_JS.read_text()
    assert "JSON.stringify(points.slice(0, complete).map((p) => ({ x: Math.round(p.x), y: Math.round(p.y) })))" in js


# ----------------------------------------------------------------------------- hostile DragBench files
class _Reduce:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _meta(tmp_path, points, mask=None, protocol=2, prompt="a dog"):
    path = tmp_path / "meta_data.pkl"
    path.write_bytes(pickle.dumps({"prompt": prompt, "points": points, "mask": mask}, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_meta_pkl_numpy_arrays_and_scalars_in_every_protocol(tmp_path, protocol):
    mask = np.arange(12, dtype=np.float64).reshape(3, 4)
    pts = [np.array([1, 2], np.int64), np.array([3.5, 4], np.float32), [np.int64(5), np.float32(6.5)], (7, 8)]
    meta = dragbench.read_meta_pkl(_meta(tmp_path, pts, np.asfortranarray(mask), protocol))
    assert meta["sources"] == [(1, 2), (5, 6.5)] and meta["targets"] == [(3.5, 4), (7, 8)]
    assert meta["mask"].dtype == np.float32 and np.array_equal(meta["mask"], mask)
    big_endian = dragbench.read_meta_pkl(_meta(tmp_path, [[1, 2], [3, 4]], mask.astype(">i4"), protocol))["mask"]
    assert np.array_equal(big_endian, mask)


def test_meta_pkl_memory_bombs_and_uninitialised_arrays_are_refused(tmp_path):
    import numpy.core.multiarray as ma
    cases = [
        (_Reduce(bytes, (400_000_000,)), "builtins.bytes"),
        (_Reduce(bytearray, (400_000_000,)), "the global builtins.bytearray"),
        (_Reduce(np.ndarray, ((2_000_000, 2),)), "uninitialised"),
        (_Reduce(ma._reconstruct, (np.ndarray, (64, 2), b"f")), "without data"),
        (_Reduce(np.empty, ((64, 2),)), "the global numpy"),
        (_Reduce(os.system, ("echo pwned",)), "the global posix.system"),
    ]
    for (bomb, words), protocol in itertools.product(cases, (2, 4)):
        with pytest.raises(points.PointsError, match="refusing to load") as err:
            dragbench.read_meta_pkl(_meta(tmp_path, bomb, protocol=protocol))
        assert words in str(err.value)
    with pytest.raises(points.PointsError, match="numeric arrays only"):
        dragbench.read_meta_pkl(_meta(tmp_path, [[1, 2], [3, 4]], np.array([["a"]], dtype=object)))


class _FakeArray:
    """Pickles as numpy does (_reconstruct(ndarray, (0,), b'b') + BUILD), with a chosen array state."""

    def __init__(self, state):
        self.state = state

    def __reduce__(self):
        import numpy.core.multiarray as ma
        return ma._reconstruct, (np.ndarray, (0,), b"b"), self.state


def test_meta_pkl_array_data_must_match_its_shape(tmp_path):
    good = _FakeArray((1, (2, 2), np.dtype("u1"), False, b"\1\0\1\0"))
    ok = dragbench.read_meta_pkl(_meta(tmp_path, [[1, 2], [3, 4]], good))
    assert ok["mask"].tolist() == [[1, 0], [1, 0]]
    for state in ((1, (4000, 4000, 4), np.dtype("u1"), False, b"\0"),          # 64 M elements announced
                  (1, (4, 2), np.dtype("f4"), False, b"\0" * 8),                # too little data
                  (1, (2, 2), np.dtype("u1"), False, [1, 2, 3, 4])):            # object-style list data
        with pytest.raises(points.PointsError, match="refusing to load"):
            dragbench.read_meta_pkl(_meta(tmp_path, [[1, 2], [3, 4]], _FakeArray(state)))


def test_meta_pkl_shape_and_size_errors_name_the_field(tmp_path):
    with pytest.raises(points.PointsError, match="'points' must be a list"):
        dragbench.read_meta_pkl(_meta(tmp_path, 5))
    with pytest.raises(points.PointsError, match="'mask' rows have different lengths"):
        dragbench.read_meta_pkl(_meta(tmp_path, [[1, 2], [3, 4]], [[1, 2], [3]]))
    with pytest.raises(points.PointsError, match="at most 100 pairs"):
        dragbench.read_meta_pkl(_meta(tmp_path, [[1, 2]] * 202, protocol=4))
    with pytest.raises(points.PointsError, match="'prompt' must be text"):
        dragbench.read_meta_pkl(_meta(tmp_path, [[1, 2], [3, 4]], prompt=[[["x"]]]))
    big = tmp_path / "big.pkl"
    big.write_bytes(b"\x80\x04" + b"\0" * (dragbench.MAX_META_PKL_BYTES + 1))
    with pytest.raises(points.PointsError, match="MB limit"):
        dragbench.read_meta_pkl(big, "item/meta_data.pkl")


def test_prompt_json_and_points_text_are_bounded(tmp_path):
    path = tmp_path / "prompt.json"
    path.write_text('{"source": ' + "[" * 50_000 + "]" * 50_000 + ', "target": []}')
    with pytest.raises(points.PointsError, match="nested more than 16 levels"):
        dragbench.read_prompt_json(path, "x/prompt.json")
    path.write_text('{"source": 5, "target": 5}')
    with pytest.raises(points.PointsError, match="'source' must be a list"):
        dragbench.read_prompt_json(path)
    # brackets inside strings do not count as nesting
    assert points.json_depth('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[", "b": [[1]]}', 16) == 3
    with pytest.raises(points.PointsError, match="nested"):
        points.parse_drag_points("[" * 20_000 + "]" * 20_000)
    with pytest.raises(points.PointsError, match="characters long, at most"):
        points.parse_drag_points(json.dumps([{"x": 1, "y": 1}] * 10_000))
    with pytest.raises(points.PointsError, match="101 pairs"):
        points.parse_drag_points(json.dumps([[1, 1]] * 202))
    assert len(points.parse_drag_points(json.dumps([[1, 1]] * 200))[0]) == 100
