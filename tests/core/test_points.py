"""dreamsampler_core.points: the drag points' text formats, their errors and the pixel bounds, and the
point editor's serialization (web/js) read back by the parser (no host)."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from dreamsampler_core import points

REPO = Path(__file__).resolve().parents[2]
FORMAT_JS = REPO / "web" / "js" / "dream_points_format.js"


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
