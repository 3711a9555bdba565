"""DreamSampler node pack for ComfyUI (V3 nodes).

ComfyUI imports this package from ``custom_nodes/``; it never runs outside ComfyUI.  The math
lives in ``dreamsampler_core`` (host independent), the nodes in ``nodes/``.
"""
from comfy_api.latest import ComfyExtension

from .nodes import NODE_LIST

WEB_DIRECTORY = "./web"


class DreamSamplerExtension(ComfyExtension):
    async def get_node_list(self):
        return list(NODE_LIST)


async def comfy_entrypoint():
    return DreamSamplerExtension()
