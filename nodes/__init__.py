"""ComfyUI adapters (thin): each module declares the nodes of one feature over ``dreamsampler_core``."""
from . import csd, cycle, distill, drag, edit, inverse, regularizers, sampling, svg

NODE_LIST = [*sampling.NODES, *regularizers.NODES, *inverse.NODES, *cycle.NODES, *drag.NODES, *svg.NODES,
             *distill.NODES, *csd.NODES, *edit.NODES]
