"""Node help pages: one generated markdown page per node, in sync with the node schemas, served
where the frontend's help panel looks for them (``/extensions/<pack folder>/docs/<node_id>.md``)."""
from __future__ import annotations

from tools import node_docs as docs
from tools.host import REPO
from tools.server import PACK_DIR_NAME


def test_every_node_has_a_current_help_page(pack):
    pages = docs.build()
    assert len(pages) == len(pack.nodes.NODE_LIST) >= 20
    for name, text in pages.items():
        path = docs.DOCS / name
        assert path.exists(), f"{name} missing: run scripts/build_node_docs.py"
        assert path.read_text() == text, f"{name} is stale: run scripts/build_node_docs.py"
        assert "## Inputs" in text or "## Outputs" in text
    assert sorted(p.name for p in docs.DOCS.glob("*.md")) == sorted(pages)


def test_server_serves_the_help_page_of_every_node(server):
    info = server.object_info()
    ours = {k: v for k, v in info.items() if k.startswith("Dream")}
    assert len(ours) >= 20
    for node_id, node in ours.items():
        # the frontend derives the folder from python_module ("custom_nodes.<folder>")
        module = node.get("python_module", "")
        assert module.split(".")[:2] == ["custom_nodes", PACK_DIR_NAME], module
        status, body = server.request("GET", f"/extensions/{PACK_DIR_NAME}/docs/{node_id}.md")
        assert status == 200, (node_id, status)
        text = body.decode()
        assert text == (REPO / "web" / "docs" / f"{node_id}.md").read_text()
        assert node["display_name"] in text.splitlines()[0]


def test_every_node_has_search_aliases_where_comfyui_supports_them(pack, monkeypatch):
    """Newer ComfyUI (0.38) searches nodes by ``Schema.search_aliases``; 0.3.75's Schema has no such
    field, so the pack passes it only where the Schema declares it."""
    import dataclasses
    from comfy_api.latest import io

    common = pack.nodes.common
    captured = {}

    def capture(**fields):
        captured[fields["node_id"]] = fields.get("search_aliases")
        return common.schema(**fields)

    for mod in {cls.__module__ for cls in pack.nodes.NODE_LIST}:
        monkeypatch.setattr(__import__(mod, fromlist=["schema"]), "schema", capture)
    for cls in pack.nodes.NODE_LIST:
        cls.define_schema()
    assert len(captured) == len(pack.nodes.NODE_LIST)
    for node_id, aliases in captured.items():
        assert aliases and len(aliases) >= 2 and all(a == a.lower().strip() and a for a in aliases), node_id

    fields = {"node_id": "X", "search_aliases": ["a b"]}
    has = {f.name for f in dataclasses.fields(io.Schema)}
    assert common.supported_fields(io.Schema, fields) == (fields if "search_aliases" in has else {"node_id": "X"})

    @dataclasses.dataclass
    class NewerSchema:             # the field as the newest core declares it
        node_id: str
        search_aliases: list = dataclasses.field(default_factory=list)
    assert common.supported_fields(NewerSchema, fields) == fields
    @dataclasses.dataclass
    class OldSchema:
        node_id: str
    assert common.supported_fields(OldSchema, fields) == {"node_id": "X"}
