"""Node help pages: one generated markdown page per node, in sync with the node schemas, served
where the frontend's help panel looks for them (``/extensions/<pack folder>/docs/<node_id>.md``)."""
from __future__ import annotations

import sys

from support.host import REPO
from support.server import PACK_DIR_NAME


def _docs_module():
    sys.path.insert(0, str(REPO / "scripts"))
    import build_node_docs
    return build_node_docs


def test_every_node_has_a_current_help_page(pack):
    docs = _docs_module()
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
