"""Tests of dreamsampler_core.svg.io: reading real SVG features (checked against a reference
rasteriser), write -> read round trips, the safety gate (DTD/entities, size, counts, <use> bombs),
and the ComfyUI SVG payload."""
from __future__ import annotations

import gzip
import io
import math
import os
import sys
import types
import warnings

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from dreamsampler_core.svg import (SVGError, SVGPath, SVGScene, from_comfy_svg_data, load_svg,  # noqa: E402
                                   parse_svg, render, save_svg, scene_to_svg, to_comfy_svg_data)

pytestmark = pytest.mark.usefixtures("one_thread")




def _reference(text, w, h):
    """Reference raster (resvg, else cairosvg) over white, [H, W, 3] float64."""
    from PIL import Image

    try:
        import resvg_py

        png = bytes(resvg_py.svg_to_bytes(svg_string=text, width=w, height=h))
    except ImportError:
        cairosvg = pytest.importorskip("cairosvg")
        png = cairosvg.svg2png(bytestring=text.encode(), output_width=w, output_height=h)
    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA")).astype(np.float64) / 255
    return a[..., :3] * a[..., 3:] + (1 - a[..., 3:])


def psnr(a, b) -> float:
    mse = float(((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-20))


# Every feature the reader claims: viewBox scaling, CSS class and style, named/hex/rgb colours,
# group transforms and inherited fill-opacity, rect rx, circle, ellipse, compound even-odd path,
# relative/H/V/Q/T/A commands, element opacity, polygon + stroke-opacity, open polyline stroke,
# line, <use> with x/y, a gradient (approximated by its mean colour, so kept small).
FEATURES_SVG = """<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"
     width="160" height="120" viewBox="0 0 80 60">
  <style>.c { fill: teal; }</style>
  <defs>
    <path id="tri" d="M0 0 L6 0 L3 5 Z" fill="darkorange"/>
    <linearGradient id="g"><stop offset="0" stop-color="#ff0000"/><stop offset="1" stop-color="#0000ff"/></linearGradient>
  </defs>
  <rect x="2" y="3" width="30" height="20" rx="4" fill="orange" stroke="navy" stroke-width="1.5"/>
  <g transform="translate(40 5) rotate(20)" fill-opacity="0.7">
    <circle cx="10" cy="10" r="8" fill="#c0f"/>
    <ellipse cx="25" cy="12" rx="10" ry="5" class="c"/>
  </g>
  <path d="M5 30 h20 v15 h-20 z M10 34 h10 v7 h-10 z" style="fill:crimson;fill-rule:evenodd"/>
  <path d="M30 45 q10 -15 20 0 t20 0 a6 4 0 0 1 -5 10 Z" fill="rgb(30,120,60)" opacity="0.6"/>
  <polygon points="60,30 75,35 65,45" fill="gold" stroke="black" stroke-opacity="0.5"
           stroke-width="1" stroke-linejoin="round"/>
  <polyline points="2,58 20,50 40,58" fill="none" stroke="purple" stroke-width="2"
            stroke-linecap="round" stroke-linejoin="round"/>
  <line x1="50" y1="2" x2="78" y2="20" stroke="#333" stroke-width="1.2" stroke-linecap="round"/>
  <use xlink:href="#tri" x="70" y="48"/>
  <rect x="72" y="2" width="3" height="3" fill="url(#g)"/>
</svg>
"""


def test_features_match_reference_rasterizer():
    scene = parse_svg(FEATURES_SVG)
    assert (scene.width, scene.height) == (160, 120)
    ours = render(scene)[0].numpy()
    ref = _reference(FEATURES_SVG, 160, 120)
    value = psnr(ours, ref)
    assert value >= 35.0, value


def test_features_parsed_values():
    scene = parse_svg(FEATURES_SVG)
    assert len(scene.paths) == 10                 # the <defs> original is not painted
    rect, circle, ellipse, compound, curvy, poly, polyline, line, tri, grad = (
        scene.paths[0], scene.paths[1], scene.paths[2], scene.paths[3], scene.paths[4], scene.paths[5],
        scene.paths[6], scene.paths[7], scene.paths[8], scene.paths[9])
    assert torch.allclose(rect.fill, torch.tensor([1.0, 165 / 255, 0, 1]), atol=1e-6)       # "orange"
    assert rect.stroke_width == pytest.approx(3.0)                                            # ×2 viewBox
    assert float(circle.fill[3]) == pytest.approx(0.7, abs=1 / 255)                           # inherited
    assert torch.allclose(ellipse.fill[:3], torch.tensor([0, 128 / 255, 128 / 255]))          # CSS class
    assert compound.fill_rule == "evenodd" and compound.segments == (4, 4)
    assert float(curvy.fill[3]) == pytest.approx(0.6, abs=1 / 255)                            # opacity
    assert float(poly.stroke[3]) == pytest.approx(0.5, abs=1 / 255)
    assert polyline.fill is None and polyline.closed == (False,) and polyline.points.shape == (7, 2)
    assert line.fill is None and line.stroke is not None
    assert torch.allclose(tri.points[0], torch.tensor([140.0, 96.0]))                        # <use x y>
    assert torch.allclose(grad.fill, torch.tensor([0.5, 0, 0.5, 1]), atol=1e-6)               # mean stop
    # all segments are cubic: closed subpaths have 3 points per segment
    assert rect.points.shape[0] == 3 * rect.num_segments


def test_dropped_elements_warn():
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20"><text x="1" y="10">hi</text>'
           '<rect width="5" height="5"/></svg>')
    with pytest.warns(UserWarning, match="text"):
        scene = parse_svg(svg)
    assert len(scene.paths) == 1


def _round_trip_scene():
    ring = torch.tensor([[10.0, 20], [10, 9], [19, 0], [30, 0], [41, 0], [50, 9], [50, 20], [50, 31],
                         [41, 40], [30, 40], [19, 40], [10, 31]])
    inner = (ring - 30) * 0.4 + 30
    open_pts = torch.tensor([[5.0, 55], [20, 40], [35, 70], [58, 50]])
    return SVGScene(64, 72, [
        SVGPath(torch.cat([ring, inner]), torch.tensor([0.8, 0.2, 0.1, 0.75]), torch.tensor([0, 0, 0.5, 0.6]),
                2.5, "evenodd", segments=(4, 4)),
        SVGPath(open_pts, None, torch.tensor([0.1, 0.7, 0.2, 1.0]), 3.0, closed=False),
        SVGPath(ring * 0.5 + 20, torch.tensor([0.2, 0.3, 0.9, 0.5]), None, 0.0, "nonzero"),
    ], torch.tensor([0.9, 0.9, 0.8]))


def test_write_read_round_trip_preserves_scene():
    scene = _round_trip_scene()
    text = scene_to_svg(scene)
    assert 'fill-rule="evenodd"' in text and 'fill-rule="nonzero"' in text
    back = parse_svg(text)
    assert (back.width, back.height) == (64, 72)
    # the background is written as a full-canvas rect, read back as the first path
    bg_rect, paths = back.paths[0], back.paths[1:]
    assert torch.allclose(bg_rect.fill, torch.tensor([0.9, 0.9, 0.8, 1.0]), atol=1 / 255)
    assert len(paths) == 3
    for a, b in zip(scene.paths, paths):
        assert a.subpaths() == b.subpaths()
        assert torch.allclose(a.points, b.points, atol=1e-3)
        assert a.fill_rule == b.fill_rule
        for ca, cb in ((a.fill, b.fill), (a.stroke, b.stroke)):
            assert (ca is None) == (cb is None)
            if ca is not None:
                assert torch.allclose(ca, cb, atol=1 / 255)
        if a.stroke is not None:
            assert float(b.stroke_width) == pytest.approx(float(a.stroke_width))
    assert psnr(render(back)[0].numpy(), render(scene)[0].numpy()) > 45.0


def test_written_svg_reproduces_render_in_reference():
    scene = _round_trip_scene()
    assert psnr(render(scene)[0].numpy(), _reference(scene_to_svg(scene), 64, 72)) >= 35.0


def test_background_image_is_embedded():
    pytest.importorskip("PIL")
    bg = torch.zeros(8, 8, 3)
    bg[:, 4:] = 1.0
    text = scene_to_svg(SVGScene(8, 8, [], bg))
    assert "data:image/png;base64," in text
    assert psnr(_reference(text, 8, 8), bg.numpy()) > 40.0


def test_load_and_save_files_and_streams(tmp_path):
    scene = _round_trip_scene()
    f = tmp_path / "a.svg"
    save_svg(scene, f)
    a = load_svg(f)
    b = load_svg(io.BytesIO(f.read_bytes()))
    assert torch.equal(a.paths[1].points, b.paths[1].points)
    with pytest.raises(SVGError, match="max_bytes"):
        load_svg(f, max_bytes=100)


def test_comfy_svg_payload():
    scene = _round_trip_scene()
    data = to_comfy_svg_data([scene, scene_to_svg(scene)])
    assert isinstance(data, list) and len(data) == 2 and all(isinstance(d, io.BytesIO) for d in data)
    assert data[0].getvalue() == data[1].getvalue()
    texts = from_comfy_svg_data(types.SimpleNamespace(data=data))      # ComfyUI's SVG(data) object
    assert texts[0].startswith("<svg") and parse_svg(texts[0]).width == 64


def test_utf16_with_bom_is_accepted():
    text = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="4" height="4"/></svg>'
    assert len(parse_svg(text.encode("utf-16")).paths) == 1


# ----------------------------------------------------------------------------------------------
# safety gate
# ----------------------------------------------------------------------------------------------
BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>&lol3;</text></svg>"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>&xxe;</text></svg>"""

PLAIN_DOCTYPE = ('<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
                 '"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">'
                 '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')


@pytest.mark.parametrize("doc", [BILLION_LAUGHS, XXE, PLAIN_DOCTYPE, BILLION_LAUGHS.encode("utf-16")],
                         ids=["billion_laughs", "xxe", "doctype", "utf16_doctype"])
def test_dtd_and_entities_rejected_before_parsing(doc, monkeypatch):
    import xml.etree.ElementTree as ET

    def no_parser(*a, **k):
        raise AssertionError("the XML parser must not see this document")

    monkeypatch.setattr(ET, "fromstring", no_parser)
    monkeypatch.setattr(ET, "iterparse", no_parser)
    with pytest.raises(SVGError, match="DOCTYPE") as err:
        parse_svg(doc)
    assert isinstance(err.value, ValueError)


def _rects(n):
    body = "".join(f'<rect x="{i % 50}" y="{i // 50}" width="1" height="1"/>' for i in range(n))
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">{body}</svg>'


@pytest.mark.parametrize("doc, kwargs, message", [
    (_rects(5), {"max_bytes": 64}, "max_bytes"),
    (_rects(30), {"max_paths": 10}, "max_paths"),
    (_rects(30), {"max_elements": 20}, "max_elements"),
    ('<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><path d="M0 0'
     + " l1 1" * 100 + '"/></svg>', {"max_segments": 50}, "max_segments"),
    (gzip.compress(_rects(2).encode()), {}, "decompress"),
    ("<svg><path d='M0 0'", {}, "well-formed"),
    ('<html xmlns="http://www.w3.org/1999/xhtml"/>', {}, "not an SVG"),
    ('<svg xmlns="http://www.w3.org/2000/svg" width="99999" height="10"/>', {}, "width/height"),
    ("<svg>caf\xe9</svg>".encode("latin-1"), {}, "UTF-8"),
    (12345, {}, "str or bytes"),
    ('<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect width="1e300" height="1"/></svg>',
     {}, "coordinates"),
])
def test_limits_and_malformed_input_raise_actionable_errors(doc, kwargs, message):
    with pytest.raises(SVGError, match=message):
        parse_svg(doc, **kwargs)


def test_use_expansion_bomb_and_cycle_rejected():
    levels = ['<g id="l0"><path d="M0 0h1v1z"/></g>']
    for i in range(1, 7):
        uses = "".join(f'<use href="#l{i - 1}"/>' for _ in range(10))
        levels.append(f'<g id="l{i}">{uses}</g>')
    bomb = f'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9">{"".join(levels)}</svg>'
    assert len(bomb) < 2000                       # tiny file, 10^6 elements once expanded
    with pytest.raises(SVGError, match="<use>"):
        parse_svg(bomb)
    cycle = ('<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9">'
             '<g id="a"><use href="#b"/></g><g id="b"><use href="#a"/></g></svg>')
    with pytest.raises(SVGError, match="cycle"):
        parse_svg(cycle)


def test_external_use_reference_is_not_fetched(tmp_path):
    secret = tmp_path / "other.svg"
    secret.write_text('<svg xmlns="http://www.w3.org/2000/svg"><rect id="r" width="9" height="9"/></svg>')
    doc = (f'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9">'
           f'<use href="{secret}#r"/><rect width="2" height="2"/></svg>')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scene = parse_svg(doc)
    assert len(scene.paths) == 1


def test_missing_parser_package_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "svgelements", None)
    with pytest.raises(ImportError, match="pip install svgelements"):
        parse_svg(_rects(1))


# ----------------------------------------------------------------------------- hostile structure (issue 16)
HEAD = '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="64" height="64">'


def _no_svgelements(monkeypatch):
    import svgelements

    def refuse(*a, **k):
        raise AssertionError("svgelements must not see this document")

    monkeypatch.setattr(svgelements.SVG, "parse", refuse)


def test_deep_nesting_and_use_chains_are_refused_before_parsing(monkeypatch):
    _no_svgelements(monkeypatch)
    deep = HEAD + "<g>" * 10_000 + '<path d="M0 0h1v1z"/>' + "</g>" * 10_000 + "</svg>"
    chain = (HEAD + '<defs><path id="u0" d="M0 0h1v1z"/>'
             + "".join(f'<use id="u{i + 1}" xlink:href="#u{i}"/>' for i in range(300)) + '</defs></svg>')
    for doc in (deep, chain):
        with pytest.raises(SVGError, match="nested more than 200 levels"):
            parse_svg(doc)


def test_oversized_path_data_is_refused_before_parsing(monkeypatch):
    _no_svgelements(monkeypatch)
    for d in ("M0 0 " + "L1 1 " * 300_000, "M0 0 L" + " 1 1" * 500_000, "M0 0 " + "a1 1 0 0 0 1 1 " * 250_000):
        with pytest.raises(SVGError, match="path data holds at least"):
            parse_svg(HEAD + f'<path d="{d}"/></svg>')
    # a path reused through <use> counts once per copy
    copies = "".join('<use xlink:href="#p"/>' for _ in range(30))
    with pytest.raises(SVGError, match="<use> copies included"):
        parse_svg(HEAD + '<defs><path id="p" d="M0 0' + " L1 1" * 10_000 + '"/></defs>' + copies + "</svg>")


@pytest.mark.parametrize("d", ["M0 0 L10 0 L10 10 Z", "M0,0 10,0 10,10", "m1 1h5v5h-5z", "M0 0 Q1 1 2 2 T4 4 6 6",
                               "M0 0 C1 1 2 2 3 3 4 4 5 5 6 6", "M0 0 S1 1 2 2 3 3 4 4", "M1e1-2.5.5.5L3 3",
                               "M0 0 A5 5 0 1 1 10 0 5 5 0 1 1 0 0", "M0 0 l1 1 1 1 1 1 M5 5 h1 2 3 v1 2 3 z"])
def test_segment_precount_never_exceeds_the_parsed_segments(d):
    import xml.etree.ElementTree as ET
    from dreamsampler_core.svg.io import _path_segments_lower_bound
    doc = HEAD + f'<path d="{d}" fill="none" stroke="red"/></svg>'
    bound = _path_segments_lower_bound(ET.fromstring(doc).find("{http://www.w3.org/2000/svg}path"))
    parsed = sum(p.num_segments for p in parse_svg(doc).paths)
    assert 0 < bound <= parsed, (d, bound, parsed)


@pytest.mark.parametrize("attrs", ['opacity="NaN"', 'fill-opacity="nan"', 'stroke="red" stroke-opacity="inf"',
                                   'style="fill-opacity: NaN"', 'stroke="red" stroke-width="1e39"',
                                   'stroke="red" stroke-width="nan"', 'fill-opacity="1e400"'])
def test_non_finite_opacities_and_stroke_widths_are_refused(attrs):
    with pytest.raises(SVGError, match="opacity|stroke-width") as err:
        parse_svg(HEAD + f'<path d="M0 0 L9 0 L9 9 Z" {attrs}/></svg>')
    assert "Error" not in str(err.value)


def test_style_sheet_opacities_are_checked_and_percentages_read():
    with pytest.raises(SVGError, match="fill-opacity"):
        parse_svg(HEAD + '<style>path { fill-opacity: inf }</style><path d="M0 0 L9 0 L9 9 Z"/></svg>')
    # unparsable values are ignored as browsers do; percentages are opacities
    scene = parse_svg(HEAD + '<path d="M0 0 L9 0 L9 9 Z" opacity="abc"/><path d="M0 0 L9 9 Z" opacity="50%"/></svg>')
    assert [float(p.fill[3]) for p in scene.paths] == [1.0, 0.5]


def test_lone_surrogate_and_canvas_area():
    with pytest.raises(SVGError, match="lone UTF-16 surrogate"):
        parse_svg(HEAD + "<!-- \udcff --></svg>")
    for w, h in ((8192, 8192), (8000, 3000), (9000, 10)):
        with pytest.raises(SVGError, match=f"{w}x{h} px"):
            parse_svg(f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}"/>')
    assert parse_svg('<svg xmlns="http://www.w3.org/2000/svg" width="8192" height="2048"/>').width == 8192


def test_writer_never_writes_nan_or_markup():
    p = SVGPath(torch.tensor([[0.0, 0], [1, 0], [1, 1]]), fill=torch.tensor([1.0, 0, 0, float("nan")]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        scene_to_svg(SVGScene(8, 8, [p]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # the dropped <text>
        scene = parse_svg(HEAD + '<script>alert(1)</script><path d="M0 0 L9 0 L9 9 Z"/><text>]]&gt;</text></svg>')
    text = scene_to_svg(scene)
    assert "<script" not in text and "]]>" not in text and "nan" not in text
