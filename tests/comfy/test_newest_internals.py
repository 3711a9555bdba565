"""Newest ComfyUI internals that changed under the pack (issue 25, section 2), in-process on the
pinned 0.3.75: where 0.3.75 shows the behaviour the test runs it, where it cannot, the newest shape
is mimicked from its source (COMPATIBILITY.md, "Newest internals")."""
from __future__ import annotations

import dataclasses
import types

import pytest


@pytest.fixture(scope="module")
def common(pack):
    return pack.nodes.common


# ----------------------------------------------------------------------------- io.Schema's shape
def test_schema_fields_of_a_dataclass_and_of_a_public_wrapper(common):
    """``supported_fields`` reads what the Schema constructor takes whether ``io.Schema`` is the
    ``_io`` dataclass (0.3.75) or a public wrapper class that is not a dataclass (the newest
    ``io`` is ``_io_public``): dataclasses.fields() raises on the latter."""
    from comfy_api.latest import io
    fields = {"node_id": "X", "display_name": "x", "search_aliases": ["a b"]}
    has = {f.name for f in dataclasses.fields(io.Schema)}
    assert common.supported_fields(io.Schema, fields) == (
        fields if "search_aliases" in has else {"node_id": "X", "display_name": "x"})

    class PublicSchema:                  # explicit parameters, search_aliases among them
        def __init__(self, node_id, display_name=None, *, search_aliases=None):
            pass

    class OldPublicSchema:               # explicit parameters, no search_aliases
        def __init__(self, node_id, display_name=None):
            pass

    class Forwarding(io.Schema):         # **kwargs over the dataclass it derives from
        def __init__(self, **kwargs):
            super().__init__(**kwargs)

    class Opaque:                        # **kwargs and nothing to read: newer fields left out
        def __init__(self, **kwargs):
            pass

    assert common.supported_fields(PublicSchema, fields) == fields
    assert common.supported_fields(OldPublicSchema, fields) == {"node_id": "X", "display_name": "x"}
    assert common.supported_fields(Forwarding, fields) == common.supported_fields(io.Schema, fields)
    assert common.supported_fields(Opaque, fields) == {"node_id": "X", "display_name": "x"}


def test_every_node_defines_its_schema_through_a_public_schema_wrapper(pack, common, monkeypatch):
    """With ``io.Schema`` a wrapper class (not the dataclass) every node still defines its schema,
    and the wrapper gets the real Schema's fields."""
    from comfy_api.latest import io
    real = io.Schema
    made = []

    class PublicSchema:
        def __init__(self, node_id, display_name=None, category="", inputs=None, outputs=None, hidden=None,
                     description="", is_output_node=False, is_deprecated=False, is_experimental=False,
                     is_api_node=False, not_idempotent=False, enable_expand=False):
            args = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
            args = {k: v for k, v in args.items() if k in {f.name for f in dataclasses.fields(real)}}
            self.schema = real(**args)
            made.append(node_id)

    monkeypatch.setattr(common, "io", types.SimpleNamespace(**{**vars(io), "Schema": PublicSchema}))
    for cls in pack.nodes.NODE_LIST:
        out = cls.define_schema()
        assert isinstance(out, PublicSchema) and out.schema.node_id == made[-1]
    assert len(made) == len(pack.nodes.NODE_LIST)


# ----------------------------------------------------------------------------- core SVG type
SVG_TEXT = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="2" height="2"/></svg>'


def _svg_value(pack):
    value = pack.nodes.host.core_svg([SVG_TEXT])
    assert [b.getvalue().decode() for b in value.data] == [SVG_TEXT]
    return value


class _Svg:
    """core's SVG value (0.3.75's comfy_extras.nodes_images.SVG, the newest io.SVG.Type): .data"""

    def __init__(self, data):
        self.data = data


def _nodes_images(monkeypatch, svg_class):
    """``comfy_extras.nodes_images`` as the server imports it (in-process it cannot import: it needs
    the server), holding ``svg_class`` as ``SVG``."""
    import sys
    module = types.ModuleType("comfy_extras.nodes_images")
    module.SVG = svg_class
    monkeypatch.setitem(sys.modules, "comfy_extras.nodes_images", module)


def test_core_svg_skips_0375s_any(pack, monkeypatch):
    """0.3.75: ``io.SVG.Type`` is ``typing.Any`` (a class since Python 3.11, but not core's SVG): the
    pack takes ``comfy_extras.nodes_images.SVG`` (through the real server: the shipped SVG workflows'
    Save SVG nodes, tests/e2e/test_server.py)."""
    import typing
    from comfy_api.latest import io
    assert io.SVG.Type is typing.Any
    _nodes_images(monkeypatch, _Svg)
    assert type(_svg_value(pack)) is _Svg


def test_core_svg_prefers_the_io_svg_type_over_the_temporary_alias(pack, monkeypatch):
    """The newest ComfyUI defines the class as ``io.SVG.Type`` and keeps ``nodes_images.SVG`` as a
    temporary alias: the pack takes ``io.SVG.Type`` first, so it keeps working once the alias goes
    (here the alias is gone: a leftover class that is not core's type any more)."""
    from comfy_api.latest import io
    monkeypatch.setattr(io.SVG, "Type", _Svg)
    _nodes_images(monkeypatch, type("Leftover", (), {"__init__": lambda self, data: None}))
    assert type(_svg_value(pack)) is _Svg


def test_core_svg_falls_back_to_the_stand_in(pack, monkeypatch):
    """Neither a class in ``io.SVG.Type`` nor an importable ``comfy_extras.nodes_images``: the
    stand-in, with the same payload."""
    import sys
    monkeypatch.setitem(sys.modules, "comfy_extras.nodes_images", None)
    assert type(_svg_value(pack)).__name__ == "_SVGData"
