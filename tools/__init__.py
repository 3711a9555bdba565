"""Development tools shared by tests/, scripts/ and bench/ (never shipped: see .comfyignore).

* ``host``: the pinned ComfyUI host, in-process (``import_comfy``, ``load_pack``);
* ``server``: a real ComfyUI server with this pack installed, driven over HTTP;
* ``workflows``: UI-format workflows from specs, conversion to API prompts, CI-sized prompts;
* ``workflow_specs``: the specs of the shipped workflows (``scripts/build_workflows.py`` writes them);
* ``tiny_models``: tiny seeded models and analytic oracles built with ComfyUI's own classes;
* ``shapes``: the learned shapes model of the quality benchmark;
* ``browser``: the real ComfyUI frontend in Chromium.

Import it from the repository root (``python -m bench.<name>``; pytest puts the root on sys.path).
"""
