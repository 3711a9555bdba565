"""Model families for the family x feature matrix (issue 14): one module per family in this package,
each defining ``FAMILY``, a ``Family``.

A family says which model files a test server needs (``files()``: model folder -> paths, cached on
disk and rebuilt deterministically, for families ComfyUI's own loaders detect at tiny sizes) and how a
prompt loads it (``load(p)``: adds loader / conditioning nodes to a ``Prompt`` and returns the refs the
features use).  Families whose loader hard-codes sizes build the model in the server through the
test-only node ``TestFamilyModel`` (tests/support/server_nodes), from the family's
``supported_models`` class and a ModelPatcher exactly as the loader would.

The features (tests/e2e/test_family_matrix.py) only use the refs, so every family runs the same cells.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Refs:
    """Node outputs a feature may use (each a [node_id, output_index] link)."""

    model: list
    positive: list                 # a prompt describing the edit target / generation
    negative: list                 # the empty / negative prompt (also the null prompt for inversion)
    vae: list
    image: list                    # an IMAGE the family's VAE encodes (frames for video)
    latent: list                   # VAE Encode of ``image``: the source latent
    alt_positive: list             # another prompt (to show that the prompt reaches the model)
    cfg: float = 1.0               # base guidance that suits the family (distilled models: 1)
    extra: dict = field(default_factory=dict)   # "width" / "height" of ``image`` (pixels); family-specific refs


@dataclass
class Family:
    name: str                                   # id used in test names, e.g. "sdxl"
    title: str                                  # README name, e.g. "SDXL"
    load: Callable                              # load(p: Prompt) -> Refs
    files: Callable[[], dict] = dict            # () -> {"checkpoints": [Path], "diffusion_models": [...], ...}
    video: bool = False
    latent_shape: tuple = ()                    # the shape ``latent`` must have
    conditioning_checks: Callable | None = None  # (p, refs) -> [(label, prompt_a_ref, prompt_b_ref)]
    skip_features: tuple = ()                   # features that do not apply, each with the reason in ``notes``
    extra_features: tuple = ()                  # features beyond the common matrix this row runs (``keep_known``)
    #: the prompts carry the source image as a reference latent (instruction-edit models: ReferenceLatent)
    reference: bool = False
    notes: dict = field(default_factory=dict)
    #: for families built in the server: () -> (MODEL, positive, negative, alt_positive, VAE), run inside
    #: the server by the test-only node TestFamilyModel (family=name); cached by that node per server
    build: Callable | None = None


class Prompt:
    """An API prompt under construction: ``add(class_type, **inputs) -> [id, 0]``; widget inputs not
    given take the server's defaults (``object_info``), so a cell names only what it means."""

    def __init__(self, object_info: dict):
        self.info = object_info
        self.nodes: dict = {}

    def add(self, class_type: str, **inputs) -> list:
        spec = self.info[class_type]["input"]
        full = {}
        for name, s in spec.get("required", {}).items():
            if name in inputs:
                full[name] = inputs.pop(name)
            elif isinstance(s, (list, tuple)) and len(s) > 1 and isinstance(s[1], dict) and "default" in s[1]:
                full[name] = s[1]["default"]
            elif isinstance(s, (list, tuple)) and isinstance(s[0], list) and s[0]:
                full[name] = s[0][0]                       # a combo: its first option
            else:
                raise KeyError(f"{class_type}.{name} needs a value (it is a link or has no default)")
        full.update(inputs)                                # optional inputs (links or widgets)
        nid = str(len(self.nodes) + 1)
        self.nodes[nid] = {"class_type": class_type, "inputs": full}
        return [nid, 0]

    def out(self, ref: list, index: int) -> list:
        return [ref[0], index]

    def save_latent(self, ref: list, prefix: str) -> None:
        self.add("SaveLatent", samples=ref, filename_prefix=prefix)


def families() -> dict:
    """name -> Family of every module in this package."""
    out = {}
    for mod in pkgutil.iter_modules(__path__):
        fam = getattr(importlib.import_module(f"{__name__}.{mod.name}"), "FAMILY", None)
        if fam is not None:
            out[fam.name] = fam
    return dict(sorted(out.items()))


def all_files() -> dict:
    """model folder -> paths of every family's files (for one server that serves them all)."""
    merged: dict = {}
    for fam in families().values():
        for folder, paths in fam.files().items():
            merged.setdefault(folder, []).extend(paths)
    return merged
