"""HTTP routes the pack adds to ComfyUI's server.

Template thumbnails: the frontend asks for ``/api/workflow_templates/<pack folder>/<name>.jpg``.
ComfyUI 0.3.75 serves the whole example folder statically at that path; newer ComfyUI (0.38) looks
templates up by name and answers 404 for anything that is not ``.json``, so the pictures would be
missing there.  This route serves exactly the pictures next to the example workflows, under the same
path; it is registered at import, i.e. before ComfyUI adds its own template routes, so it answers
first where both match, and ComfyUI keeps serving the ``.json`` files itself.

Stats: ``GET /dreamsampler/stats`` answers the pack's live-object counts as JSON
(``nodes.host.vae.live_counts``: gradient copies, VAE codecs, codecs holding a gradient copy), read
from weak sets: read-only and cheap (no garbage collection, no model access), for soak tests and
for a user who wants to see that a run left nothing behind.
"""
from __future__ import annotations

import logging
import os

THUMBNAIL_PATTERN = r"[A-Za-z0-9_\-]+\.(?:jpg|jpeg|png|webp)"
EXAMPLE_FOLDERS = ("example_workflows",)


def example_folder(pack_dir: str) -> str | None:
    for name in EXAMPLE_FOLDERS:
        d = os.path.join(pack_dir, name)
        if os.path.isdir(d):
            return d
    return None


def thumbnail_path(pack_dir: str, filename: str) -> str | None:
    """The picture ``filename`` next to the example workflows, or None (never outside that folder)."""
    folder = example_folder(pack_dir)
    if folder is None or os.path.basename(filename) != filename:
        return None
    path = os.path.join(folder, filename)
    return path if os.path.isfile(path) else None


def add_thumbnail_route(routes, pack_dir: str) -> bool:
    """Add the thumbnail route for the pack in ``pack_dir`` to an aiohttp ``RouteTableDef``."""
    from aiohttp import web
    if example_folder(pack_dir) is None:
        return False
    module = os.path.basename(os.path.normpath(pack_dir))

    async def thumbnail(request):
        path = thumbnail_path(pack_dir, request.match_info["filename"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    routes.get(f"/workflow_templates/{module}/{{filename:{THUMBNAIL_PATTERN}}}")(thumbnail)
    logging.debug("DreamSampler: template thumbnails served for %s", module)
    return True


STATS_PATH = "/dreamsampler/stats"


def add_stats_route(routes) -> None:
    """Add ``GET /dreamsampler/stats`` (live gradient copies and codecs) to an aiohttp ``RouteTableDef``."""
    from aiohttp import web

    async def stats(request):
        from .host.vae import live_counts
        return web.json_response(live_counts())

    routes.get(STATS_PATH)(stats)


def register(pack_dir: str) -> bool:
    """Add the pack's routes to the running server (no-op outside a ComfyUI server)."""
    try:
        from server import PromptServer
    except ImportError:
        return False
    instance = getattr(PromptServer, "instance", None)
    if instance is None:
        return False
    add_stats_route(instance.routes)
    return add_thumbnail_route(instance.routes, pack_dir)
