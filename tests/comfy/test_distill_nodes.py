"""SVG and score-distillation nodes inside the real (in-process) ComfyUI: the analytic oracle through
ComfyUI's guider and the raw distillation sampler (every method reaches the prompted class), the SVG
path under inference mode (differentiable VAE-encoder copy), restoration inputs, progress previews
and /interrupt, and clear errors for malformed or hostile SVG input."""
import gzip

import pytest
import torch

from dreamsampler_pack.dreamsampler_core.analytic import GaussianMixture
from support.inprocess import run

pytestmark = pytest.mark.usefixtures("one_thread")

CANVAS = 32                      # tiny VAE factor 8 -> latent [1, 4, 4, 4]




@pytest.fixture(scope="module")
def gm():
    return GaussianMixture.two_class(4 * 4 * 4, sep=3.0, std=0.5)


@pytest.fixture(scope="module")
def oracle(gm, pack):
    from tools.tiny_models import oracle_model
    return oracle_model(gm, "eps")


@pytest.fixture(scope="module")
def vae_seed():
    """The tiny VAE these tests' numbers were measured with."""
    return 12


@pytest.fixture(scope="module")
def svg32(N):
    svg, _ = run(N.svg.DreamSVGInit, "random", width=CANVAS, height=CANVAS, num_paths=6, num_segments=4, radius=5.0,
                 stroke_width=0.0, num_colors=8, trace="kmeans", seed=3, batch_size=1)
    return svg


def cond(k):
    from tools.tiny_models import class_conditioning
    return class_conditioning(k)


DEFAULTS = dict(method="dreamsampler", seed=0, iterations=2, inner_steps=1, cfg=1.0, scheduler="ddim_uniform",
                denoise=1.0, min_t=0.02, eta=0.0, fit_space="auto", weighting="tweedie", point_lr=1.0,
                color_lr=0.01, width_lr=0.0, data_weight=1.0)


def distill(N, model, vae, positive=None, negative=None, **kw):
    """The old all-in-one Dream Score Distill (deprecated; kept for saved workflows)."""
    args = dict(DEFAULTS)
    args.update({k: kw.pop(k) for k in list(kw) if k in DEFAULTS})
    return run(N.distill_legacy.DreamScoreDistill, model, positive or cond(1), negative or cond(None), vae, **args,
               **kw)


# ----------------------------------------------------------------------------- SVG nodes
def test_svg_init_render_export_and_reload(N):
    svg_nodes = N.svg
    scenes, image = run(svg_nodes.DreamSVGInit, "random", width=48, height=32, num_paths=10, num_segments=4, radius=0.0,
                        stroke_width=2.0, num_colors=8, trace="kmeans", seed=7, batch_size=2)
    assert len(scenes) == 2 and image.shape == (2, 32, 48, 3)
    assert not torch.equal(image[0], image[1])                        # independent random scenes
    (big,) = run(svg_nodes.DreamSVGRender, scenes, 2.0)
    assert big.shape == (2, 64, 96, 3)
    (doc,) = run(svg_nodes.DreamSVGToFile, scenes, 3)
    assert len(doc.data) == 2
    text = doc.data[0].getvalue().decode()
    assert text.lstrip().startswith("<svg") and "fill-rule" in text
    back, back_img, _ = run(svg_nodes.DreamLoadSVG, svg_nodes.NO_FILE, text)
    assert back[0].width == 48 and len(back[0].paths) == 11        # + the background <rect>
    assert float((back_img[0] - image[0]).abs().max()) < 0.02       # the written SVG reproduces the render

    # image mode: a two-colour raster is traced into paths that reproduce it
    img = torch.zeros(1, 32, 32, 3)
    img[:, :, :16] = torch.tensor([0.9, 0.1, 0.1])
    img[:, :, 16:] = torch.tensor([0.1, 0.2, 0.9])
    traced, traced_img = run(svg_nodes.DreamSVGInit, "image", width=512, height=512, num_paths=16, num_segments=8,
                             radius=0.0, stroke_width=0.0, num_colors=4, trace="kmeans", seed=0, batch_size=1,
                             image=img)
    assert (traced[0].width, traced[0].height) == (32, 32)
    flat = float((img - img.mean((1, 2), keepdim=True)).pow(2).mean())     # one flat colour: 0.108
    assert float((traced_img - img).pow(2).mean()) < 0.4 * flat


def test_svg_nodes_reject_bad_inputs(N):
    svg_nodes, common = N.svg, N.common
    with pytest.raises(common.InputError, match="connect an IMAGE"):
        run(svg_nodes.DreamSVGInit, "image", width=32, height=32, num_paths=4, num_segments=4, radius=0.0,
            stroke_width=0.0, num_colors=4, trace="kmeans", seed=0, batch_size=1)
    with pytest.raises(common.InputError, match="NaN"):
        run(svg_nodes.DreamSVGInit, "image", width=32, height=32, num_paths=4, num_segments=4, radius=0.0,
            stroke_width=0.0, num_colors=4, trace="kmeans", seed=0, batch_size=1,
            image=torch.full((1, 8, 8, 3), float("nan")))
    with pytest.raises(common.InputError, match="not a Dream SVG"):
        run(svg_nodes.DreamSVGRender, "<svg/>", 1.0)
    assert "width" in svg_nodes.DreamSVGInit.validate_inputs(width=8)
    assert "num_paths" in svg_nodes.DreamSVGInit.validate_inputs(num_paths=0)
    assert "scale" in svg_nodes.DreamSVGRender.validate_inputs(scale=float("inf"))
    assert svg_nodes.DreamSVGInit.validate_inputs() is True


BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
                  '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><text>&lol2;</text></svg>')
XXE = ('<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><text>&xxe;</text></svg>')
USE_BOMB = ('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="8" height="8">'
            '<defs><g id="a"><rect width="1" height="1"/><rect width="1" height="1"/></g>'
            + "".join(f'<g id="{c}"><use xlink:href="#{p}"/><use xlink:href="#{p}"/><use xlink:href="#{p}"/>'
                      f'<use xlink:href="#{p}"/></g>' for p, c in zip("abcdefghi", "bcdefghij"))
            + '</defs><use xlink:href="#j"/></svg>')
CYCLE = ('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="8" height="8">'
         '<g id="a"><use xlink:href="#b"/></g><g id="b"><use xlink:href="#a"/></g></svg>')


@pytest.mark.parametrize("text,message", [
    (BILLION_LAUGHS, "DOCTYPE"),
    (XXE, "DOCTYPE"),
    (USE_BOMB, "element"),
    (CYCLE, "cycl"),
    ("hello, not an svg", "svg_text"),
    ("<svg xmlns='http://www.w3.org/2000/svg' width='8' height='8'><path d='M 0 0 L", "svg_text"),
    ("<html><body>no svg here</body></html>", "svg_text"),
    ('<svg xmlns="http://www.w3.org/2000/svg" width="1e9" height="8"/>', "svg_text"),
])
def test_load_svg_rejects_hostile_or_malformed_text(N, text, message):
    svg_nodes, common = N.svg, N.common
    with pytest.raises(common.InputError, match=message) as err:
        run(svg_nodes.DreamLoadSVG, svg_nodes.NO_FILE, text)
    assert str(err.value).startswith("svg_text")                      # says which input is wrong


def test_load_svg_files_stay_inside_the_input_folder(N, tmp_path, monkeypatch):
    import folder_paths
    svg_nodes, common = N.svg, N.common
    inputs = tmp_path / "input"
    inputs.mkdir()
    monkeypatch.setattr(folder_paths, "get_input_directory", lambda: str(inputs))
    good = '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"><circle cx="8" cy="8" r="5" fill="red"/></svg>'
    (inputs / "icon.svg").write_text(good)
    (inputs / "bomb.svg.gz").write_bytes(gzip.compress(good.encode()))
    (inputs / "zipped.svg").write_bytes(gzip.compress(good.encode()))
    (tmp_path / "secret.svg").write_text(good)
    (inputs / "link.svg").symlink_to(tmp_path / "secret.svg")

    assert "icon.svg" in svg_nodes.input_svg_files()
    assert svg_nodes.DreamLoadSVG.validate_inputs(svg_file="icon.svg", svg_text="") is True
    scene, image, doc = run(svg_nodes.DreamLoadSVG, "icon.svg", "")
    assert scene[0].width == 16 and float(image[0, 8, 8, 1]) < 0.2       # a red disk in the middle
    assert svg_nodes.DreamLoadSVG.fingerprint_inputs("icon.svg", "") != svg_nodes.DreamLoadSVG.fingerprint_inputs(
        "zipped.svg", "")
    for bad in ("../secret.svg", str(tmp_path / "secret.svg"), "link.svg", "missing.svg", "."):
        assert "svg_file" in svg_nodes.DreamLoadSVG.validate_inputs(svg_file=bad, svg_text="")
        with pytest.raises(common.InputError, match="input folder"):
            run(svg_nodes.DreamLoadSVG, bad, "")
    with pytest.raises(common.InputError, match="compressed|gzip"):
        run(svg_nodes.DreamLoadSVG, "zipped.svg", "")
    assert "give an SVG" in svg_nodes.DreamLoadSVG.validate_inputs(svg_file=svg_nodes.NO_FILE, svg_text="")
    assert svg_nodes.DreamLoadSVG.validate_inputs(svg_file=svg_nodes.NO_FILE) is True        # svg_text linked: checked later
    with pytest.raises(common.InputError, match="give an SVG"):
        run(svg_nodes.DreamLoadSVG, svg_nodes.NO_FILE, "")
    assert "larger" in svg_nodes.DreamLoadSVG.validate_inputs(svg_file=svg_nodes.NO_FILE, svg_text="x" * (9 * 1024 * 1024))


# ----------------------------------------------------------------------------- distillation on the oracle
def test_regularizers_reach_algorithm2_through_the_guider(N, gm, oracle, tiny_vae, pack):
    """A Dream CFG Edit regularizer (its target prompt evaluated in the guider's batch) steers an
    unconditional DreamSampler distillation to class 1; with strength 0 it stays in class 0."""
    from dreamsampler_pack.nodes import regularizers
    src = {"samples": gm.sample(1, torch.Generator().manual_seed(4), 0).reshape(1, 4, 4, 4).float()}
    ends = {}
    for strength in (0.0, 1.0):
        (regs,) = run(regularizers.DreamCFGEdit, cond(1), strength, "constant", 1.0, 0.0)
        _, _, lat, _ = distill(N, oracle, tiny_vae, positive=cond(None), latent=src, iterations=10, inner_steps=20,
                               color_lr=0.1, denoise=0.6, regularizers=regs)
        ends[strength] = int(gm.classify(lat["samples"].double()))
    assert ends == {0.0: 0, 1.0: 1}, ends


def test_svg_distillation_runs_every_method_under_inference_mode(N, oracle, tiny_vae, svg32):
    """The SVG generator through ComfyUI: pixel and latent fits (the latter backpropagates through a copy of
    the VAE encoder while the node runs under torch.inference_mode), SDS and DDS; deterministic, the
    input scene untouched, outputs consistent."""
    svg_nodes = N.svg
    before = svg32[0].paths[0].points.clone()
    outs = {}
    for name, kw in {"pixel": dict(fit_space="pixel"), "latent": dict(fit_space="latent"),
                     "sds": dict(method="sds", cfg=5.0), "dds": dict(method="dds", source=cond(0))}.items():
        out_svg, image, lat, doc = distill(N, oracle, tiny_vae, svg=svg32, iterations=2, inner_steps=2, **kw)
        moved = float((out_svg[0].paths[0].points - before).abs().max())
        assert moved > 1e-3, name
        assert image.shape == (1, CANVAS, CANVAS, 3) and lat["samples"].shape == (1, 4, 4, 4)
        assert torch.isfinite(lat["samples"]).all() and torch.isfinite(image).all()
        assert torch.allclose(image, run(svg_nodes.DreamSVGRender, out_svg, 1.0)[0])
        assert b"<path" in doc.data[0].getvalue()
        outs[name] = out_svg
    assert torch.equal(svg32[0].paths[0].points, before)             # the cached input was not modified
    again = distill(N, oracle, tiny_vae, svg=svg32, iterations=2, inner_steps=2, fit_space="pixel")[0]
    assert torch.equal(again[0].paths[0].points, outs["pixel"][0].paths[0].points)


def test_svg_restoration_inputs(N, oracle, tiny_vae, svg32):
    common = N.common
    target = torch.rand(1, CANVAS, CANVAS, 3, generator=torch.Generator().manual_seed(1))
    hole = torch.zeros(1, CANVAS, CANVAS)
    hole[:, 8:20, 8:20] = 1.0
    out = distill(N, oracle, tiny_vae, svg=svg32, measurement=target, mask=hole, data_weight=10.0)
    assert torch.isfinite(out[1]).all()
    low = torch.nn.functional.avg_pool2d(target.movedim(-1, 1), 4).movedim(1, -1)
    assert torch.isfinite(distill(N, oracle, tiny_vae, svg=svg32, measurement=low)[1]).all()

    bad = [
        (dict(measurement=target[:, :20, :20]), "canvas divided by 2, 4 or 8"),
        (dict(measurement=low, mask=hole), "low-resolution measurement has no mask"),
        (dict(measurement=target, mask=hole[:, :16]), "mask's? .*size|mask is"),
        (dict(measurement=target, mask=torch.ones(1, CANVAS, CANVAS)), "hides every pixel"),
        (dict(mask=hole), "needs the 'measurement'"),
        (dict(measurement=torch.full_like(target, float("nan"))), "NaN"),
    ]
    for kw, message in bad:
        with pytest.raises(common.InputError, match=message):
            distill(N, oracle, tiny_vae, svg=svg32, **kw)
    with pytest.raises(common.InputError, match="needs an 'svg' or 'image'"):
        distill(N, oracle, tiny_vae, latent={"samples": torch.zeros(1, 4, 4, 4)}, measurement=target)


def test_distill_rejects_bad_inputs(N, oracle, tiny_vae, svg32):
    common, legacy = N.common, N.distill_legacy
    node = legacy.DreamScoreDistill
    lat = {"samples": torch.zeros(1, 4, 4, 4)}
    cases = [
        (dict(), "exactly one generator"),
        (dict(svg=svg32, latent=lat), "exactly one generator"),
        (dict(svg="<svg/>"), "not a Dream SVG"),
        (dict(svg=svg32, method="dds"), "needs the 'source'"),
        (dict(svg=svg32, method="sds", regularizers=("x",)), "regularizers"),
        (dict(svg=svg32, point_lr=0.0, color_lr=0.0), "learning rate"),
        (dict(image=torch.rand(1, 36, 36, 3)), "multiple of the VAE's factor 8"),
        (dict(image=torch.full((1, 32, 32, 3), float("nan"))), "NaN"),
        (dict(latent={"samples": torch.full((1, 4, 4, 4), float("inf"))}), "NaN or infinite"),
        (dict(svg=svg32, denoise=0.0), "leaves no step"),
    ]
    for kw, message in cases:
        with pytest.raises(common.InputError, match=message):
            distill(N, oracle, tiny_vae, **kw)
    nan_scene = svg32[0].clone()
    nan_scene.paths[0].points[0, 0] = float("nan")
    with pytest.raises(common.InputError, match="NaN"):
        distill(N, oracle, tiny_vae, svg=(nan_scene,))
    with pytest.raises(common.InputError, match="VAE"):
        distill(N, oracle, object(), svg=svg32)
    assert node.validate_inputs(**{k: v for k, v in DEFAULTS.items() if k not in ("scheduler", "fit_space",
                                                                                   "weighting")}) is True
    for kw, message in [(dict(iterations=0), "iterations"), (dict(cfg=-1.0), "cfg"), (dict(method="vsd"), "method"),
                        (dict(method="sds", min_t=0.9, denoise=0.5), "min_t"), (dict(eta=float("nan")), "eta"),
                        (dict(point_lr=1e9), "point_lr"), (dict(inner_steps=2.5), "inner_steps"),
                        (dict(denoise=0.0), "denoise")]:
        assert message in str(node.validate_inputs(**kw)), kw


def test_progress_previews_and_interrupt(N, oracle, tiny_vae, svg32):
    import comfy.model_management as mm
    import comfy.utils
    from PIL import Image
    seen = []
    old = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.PROGRESS_BAR_HOOK = lambda value, total, preview, node_id=None: seen.append((value, total, preview))
    try:
        distill(N, oracle, tiny_vae, svg=svg32, iterations=3)
    finally:
        comfy.utils.PROGRESS_BAR_HOOK = old
    assert [(v, t) for v, t, _ in seen] == [(1, 3), (2, 3), (3, 3)]
    kind, picture, size = seen[-1][2]
    assert kind == "JPEG" and isinstance(picture, Image.Image) and picture.size == (CANVAS, CANVAS) and size == 512

    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            distill(N, oracle, tiny_vae, svg=svg32, iterations=3)
    finally:
        mm.interrupt_current_processing(False)


# ----------------------------------------------------------------------------- the split nodes
#: each method node's inputs: exactly what it reads (no scheduler / eta / regularizers for SDS and DDS, no
#: min_t / weighting for DreamSampler distillation, the learning rates on the generator nodes)
SPLIT_INPUTS = {
    "DreamSVGGenerator": ["svg", "point_lr", "color_lr", "width_lr"],
    "DreamImageGenerator": ["image", "lr"],
    "DreamLatentGenerator": ["latent", "lr"],
    "DreamDistillDataTerm": ["measurement", "data_weight", "mask", "degradation"],
    "DreamDistill": ["model", "positive", "negative", "vae", "generator", "seed", "iterations", "inner_steps", "cfg",
                     "scheduler", "denoise", "eta", "fit_space", "regularizers", "data_term"],
    "DreamSDS": ["model", "positive", "negative", "vae", "generator", "seed", "iterations", "inner_steps", "cfg",
                 "max_t", "min_t", "fit_space", "weighting", "data_term"],
    "DreamDDS": ["model", "positive", "negative", "vae", "source", "generator", "seed", "iterations", "inner_steps",
                 "cfg", "max_t", "min_t", "fit_space", "weighting", "data_term"],
}
#: the old node's inputs, in their saved widget order (never changes: saved workflows load by position)
LEGACY_INPUTS = ["model", "positive", "negative", "vae", "method", "seed", "iterations", "inner_steps", "cfg",
                 "scheduler", "denoise", "min_t", "eta", "fit_space", "weighting", "point_lr", "color_lr", "width_lr",
                 "data_weight", "svg", "image", "latent", "source", "regularizers", "measurement", "mask",
                 "degradation"]
#: the old node's widgets that each method node reads (and under which name)
METHOD_WIDGETS = {
    "DreamDistill": dict(seed="seed", iterations="iterations", inner_steps="inner_steps", cfg="cfg",
                         scheduler="scheduler", denoise="denoise", eta="eta", fit_space="fit_space"),
    "DreamSDS": dict(seed="seed", iterations="iterations", inner_steps="inner_steps", cfg="cfg", max_t="denoise",
                     min_t="min_t", fit_space="fit_space", weighting="weighting"),
}
METHOD_WIDGETS["DreamDDS"] = METHOD_WIDGETS["DreamSDS"]
NODE_OF_METHOD = {"dreamsampler": "DreamDistill", "sds": "DreamSDS", "dds": "DreamDDS"}


def generator(N, svg=None, image=None, latent=None, point_lr=1.0, color_lr=0.01, width_lr=0.0):
    """The generator node of the one given input, with the old node's learning-rate widgets."""
    d = N.distill
    if svg is not None:
        return run(d.DreamSVGGenerator, svg, point_lr, color_lr, width_lr)[0]
    if image is not None:
        return run(d.DreamImageGenerator, image, color_lr)[0]
    return run(d.DreamLatentGenerator, latent, color_lr)[0]


def split(N, model, vae, method="dreamsampler", positive=None, negative=None, source=None, regularizers=None,
          data_term=None, **kw):
    """The split nodes wired as the old node's arguments ``kw`` describe (its defaults where not given)."""
    old = dict(DEFAULTS, method=method)
    old.update({k: kw.pop(k) for k in list(kw) if k in DEFAULTS})
    gen = generator(N, **{k: old[k] for k in ("point_lr", "color_lr", "width_lr")}, **kw)
    cls = NODE_OF_METHOD[method]
    widgets = {new: old[name] for new, name in METHOD_WIDGETS[cls].items()}
    extra = {"data_term": data_term}
    if method == "dreamsampler":
        extra["regularizers"] = regularizers
    prompts = [model, positive or cond(1), negative or cond(None), vae] + ([source] if method == "dds" else [])
    return run(getattr(N.distill, cls), *prompts, gen, **widgets, **extra)


def test_split_nodes_declare_only_the_inputs_they_read(N):
    d, legacy = N.distill, N.distill_legacy
    for name, inputs in SPLIT_INPUTS.items():
        s = getattr(d, name).GET_SCHEMA()
        assert [i.id for i in s.inputs] == inputs, name
        assert not s.is_deprecated and s.category == "DreamSampler/distill"
    for name in ("DreamDistill", "DreamSDS", "DreamDDS"):
        old_outputs = [(o.display_name, o.io_type) for o in legacy.DreamScoreDistill.GET_SCHEMA().outputs]
        assert [(o.display_name, o.io_type) for o in getattr(d, name).GET_SCHEMA().outputs] == old_outputs
    old = legacy.DreamScoreDistill.GET_SCHEMA()
    assert old.is_deprecated and old.node_id == "DreamScoreDistill"
    assert [i.id for i in old.inputs] == LEGACY_INPUTS


def test_every_method_moves_a_latent_to_the_prompted_class_through_comfy(N, gm, oracle, tiny_vae):
    """Latent generator from a class-0 sample, prompt = class 1: DreamSampler Distill, Dream SDS and Dream
    DDS (source = class 0) all end in class 1, bit for bit what the old Dream Score Distill gives for the
    same settings; the null edit of DDS (source = target) changes nothing, with either node."""
    src = {"samples": gm.sample(1, torch.Generator().manual_seed(0), 0).reshape(1, 4, 4, 4).float()}
    assert int(gm.classify(src["samples"].double())) == 0
    runs = {
        "dreamsampler": dict(iterations=12, inner_steps=20, color_lr=0.1),
        "sds": dict(iterations=150, inner_steps=1, color_lr=0.05, cfg=3.0),
        "dds": dict(iterations=150, inner_steps=1, color_lr=0.05, source=cond(0)),
    }
    for method, kw in runs.items():
        outs = []
        for node in (split, distill):
            svg, image, lat, doc = node(N, oracle, tiny_vae, method=method, latent=src, **kw)
            assert svg == () and doc.data == [] and image.shape == (1, 32, 32, 3)
            assert int(gm.classify(lat["samples"].double())) == 1, (method, node.__name__)
            outs.append((image, lat["samples"]))
        (image, lat), (old_image, old_lat) = outs
        assert torch.equal(image, old_image) and torch.equal(lat, old_lat), method
    for node in (split, distill):
        _, _, same, _ = node(N, oracle, tiny_vae, positive=cond(0), method="dds", iterations=5, latent=src,
                             source=cond(0))
        assert torch.allclose(same["samples"], src["samples"], atol=1e-6)


def test_split_nodes_give_the_old_nodes_svg_image_and_restoration_results(N, oracle, tiny_vae, svg32):
    """SVG and image generators, every method, a data term (mask, low resolution) and a regularizer: the
    split nodes give the old node's outputs bit for bit."""
    from dreamsampler_pack.nodes import regularizers
    target = torch.rand(1, CANVAS, CANVAS, 3, generator=torch.Generator().manual_seed(1))
    hole = torch.zeros(1, CANVAS, CANVAS)
    hole[:, 8:20, 8:20] = 1.0
    low = torch.nn.functional.avg_pool2d(target.movedim(-1, 1), 4).movedim(1, -1)
    (regs,) = run(regularizers.DreamCFGEdit, cond(0), 1.0, "constant", 1.0, 0.0)
    cases = [
        (dict(svg=svg32, fit_space="latent", eta=0.3, denoise=0.7), {}),
        (dict(svg=svg32, method="sds", weighting="sds", min_t=0.2, point_lr=0.5, width_lr=0.1), {}),
        (dict(svg=svg32, method="dds", source=cond(0)), {}),
        (dict(image=target, method="sds"), {}),
        (dict(svg=svg32, regularizers=regs), {}),
        (dict(svg=svg32), dict(measurement=target, mask=hole, data_weight=10.0)),
        (dict(image=target, method="dds", source=cond(0)), dict(measurement=low)),
    ]
    for kw, restoration in cases:
        term = None
        if restoration:
            r = dict(restoration)
            term = run(N.distill.DreamDistillDataTerm, r.pop("measurement"), r.pop("data_weight", 1.0), **r)[0]
        new = split(N, oracle, tiny_vae, iterations=2, inner_steps=2, data_term=term, **dict(kw))
        old = distill(N, oracle, tiny_vae, iterations=2, inner_steps=2, **dict(kw), **restoration)
        assert torch.equal(new[1], old[1]) and torch.equal(new[2]["samples"], old[2]["samples"]), kw
        assert [s.paths[0].points.tolist() for s in new[0]] == [s.paths[0].points.tolist() for s in old[0]]
        assert [d.getvalue() for d in new[3].data] == [d.getvalue() for d in old[3].data]


def test_split_nodes_reject_bad_inputs_clearly(N, oracle, tiny_vae, svg32):
    d, common = N.distill, N.common
    lat = {"samples": torch.zeros(1, 4, 4, 4)}
    target = torch.rand(1, CANVAS, CANVAS, 3)
    # generators: nothing to optimize, bad inputs (checked where they are connected)
    assert "learning rate" in d.DreamSVGGenerator.validate_inputs(point_lr=0.0, color_lr=0.0, width_lr=0.0)
    assert d.DreamSVGGenerator.validate_inputs(point_lr=0.0, color_lr=0.01, width_lr=0.0) is True
    assert d.DreamSVGGenerator.validate_inputs(color_lr=0.0, width_lr=0.0) is True       # point_lr linked
    assert "lr is 0" in d.DreamImageGenerator.validate_inputs(lr=0.0)
    assert "lr" in d.DreamLatentGenerator.validate_inputs(lr=-1.0)
    for cls, args, message in [
        (d.DreamSVGGenerator, (svg32, 0.0, 0.0, 0.0), "learning rate"),
        (d.DreamSVGGenerator, ("<svg/>", 1.0, 0.01, 0.0), "not a Dream SVG"),
        (d.DreamImageGenerator, (torch.full((1, 32, 32, 3), float("nan")), 0.01), "NaN"),
        (d.DreamImageGenerator, (target, 0.0), "lr is 0"),
        (d.DreamLatentGenerator, ({"samples": torch.full((1, 4, 4, 4), float("inf"))}, 0.01), "NaN or infinite"),
        (d.DreamLatentGenerator, ("latent", 0.01), "not a LATENT"),
        (d.DreamDistillDataTerm, (torch.full_like(target, float("nan")), 1.0), "NaN"),
        (d.DreamDistillDataTerm, (target, 1.0, None, "blur"), "Dream Degrade"),
    ]:
        with pytest.raises(common.InputError, match=message):
            run(cls, *args)
    # method nodes: what needs the model, the VAE or the generator's canvas
    hole = torch.zeros(1, CANVAS, CANVAS)
    cases = [
        (dict(method="sds", latent=lat, data_term=(target, 1.0)), "needs an 'svg' or 'image'"),
        (dict(image=torch.rand(1, 36, 36, 3)), "multiple of the VAE's factor 8"),
        (dict(svg=svg32, data_term=(target[:, :20, :20], 1.0)), "canvas divided by 2, 4 or 8"),
        (dict(svg=svg32, data_term=(target, 1.0, hole[:, :16])), "mask is"),
        (dict(svg=svg32, denoise=0.0), "leaves no step"),
        (dict(svg=svg32, method="sds", denoise=0.5, min_t=0.9), "min_t .* must not exceed max_t"),
        (dict(svg=svg32, regularizers=("x",)), "regularizers"),
    ]
    for kw, message in cases:
        term = kw.pop("data_term", None)
        if term is not None:
            term = run(d.DreamDistillDataTerm, *term)[0]
        with pytest.raises(common.InputError, match=message):
            split(N, oracle, tiny_vae, data_term=term, **kw)
    with pytest.raises(common.InputError, match="not a Dream generator"):
        run(d.DreamSDS, oracle, positive=cond(1), negative=cond(None), vae=tiny_vae, generator=svg32, seed=0,
            iterations=2, inner_steps=1, cfg=1.0, max_t=1.0, min_t=0.02, fit_space="auto", weighting="tweedie")
    with pytest.raises(common.InputError, match="source: required input is null"):
        run(d.DreamDDS, oracle, positive=cond(1), negative=cond(None), vae=tiny_vae, source=None,
            generator=generator(N, svg=svg32), seed=0, iterations=2, inner_steps=1, cfg=1.0, max_t=1.0, min_t=0.02,
            fit_space="auto", weighting="tweedie")
    # validation of the widgets a method node reads
    assert "denoise" in d.DreamDistill.validate_inputs(denoise=0.0)
    assert "10000" in d.DreamDistill.validate_inputs(iterations=4, denoise=1e-7)
    assert "max_t must be greater than 0" in d.DreamSDS.validate_inputs(max_t=0.0, min_t=0.0)
    assert "min_t (0.9) must not exceed max_t (0.5)" in d.DreamDDS.validate_inputs(max_t=0.5, min_t=0.9)
    assert d.DreamSDS.validate_inputs(max_t=0.5) is True                                 # min_t linked
    assert "weighting" in d.DreamSDS.validate_inputs(weighting="x")
    assert "eta" in d.DreamDistill.validate_inputs(eta=2.0)
