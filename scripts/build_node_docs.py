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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))        # the tools package

from tools.node_docs import DOCS, build  # noqa: E402


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
