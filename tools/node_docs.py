"""The node help pages the ComfyUI frontend shows in its node help panel (scripts/build_node_docs.py
writes them to web/docs/, tests/e2e/test_node_docs.py keeps them in sync).

Each page is generated from the node's own schema (description, every input with its type,
default, range and tooltip, every output) plus the shipped workflows that use the node.
"""
from __future__ import annotations

import json

from .host import REPO, load_pack

DOCS = REPO / "web" / "docs"
README_URL = "https://github.com/dreamsampler/comfyui-dreamsampler#readme"


EXAMPLES = REPO / "example_workflows"


def workflows_using() -> dict[str, list[tuple[str, str]]]:
    """node_id -> [(workflow name, its title)] over the shipped example workflows."""
    used: dict[str, list[tuple[str, str]]] = {}
    for p in sorted(EXAMPLES.glob("*.json")):
        wf = json.loads(p.read_text())
        title = wf.get("extra", {}).get("dreamsampler", {}).get("title", p.stem)
        for t in sorted({n.get("type") for n in wf.get("nodes", [])}):
            used.setdefault(t, []).append((p.stem, title))
    return used


def _line(text) -> str:
    return " ".join(str(text).split())


def _value(inp) -> str:
    parts = []
    default = getattr(inp, "default", None)
    if default is not None and not (isinstance(default, str) and default == ""):
        parts.append(f"default `{default}`" if not isinstance(default, str) or "\n" not in default else "multi-line")
    lo, hi = getattr(inp, "min", None), getattr(inp, "max", None)
    if lo is not None or hi is not None:
        parts.append(f"{lo if lo is not None else '−∞'} … {hi if hi is not None else '∞'}")
    options = getattr(inp, "options", None)
    if options:
        parts.append(" / ".join(f"`{o}`" for o in options))
    return "; ".join(parts)


def page(schema, used: list[tuple[str, str]]) -> str:
    lines = [f"# {schema.display_name or schema.node_id}", "",
             f"`{schema.node_id}` · category **{schema.category}**", "", schema.description.strip(), ""]
    # lists, not wide tables: the help panel is a narrow sidebar
    if schema.inputs:
        lines += ["## Inputs", ""]
        for inp in schema.inputs:
            head = f"* **`{inp.id}`** · {inp.get_io_type()}" + (" · optional" if inp.optional else "")
            value = _value(inp)
            lines.append(head + (f" · {value}" if value else ""))
            if inp.tooltip:
                lines.append(f"  {_line(inp.tooltip)}")
        lines.append("")
    if schema.outputs:
        lines += ["## Outputs", ""]
        for out in schema.outputs:
            lines.append(f"* **`{out.display_name or out.io_type}`** · {out.io_type}")
            if out.tooltip:
                lines.append(f"  {_line(out.tooltip)}")
        lines.append("")
    lines += ["## Example workflows", ""]
    if used:
        lines += [f"* **{name}**: {title} (*Browse Templates* → this pack)" for name, title in used]
    else:
        lines.append("Not in a shipped workflow; the README's *Nodes* section shows how to wire it.")
    lines += ["", f"More: the pack's README ({README_URL}).", ""]
    return "\n".join(lines)


def build() -> dict[str, str]:
    """file name -> markdown of every node's help page (the pack loaded into the in-process host)."""
    pack = load_pack()
    used = workflows_using()
    pages = {}
    for cls in pack.nodes.NODE_LIST:
        schema = cls.define_schema()
        pages[f"{schema.node_id}.md"] = page(schema, used.get(schema.node_id, []))
    return pages
