"""dreamsampler_core.formats.dragbench: DragBench items (prompt.json, meta_data.pkl) through the
restricted unpickler: every protocol's numpy arrays load, code, memory bombs and malformed arrays
are refused with the field named (no host)."""
import itertools
import json
import os
import pickle

import numpy as np
import pytest

from dreamsampler_core import points
from dreamsampler_core.formats import dragbench



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
