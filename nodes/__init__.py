"""ComfyUI adapters (thin): each module declares the nodes of one feature over ``dreamsampler_core``."""
from . import csd, cycle, distill, distill_legacy, drag, edit, regularizers, restoration, sampling, svg

NODE_LIST = [*sampling.NODES, *regularizers.NODES, *restoration.NODES, *cycle.NODES, *drag.NODES, *svg.NODES,
             *distill.NODES, *distill_legacy.NODES, *csd.NODES, *edit.NODES]
