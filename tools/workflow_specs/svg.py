"""Score distillation with the SVG generator: text-to-SVG, SVG restoration from a masked raster, and
image -> SVG vectorization refinement (DreamSampler distillation, Algorithm 2)."""
from .editing import load_image, loader

ICON_STYLE = "minimal flat 2d vector icon, lineal color, trending on artstation"
SCENE = "a flat vector illustration of mountains under a blue sky with a yellow sun"
NEGATIVE = "photo, realistic, noise, texture, blurry, text, watermark"


def prompts(first_id, positive, negative=NEGATIVE):
    return [
        {"id": first_id, "type": "CLIPTextEncode", "title": "Prompt", "widgets": {"text": positive},
         "links": {"clip": (1, 1)}},
        {"id": first_id + 1, "type": "CLIPTextEncode", "title": "Negative prompt", "widgets": {"text": negative},
         "links": {"clip": (1, 1)}},
    ]


def distill(i, svg, pos, neg, measurement=None, degradation=None, data_weight=1.0, point_lr=1.0, color_lr=0.01,
            **widgets):
    """Dream SVG Generator (id i) -> DreamSampler Distill (id i + 1, its outputs (i + 1, slot)), with a
    Dream Distill Data Term (id i + 2) when there is a measurement."""
    nodes = [{"id": i, "type": "DreamSVGGenerator", "widgets": {"point_lr": point_lr, "color_lr": color_lr},
              "links": {"svg": svg}}]
    links = {"model": (1, 0), "positive": (pos, 0), "negative": (neg, 0), "vae": (1, 2), "generator": (i, 0)}
    if measurement is not None:
        term = {"measurement": measurement, **({"degradation": degradation} if degradation is not None else {})}
        nodes.append({"id": i + 2, "type": "DreamDistillDataTerm", "title": "Data term (restoration)",
                      "widgets": {"data_weight": data_weight}, "links": term})
        links["data_term"] = (i + 2, 0)
    base = {"seed": 0, "iterations": 50, "inner_steps": 10, "cfg": 7.5, "scheduler": "ddim_uniform", "denoise": 1.0,
            "eta": 0.0, "fit_space": "auto"}
    base.update(widgets)
    nodes.append({"id": i + 1, "type": "DreamDistill", "widgets": base, "links": links})
    return nodes


def save(i, prefix, image=None, svg=None):
    out = []
    if image is not None:
        # separate prefixes: the two save nodes must not share (and race for) one file counter
        out.append({"id": i, "type": "SaveImage", "widgets": {"filename_prefix": f"DreamSampler/{prefix}_image"},
                    "links": {"images": image}})
    if svg is not None:
        out.append({"id": i + 1, "type": "SaveSVGNode", "widgets": {"filename_prefix": f"DreamSampler/{prefix}"},
                    "links": {"svg": svg}})
    return out


def side_by_side(i, left, right, title):
    return {"id": i, "type": "ImageStitch", "title": title,
            "widgets": {"direction": "right", "match_image_size": True, "spacing_width": 8, "spacing_color": "white"},
            "links": {"image1": left, "image2": right}}


WORKFLOWS = {
    "text_to_svg": {
        "title": "DreamSampler: text-to-SVG (DreamSampler distillation of 128 random vector paths)",
        "nodes": [
            loader(1),
            *prompts(2, f"a red fox sitting in the grass, {ICON_STYLE}"),
            {"id": 4, "type": "DreamSVGInit", "title": "Random paths (VectorFusion init)",
             "widgets": {"mode": "random", "width": 512, "height": 512, "num_paths": 128, "num_segments": 4,
                         "radius": 0.0, "stroke_width": 0.0, "seed": 0, "batch_size": 1}},
            *distill(5, (4, 0), 2, 3, iterations=100, inner_steps=10, cfg=7.5, denoise=1.0),
            *save(7, "text_to_svg", image=(6, 1), svg=(6, 3)),
        ],
    },
    "svg_restoration": {
        "title": "DreamSampler: SVG restoration from a masked raster (data term on the known pixels + prompt)",
        "nodes": [
            loader(1),
            *load_image(2),
            {"id": 4, "type": "SolidMask", "title": "Mask: nothing missing...", "widgets": {"value": 0.0, "width": 512,
                                                                                           "height": 512}},
            {"id": 5, "type": "SolidMask", "title": "...except this hole", "widgets": {"value": 1.0, "width": 160,
                                                                                      "height": 130}},
            {"id": 6, "type": "MaskComposite", "title": "Missing pixels (white)",
             "widgets": {"x": 300, "y": 60, "operation": "add"}, "links": {"destination": (4, 0), "source": (5, 0)}},
            {"id": 7, "type": "MaskToImage", "links": {"mask": (6, 0)}},
            {"id": 8, "type": "ImageScale", "title": "Mask at the working size",
             "widgets": {"upscale_method": "nearest-exact", "width": 512, "height": 512, "crop": "center"},
             "links": {"image": (7, 0)}},
            {"id": 9, "type": "ImageToMask", "widgets": {"channel": "red"}, "links": {"image": (8, 0)}},
            {"id": 10, "type": "DreamDegrade", "title": "Masked raster (the damaged input)",
             "widgets": {"operator": "inpainting", "sigma_y": 0.0, "seed": 0},
             "links": {"image": (3, 0), "mask": (9, 0)}},
            *prompts(11, SCENE),
            {"id": 13, "type": "DreamSVGInit", "title": "Trace the masked raster",
             "widgets": {"mode": "image", "num_paths": 128, "num_segments": 8, "num_colors": 12, "trace": "kmeans",
                         "seed": 0}, "links": {"image": (10, 0)}},
            *distill(14, (13, 0), 11, 12, measurement=(10, 0), degradation=(10, 1), iterations=50, inner_steps=10,
                     cfg=5.0, denoise=0.6, data_weight=10.0),
            side_by_side(17, (10, 0), (15, 1), "Masked input | restored SVG"),
            *save(18, "svg_restoration", image=(17, 0), svg=(15, 3)),
        ],
    },
    "image_to_svg": {
        "title": "DreamSampler: image -> SVG vectorization refinement (traced paths refined with the prompt)",
        "nodes": [
            loader(1),
            *load_image(2),
            *prompts(4, f"{SCENE}, minimal, lineal color"),
            {"id": 6, "type": "DreamSVGInit", "title": "Trace the image (k-means colours + contours)",
             "widgets": {"mode": "image", "num_paths": 96, "num_segments": 8, "num_colors": 12, "trace": "kmeans",
                         "seed": 0}, "links": {"image": (3, 0)}},
            *distill(7, (6, 0), 4, 5, measurement=(3, 0), iterations=40, inner_steps=10, cfg=5.0, denoise=0.5,
                     data_weight=10.0),
            side_by_side(10, (6, 1), (8, 1), "Traced | refined"),
            *save(11, "image_to_svg", image=(10, 0), svg=(8, 3)),
        ],
    },
}

#: the distillation nodes at CI size (the old Dream Score Distill too: the legacy workflows in
#: tests/data/legacy_workflows run with the same settings as the shipped ones)
_FAST_SVG = {cls: {"inner_steps": 2, "iterations": 3} for cls in ("DreamDistill", "DreamSDS", "DreamDDS",
                                                                 "DreamScoreDistill")}
TEST_OVERRIDES = {
    "text_to_svg": {"DreamSVGInit": {"width": 64, "height": 64, "num_paths": 16}, **_FAST_SVG},
    "svg_restoration": {"DreamSVGInit": {"num_paths": 16}, **_FAST_SVG},
    "image_to_svg": {"DreamSVGInit": {"num_paths": 16}, **_FAST_SVG},
}


_EXAMPLE_SVG = ('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
                '<rect width="64" height="64" fill="#9ecbf0"/>'
                '<circle cx="44" cy="18" r="9" fill="#ffd34d"/>'
                '<path d="M0 40 C16 24 28 30 40 38 C48 44 56 34 64 30 L64 64 L0 64 Z" fill="#3d7a45"/>'
                '<path d="M8 56 L20 36 L32 56 Z" fill="#2b5530" fill-rule="evenodd" stroke="#1b3320" stroke-width="1.5"/>'
                '</svg>')

WORKFLOWS["svg_load_render_export"] = {
    "title": "Load an SVG safely, render it to an IMAGE, export it again (core Save SVG)",
    "nodes": [
        {"id": 1, "type": "DreamLoadSVG", "widgets": {"svg_text": _EXAMPLE_SVG}},
        {"id": 2, "type": "DreamSVGRender", "widgets": {"scale": 2.0}, "links": {"svg": (1, 0)}},
        {"id": 3, "type": "SaveImage", "widgets": {"filename_prefix": "DreamSampler/svg_render"},
         "links": {"images": (2, 0)}},
        {"id": 4, "type": "DreamSVGToFile", "widgets": {"precision": 3}, "links": {"svg": (1, 0)}},
        {"id": 5, "type": "SaveSVGNode", "widgets": {"filename_prefix": "DreamSampler/svg_export"},
         "links": {"svg": (4, 0)}},
    ],
}
