"""Write the node help pages the ComfyUI frontend shows in its node help panel.

    python scripts/build_node_docs.py          # (re)write web/docs/<node_id>.md
    python scripts/build_node_docs.py --check  # exit 1 if a page is missing or stale

The frontend fetches ``/extensions/<pack folder>/docs/<node_id>.md`` (and ``<node_id>/<locale>.md``
first); ``/extensions/<pack folder>/`` is this pack's ``web/`` folder (WEB_DIRECTORY).  Each page is
generated from the node's own schema (description, every input with its type, default, range and
tooltip, every output) plus the shipped workflows that use the node, so it can never disagree with
what the node does; ``tests/e2e/test_node_docs.py`` keeps the pages in sync and checks the server
serves them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
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
    sys.path[:0] = [str(REPO / "tests")]
    from support.host import load_pack
    pack = load_pack()
    used = workflows_using()
    pages = {}
    for cls in pack.nodes.NODE_LIST:
        schema = cls.define_schema()
        pages[f"{schema.node_id}.md"] = page(schema, used.get(schema.node_id, []))
    return pages


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only report missing or stale pages")
    args = ap.parse_args(argv)
    pages = build()
    stale = [n for n, text in pages.items() if not (DOCS / n).exists() or (DOCS / n).read_text() != text]
    extra = sorted(p.name for p in DOCS.glob("*.md") if p.name not in pages) if DOCS.is_dir() else []
    if args.check:
        for n in stale + extra:
            print("stale or extra:", n)
        raise SystemExit(1 if stale or extra else 0)
    DOCS.mkdir(parents=True, exist_ok=True)
    for n in stale:
        (DOCS / n).write_text(pages[n])
    for n in extra:
        (DOCS / n).unlink()
    print(f"{len(pages)} pages, {len(stale)} written, {len(extra)} removed")


if __name__ == "__main__":
    main()
