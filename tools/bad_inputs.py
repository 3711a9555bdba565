"""The bad-input catalog's cases (malformed and hostile widget values and SVG texts), shared by
tests/e2e/test_bad_input_catalog.py (each case's message is checked there) and the soak
(tools/soak.py, which mixes them into a long session)."""
import json

NO_FILE = "(none: use svg_text)"

SVG_HEAD = '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
SQUARE = '<path d="M0 0 L10 0 L10 10 Z"/>'
BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
                  '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><text>&lol2;</text></svg>')
XXE = ('<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><text>&xxe;</text></svg>')
MANY_PATHS = SVG_HEAD + SQUARE * 20000 + '</svg>'
USE_BOMB = ('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="64" height="64">'
            '<path id="a" d="M0 0 L1 0 L1 1 Z"/>'
            + "".join(f'<g id="g{i}"><use xlink:href="#{"a" if i == 0 else "g%d" % (i - 1)}"/>'
                      f'<use xlink:href="#{"a" if i == 0 else "g%d" % (i - 1)}"/></g>' for i in range(40))
            + "</svg>")
DEEP_GROUPS = SVG_HEAD + "<g>" * 10000 + SQUARE + "</g>" * 10000 + "</svg>"
# 300 <use> each pointing at the previous one: few elements, but nested 300 deep once expanded
USE_CHAIN = ('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="64" '
             'height="64"><defs><path id="u0" d="M0 0 L9 0 L9 9 Z"/>'
             + "".join(f'<use id="u{i + 1}" xlink:href="#u{i}"/>' for i in range(300)) + '</defs>'
             '<use xlink:href="#u300"/></svg>')
LONG_PATH = SVG_HEAD + '<path d="M0 0 ' + "L1 1 " * 1_000_000 + '"/></svg>'          # 5 MB, 1 M segments
# 1100 full-canvas squares on 1024 x 1024: 1.15 G pixel-layers to rasterize (a 50 kB file)
LAYER_BOMB = ('<svg xmlns="http://www.w3.org/2000/svg" width="1024" height="1024">'
              + '<rect width="1024" height="1024" fill="red"/>' * 1100 + '</svg>')
SCRIPT_SVG = (SVG_HEAD + '<script>alert(document.domain)</script><path d="M0 0 L30 0 L30 30 Z" fill="#ff0000"/>'
              '<text>]]&gt;</text></svg>')

# (case id, workflow (tools.workflows.workflow_path), node class, {input: value}, words the message must contain[,
# class that raises it])
WIDGET_CASES = [
    ("sampler-negative-steps", "real_image_editing", "DreamSampler", {"steps": -3}, ["steps", "at least"]),
    ("sampler-zero-steps", "real_image_editing", "DreamSampler", {"steps": 0}, ["steps", "at least"]),
    ("sampler-absurd-steps", "real_image_editing", "DreamSampler", {"steps": 10 ** 7}, ["steps", "at most"]),
    ("sampler-zero-denoise", "real_image_editing", "DreamSampler", {"denoise": 0.0}, ["denoise", "greater than 0"]),
    ("sampler-eta-above-1", "real_image_editing", "DreamSampler", {"eta": 1.5}, ["eta", "at most"]),
    ("sampler-negative-cfg", "real_image_editing", "DreamSampler", {"cfg": -1.0}, ["cfg", "at least"]),
    ("sampler-eta-wrong-type", "real_image_editing", "DreamSampler", {"eta": "lots"}, ["eta", "lots"]),
    ("sampler-unknown-scheduler", "real_image_editing", "DreamSampler", {"scheduler": "bogus"},
     ["scheduler", "bogus"]),
    ("sampler-unknown-eta-schedule", "real_image_editing", "DreamSampler", {"eta_schedule": "x"},
     ["eta_schedule", "one of"]),
    ("inversion-refine-too-high", "real_image_editing", "DreamDDIMInversion", {"refine_steps": 99},
     ["refine_steps", "at most"]),
    ("inversion-negative-steps", "real_image_editing", "DreamDDIMInversion", {"steps": -1}, ["steps", "at least"]),
    ("inversion-denoise-mismatch", "real_image_editing", "DreamDDIMInversion", {"denoise": 0.4},
     ["denoise", "inverted to noise level"], "DreamSampler"),
    ("edit-start-below-end", "real_image_editing", "DreamCFGEdit", {"start": 0.1, "end": 0.9}, ["start", "end"]),
    ("edit-nan-strength", "real_image_editing", "DreamCFGEdit", {"strength": float("nan")}, ["strength", "finite"]),
    ("edit-unknown-schedule", "real_image_editing", "DreamCFGEdit", {"schedule": "fast"}, ["schedule", "fast"]),
    ("drag-malformed-json", "sde_drag", "DreamSDEDrag", {"points": "[{\"x\": 1, \"y\": "}, ["points", "JSON"]),
    ("drag-empty-points", "sde_drag", "DreamSDEDrag", {"points": "[]"}, ["no drag points"]),
    ("drag-odd-point-count", "sde_drag", "DreamSDEDrag", {"points": '[{"x": 5, "y": 5}]'}, ["points", "pairs"]),
    ("drag-points-outside", "sde_drag", "DreamSDEDrag",
     {"points": '[{"x": 5000, "y": 5}, {"x": 10, "y": 10}]'}, ["points", "outside"]),
    ("drag-t0-out-of-range", "sde_drag", "DreamSDEDrag", {"t0": 2.0}, ["t0", "at most"]),
    ("degrade-scale-not-dividing", "super_resolution_x4", "DreamDegrade", {"scale": 3}, ["scale", "3"]),
    ("dc-negative-sigma", "super_resolution_x4", "DreamDataConsistency", {"sigma_y": -0.5}, ["sigma_y", "at least"]),
    ("mask-unknown-preset", "text_guided_inpainting", "DreamMaskInpaint", {"preset": "magic"}, ["preset", "magic"]),
    ("csd-stride-above-window", "csd_panorama_edit", "DreamCSDEdit", {"window": 16, "stride": 48},
     ["stride", "window"]),
    ("csd-zero-iterations", "csd_panorama_edit", "DreamCSDEdit", {"iterations": 0}, ["iterations", "at least"]),
    ("csd-tmin-above-tmax", "csd_panorama_edit", "DreamCSDEdit", {"t_min": 0.9, "t_max": 0.1}, ["t_min", "t_max"]),
    # the deprecated Dream Score Distill, in a workflow saved before the split (tests/data/legacy_workflows)
    ("distill-zero-lrs", "legacy/text_to_svg", "DreamScoreDistill",
     {"point_lr": 0.0, "color_lr": 0.0, "width_lr": 0.0}, ["learning rate", "point_lr"]),
    ("distill-negative-iterations", "legacy/text_to_svg", "DreamScoreDistill", {"iterations": -5},
     ["iterations", "at least"]),
    # the nodes that replace it
    ("svg-generator-zero-lrs", "text_to_svg", "DreamSVGGenerator", {"point_lr": 0.0, "color_lr": 0.0, "width_lr": 0.0},
     ["learning rate", "point_lr"]),
    ("dreamsampler-distill-negative-iterations", "text_to_svg", "DreamDistill", {"iterations": -5},
     ["iterations", "at least"]),
    ("dreamsampler-distill-zero-denoise", "text_to_svg", "DreamDistill", {"denoise": 0.0},
     ["denoise", "greater than 0"]),
    ("distill-data-term-negative-weight", "svg_restoration", "DreamDistillDataTerm", {"data_weight": -1.0},
     ["data_weight", "at least"]),
    ("svg-init-absurd-paths", "text_to_svg", "DreamSVGInit", {"num_paths": 10 ** 6}, ["num_paths", "at most"]),
    ("cycle-encode-zero-steps", "cyclediffusion_text_edit", "DreamDDPMEncode", {"steps": 0}, ["steps", "at least"]),
    ("cycle-encode-eta-zero", "cyclediffusion_text_edit", "DreamDDPMEncode", {"eta": 0.0}, ["eta", "greater than 0"]),
    ("cycle-sde-unknown-stage2", "cycle_sde_vs_ode", "DreamCycleSDEEdit", {"stage2": "euler"}, ["stage2", "euler"]),
    # bounded work: steps / denoise is the length of the schedule ComfyUI builds (issue 16, unsafe 1)
    ("sampler-tiny-denoise", "real_image_editing", "DreamSampler", {"steps": 4, "denoise": 4e-6, "scheduler": "normal"},
     ["denoise", "steps", "10000"]),
    ("sampler-denoise-1e-9", "real_image_editing", "DreamSampler", {"denoise": 1e-9}, ["denoise", "10000"]),
    ("sampler-steps-over-denoise", "real_image_editing", "DreamSampler", {"steps": 9000, "denoise": 0.5},
     ["denoise", "steps", "18000"]),
    ("inversion-tiny-denoise", "real_image_editing", "DreamDDIMInversion", {"denoise": 1e-7}, ["denoise", "10000"]),
    ("cycle-encode-tiny-strength", "cyclediffusion_text_edit", "DreamDDPMEncode", {"strength": 1e-7},
     ["strength", "10000"]),
    ("cycle-sde-tiny-t0", "cycle_sde_vs_ode", "DreamCycleSDEEdit", {"t0": 1e-7}, ["t0", "10000"]),
    ("drag-tiny-t0", "sde_drag", "DreamSDEDrag", {"t0": 1e-7}, ["t0", "10000"]),
    ("distill-tiny-denoise", "legacy/text_to_svg", "DreamScoreDistill", {"denoise": 1e-7}, ["denoise", "iterations"]),
    ("dreamsampler-distill-tiny-denoise", "text_to_svg", "DreamDistill", {"denoise": 1e-7}, ["denoise", "iterations"]),
    # point lists: bounded size, depth and count (issue 16, slow refusals / unclear messages)
    ("drag-too-many-pairs", "sde_drag", "DreamSDEDrag",
     {"points": json.dumps([{"x": 1, "y": 1}] * 200_000)}, ["points", "at most"]),
    ("drag-101-pairs", "sde_drag", "DreamSDEDrag", {"points": json.dumps([{"x": 1, "y": 1}] * 202)},
     ["points", "101 pairs", "100"]),
    ("drag-deep-json", "sde_drag", "DreamSDEDrag", {"points": "[" * 30_000 + "]" * 30_000}, ["points", "nested"]),
    ("drag-points-source-int", "sde_drag", "DreamSDEDrag", {"points": '{"source": 5, "target": 5}'},
     ["source", "list"]),
    ("drag-point-not-a-pair", "sde_drag", "DreamSDEDrag", {"points": '[5, 6]'}, ["points[0]", "[x, y]"]),
    # widget text is copied into core Save SVG's CDATA metadata block
    ("drag-cdata-end-in-points", "sde_drag", "DreamSDEDrag",
     {"points": '[{"x": 5, "y": 5, "n": "]]><script>alert(1)</script>"}, {"x": 9, "y": 9}]'}, ["points", "]]>"]),
]


def svg_prompt(text, scale=1.0):
    return {"1": {"class_type": "DreamLoadSVG", "inputs": {"svg_file": NO_FILE, "svg_text": text}},
            "2": {"class_type": "DreamSVGRender", "inputs": {"svg": ["1", 0], "scale": scale}},
            "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}}


SVG_CASES = [
    ("svg-billion-laughs", BILLION_LAUGHS, ["svg_text", "DOCTYPE"]),
    ("svg-external-entity", XXE, ["svg_text", "external-entity"]),
    ("svg-huge-path-count", MANY_PATHS, ["svg_text", "painted paths"]),
    ("svg-use-bomb", USE_BOMB, ["svg_text", "<use>"]),
    ("svg-truncated", '<svg xmlns="http://www.w3.org/2000/svg" width="64"><path d="M0 0 L',
     ["svg_text", "not well-formed"]),
    ("svg-not-svg", "<html><body>hello</body></html>", ["svg_text", "<html>"]),
    ("svg-empty", "", ["svg_file", "svg_text"]),
    # issue 16
    ("svg-deep-nesting", DEEP_GROUPS, ["svg_text", "nested", "deep"]),
    ("svg-use-chain", USE_CHAIN, ["svg_text", "nested", "<use>"]),
    ("svg-lone-surrogate", SVG_HEAD + SQUARE + "<!-- \udcff --></svg>", ["svg_text", "surrogate"]),
    ("svg-huge-canvas", '<svg xmlns="http://www.w3.org/2000/svg" width="8192" height="8192">'
                        '<rect width="8192" height="8192" fill="red"/></svg>', ["svg_text", "8192x8192", "limit"]),
    ("svg-wide-canvas", '<svg xmlns="http://www.w3.org/2000/svg" width="8000" height="3000">'
                        '<rect width="10" height="10"/></svg>', ["svg_text", "8000x3000", "Mpx"]),
    ("svg-huge-stroke-width", SVG_HEAD + '<path d="M0 0 L9 0 L9 9 Z" stroke="black" stroke-width="1e39"/></svg>',
     ["svg_text", "stroke-width"]),
    ("svg-nan-opacity", SVG_HEAD + '<path d="M0 0 L9 0 L9 9 Z" opacity="NaN"/></svg>', ["svg_text", "opacity"]),
    ("svg-nan-fill-opacity", SVG_HEAD + '<path d="M0 0 L9 0 L9 9 Z" fill-opacity="nan"/></svg>',
     ["svg_text", "fill-opacity"]),
    ("svg-cdata-end-in-text", SVG_HEAD + SQUARE + "<!-- ]]><script>alert(1)</script> --></svg>",
     ["svg_text", "]]>"]),
    ("svg-layer-bomb", LAYER_BOMB, ["svg_text", "Mpx", "limit"]),
    ("svg-infinite-coordinate", SVG_HEAD + '<path d="M0 0 L1e400 0 L9 9 Z"/></svg>', ["svg_text", "coordinates"]),
]
