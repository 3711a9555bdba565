"""Locate and import the real ComfyUI host in-process (CPU), and load this pack into it.

The host is the pinned ComfyUI built by ``scripts/setup_host.sh`` (or ``COMFYUI_DIR``).
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACK_MODULE = "dreamsampler_pack"


def host_dir() -> Path:
    if os.environ.get("COMFYUI_DIR"):
        return Path(os.environ["COMFYUI_DIR"]).resolve()
    base = Path(os.environ.get("DREAM_HOST_DIR", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                                / "dreamsampler-host"))
    return base / "ComfyUI"


def cache_dir() -> Path:
    d = Path(os.environ.get("DREAM_TEST_CACHE", host_dir().parent / "test-cache"))
    d.mkdir(parents=True, exist_ok=True)
    return d


#: the newest comfyui-frontend-package, served next to the pinned one (scripts/setup_host.sh adds it)
NEWEST_FRONTEND = os.environ.get("DREAM_NEWEST_FRONTEND", "1.58.1")


def newest_frontend_root() -> Path:
    """The static folder of the newest frontend, for ``main.py --front-end-root``."""
    root = host_dir().parent / "frontends" / NEWEST_FRONTEND / "comfyui_frontend_package" / "static"
    if not (root / "index.html").exists():
        raise RuntimeError(f"frontend {NEWEST_FRONTEND} not found at {root}; run scripts/setup_host.sh")
    return root


_imported = False


def import_comfy():
    """Import ComfyUI's modules in this process in CPU mode (idempotent)."""
    global _imported
    if _imported:
        return
    comfy_dir = host_dir()
    if not (comfy_dir / "main.py").exists():
        raise RuntimeError(f"no ComfyUI at {comfy_dir}; run scripts/setup_host.sh or set COMFYUI_DIR")
    sys.path.insert(0, str(comfy_dir))
    import comfy.options
    comfy.options.enable_args_parsing(False)
    from comfy.cli_args import args
    args.cpu = True
    args.deterministic = True
    import comfy.model_management  # noqa: F401  (after args)
    _imported = True


def load_pack():
    """Import this repository as a ComfyUI custom-node package (relative imports intact)."""
    import_comfy()
    if PACK_MODULE in sys.modules:
        return sys.modules[PACK_MODULE]
    spec = importlib.util.spec_from_file_location(PACK_MODULE, REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[PACK_MODULE] = mod
    spec.loader.exec_module(mod)
    return mod
