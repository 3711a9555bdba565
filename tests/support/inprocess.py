"""Running the pack's nodes in the in-process ComfyUI (tests/comfy)."""
import torch


def run(node, *args, **kw):
    """``node.execute(*args, **kw).result`` of a V3 node class, under inference mode as ComfyUI runs it."""
    with torch.inference_mode():
        return node.execute(*args, **kw).result
