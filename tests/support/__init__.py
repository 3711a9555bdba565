"""Test support: the real ComfyUI host (in-process and server), tiny models, analytic oracles."""
