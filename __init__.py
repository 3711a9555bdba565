"""DreamSampler node pack for ComfyUI (V3 nodes).

ComfyUI imports this package from ``custom_nodes/`` and calls ``comfy_entrypoint``.  The math lives
in ``dreamsampler_core`` (host independent), the nodes in ``nodes/``.
"""
WEB_DIRECTORY = "./web"

try:
    from comfy_api.latest import ComfyExtension
except ImportError:     # imported outside ComfyUI (e.g. by pytest walking the repo): nothing to register
    ComfyExtension = None

# without a parent package (pytest importing this file as a top-level module, e.g. from a checkout
# whose folder name is not a Python identifier) the relative imports below cannot work: register nothing
if ComfyExtension is not None and __package__:
    import os

    from .nodes import NODE_LIST
    from .nodes import web_routes

    web_routes.register(os.path.dirname(os.path.abspath(__file__)))

    class DreamSamplerExtension(ComfyExtension):
        async def get_node_list(self):
            return list(NODE_LIST)

    async def comfy_entrypoint():
        return DreamSamplerExtension()
