"""The host's files: ComfyUI's input folder (contained paths) and core SVG objects for Save SVG."""
from __future__ import annotations

import io as _io
import os as _os
import typing as _typing

class _SVGData:
    """Stand-in for comfy_extras.nodes_images.SVG where that module cannot be imported (it imports the
    server; e.g. ComfyUI used as a library).  SaveSVGNode reads only ``.data``."""

    def __init__(self, data):
        self.data = data

    def combine(self, other):
        return type(self)(self.data + other.data)


def core_svg(svg_texts):
    """A core ``SVG`` object (comfy_extras.nodes_images.SVG: a list of BytesIO in ``.data``, what
    SaveSVGNode consumes) of SVG texts.  SaveSVGNode pastes the prompt into a CDATA block right after
    the ``<svg>`` tag and writes the rest verbatim: the texts must hold no ']]>' and no script."""
    for t in svg_texts:
        low = t.lower()
        if "]]>" in t or "<script" in low or "<![cdata[" in low or "<metadata" in low:
            raise ValueError("refusing to hand an SVG with ']]>', CDATA, <metadata> or <script> to Save SVG")
    return core_svg_type()([_io.BytesIO(t.encode("utf-8")) for t in svg_texts])


def core_svg_type() -> type:
    """The class of core's SVG value: ``comfy_api.latest.io.SVG.Type`` where it is a class (the
    newest ComfyUI; 0.3.75's is ``typing.Any``), else ``comfy_extras.nodes_images.SVG`` (0.3.75; in
    the newest an alias of the former, marked temporary), else a stand-in with the same payload."""
    try:
        from comfy_api.latest import io as _api_io
        svg = _api_io.SVG.Type
        if isinstance(svg, type) and svg is not _typing.Any:      # (Any is a class since Python 3.11)
            return svg
    except Exception:          # noqa: BLE001 - an io without SVG: the next candidate
        pass
    try:
        from comfy_extras.nodes_images import SVG
        return SVG
    except Exception:          # noqa: BLE001 - any import failure: the same payload in a stand-in
        return _SVGData


def input_directory() -> str:
    import folder_paths
    return folder_paths.get_input_directory()


def input_svg_files() -> list[str]:
    """The .svg files directly or in sub-folders of ComfyUI's input folder (relative, '/'-separated)."""
    root = input_directory()
    found = []
    if _os.path.isdir(root):
        for dirpath, _, files in _os.walk(root):
            for f in files:
                if f.lower().endswith(".svg"):
                    found.append(_os.path.relpath(_os.path.join(dirpath, f), root).replace(_os.sep, "/"))
    return sorted(found)


#: longest name accepted for a file / folder inside the input folder (Linux allows 255 per part)
MAX_INPUT_NAME = 1024


def input_file_path(name: str, kind: str = "file") -> str:
    """Absolute path of ``name`` inside ComfyUI's input folder; ValueError if it escapes the folder
    (absolute paths, '..', symlinks out) or is not a regular file (``kind="folder"``: a folder).
    Containment is decided on the name alone before the file system is asked whether anything
    exists, so the message never tells whether a path outside the folder exists."""
    name = str(name)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("the name contains an invalid character (a lone UTF-16 surrogate); retype it") from None
    if len(name) > MAX_INPUT_NAME or any(len(part.encode("utf-8", "replace")) > 255
                                         for part in name.replace("\\", "/").split("/")):
        raise ValueError(f"the name is too long ({len(name)} characters; at most {MAX_INPUT_NAME}, 255 per "
                         "folder level); give a path inside ComfyUI's input folder")
    outside = f"{name!r} is not inside ComfyUI's input folder; give a path relative to that folder"
    if "\0" in name:
        raise ValueError(outside)
    root = _os.path.realpath(input_directory())
    path = _os.path.realpath(_os.path.join(root, name))
    if _os.path.isabs(name) or _os.path.commonpath([root, path]) != root:
        raise ValueError(outside)
    if not (_os.path.isdir(path) if kind == "folder" else _os.path.isfile(path)):
        raise ValueError(f"{name!r} is not a {kind} in ComfyUI's input folder")
    return path
