"""ComfyUI adapters (thin): each module declares nodes over ``dreamsampler_core``."""
from . import regularizers, sampling

NODE_LIST = [*sampling.NODES, *regularizers.NODES]
