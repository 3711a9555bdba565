"""Template thumbnails on every ComfyUI: the pack's own route answers the frontend's
``/workflow_templates/<pack>/<name>.jpg`` request, which ComfyUI 0.3.75 serves statically (only
under /api) and newer ComfyUI (0.38) refuses for anything but ``.json``."""
from __future__ import annotations

import asyncio

from tools.host import REPO
from tools.server import PACK_DIR_NAME


def _example_dir():
    return REPO / "example_workflows"


def test_pack_route_serves_every_thumbnail_and_nothing_else(server):
    pictures = sorted(_example_dir().glob("*.jpg"))
    assert len(pictures) >= 15
    for p in pictures:
        # without the /api prefix, 0.3.75's static mount does not match: this is the pack's route
        status, body = server.request("GET", f"/workflow_templates/{PACK_DIR_NAME}/{p.name}")
        assert status == 200 and body == p.read_bytes(), p.name
    for bad in ("missing.jpg", "..%2F__init__.jpg", "..%2F..%2Fetc%2Fpasswd", "x.py", "real_image_editing.json"):
        status, _ = server.request("GET", f"/workflow_templates/{PACK_DIR_NAME}/{bad}")
        assert status == 404, bad


def test_pack_route_answers_before_a_json_only_template_route(pack):
    """Newest ComfyUI registers ``/workflow_templates/{module_name}/{filename}`` (404 unless .json)
    after the custom nodes' routes: with the pack's route added first, the picture is served and
    the .json still reaches ComfyUI's handler."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer
    from dreamsampler_pack.nodes import web_routes

    async def run():
        routes = web.RouteTableDef()
        assert web_routes.add_thumbnail_route(routes, str(REPO))

        @routes.get("/workflow_templates/{module_name}/{filename}")
        async def core_template(request):     # the newest core handler's behaviour
            if not request.match_info["filename"].endswith(".json"):
                raise web.HTTPNotFound()
            return web.json_response({"core": request.match_info["filename"]})

        app = web.Application()
        app.add_routes(routes)
        async with TestClient(TestServer(app)) as client:
            pic = sorted(_example_dir().glob("*.jpg"))[0]
            r = await client.get(f"/workflow_templates/{REPO.name}/{pic.name}")
            assert r.status == 200 and await r.read() == pic.read_bytes()
            r = await client.get(f"/workflow_templates/{REPO.name}/{pic.stem}.json")
            assert r.status == 200 and (await r.json()) == {"core": f"{pic.stem}.json"}

    asyncio.run(run())
