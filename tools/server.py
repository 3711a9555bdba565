"""A real ComfyUI server (``main.py --cpu``) with this pack installed, driven over HTTP.

Every server gets its own base directory (models, custom_nodes, input, output, user) under a
work folder: the pack is linked into ``custom_nodes``, the tiny checkpoint into
``models/checkpoints``.  Nothing is written into the cached ComfyUI tree.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from .host import REPO, host_dir

PACK_DIR_NAME = "comfyui-dreamsampler"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerError(RuntimeError):
    pass


class ComfyServer:
    def __init__(self, workdir: Path, checkpoints=(), python: str | None = None, extra_args=(), custom_nodes=(),
                 pack_dir: Path | None = None, comfy_dir: Path | None = None, env: dict | None = None,
                 models: dict | None = None):
        """``custom_nodes``: more node folders to link (test-only nodes); ``pack_dir``: a copy of the
        pack to install in ``custom_nodes`` instead of linking this repository (e.g. the registry
        archive, extracted); ``comfy_dir``: run this ComfyUI tree instead of the cached host (e.g. a
        fresh copy a test installed the pack into); ``env``: extra environment variables for this
        server alone (never set them in os.environ: servers started later would inherit them, and a
        different thread count changes results bit for bit); ``models``: model folder name
        ("diffusion_models", "vae", "text_encoders", ...) -> files to link there."""
        self.workdir = Path(workdir)
        self.comfy_dir = Path(comfy_dir) if comfy_dir is not None else host_dir()
        self.env = dict(env or {})
        self.pack_dir = Path(pack_dir) if pack_dir is not None else None
        self.models = {"checkpoints": [Path(c) for c in checkpoints]}
        for folder, paths in (models or {}).items():
            self.models.setdefault(folder, []).extend(Path(q) for q in paths)
        self.custom_nodes = [Path(c) for c in custom_nodes]      # more node folders (test-only nodes)
        self.python = python or sys.executable
        self.extra_args = list(extra_args)
        self.port = None
        self.proc = None
        self.log_path = self.workdir / "server.log"
        self.client_id = uuid.uuid4().hex

    # ------------------------------------------------------------------ lifecycle
    def _prepare(self):
        for sub in ("models/checkpoints", "custom_nodes", "input", "output", "temp", "user"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        link = self.workdir / "custom_nodes" / PACK_DIR_NAME
        if self.pack_dir is None or self.pack_dir.resolve() != link.resolve():
            if link.is_symlink() or link.is_file():
                link.unlink()
            elif link.exists():
                shutil.rmtree(link)
            link.symlink_to(self.pack_dir or REPO, target_is_directory=True)
        for extra in self.custom_nodes:
            dst = self.workdir / "custom_nodes" / extra.name
            if dst.is_symlink() or dst.exists():
                dst.unlink()
            dst.symlink_to(extra, target_is_directory=True)
        for folder, paths in self.models.items():
            (self.workdir / "models" / folder).mkdir(parents=True, exist_ok=True)
            for src in paths:
                dst = self.workdir / "models" / folder / src.name
                if dst.is_symlink() or dst.exists():
                    dst.unlink()
                dst.symlink_to(src)

    def start(self, timeout: float = 180.0):
        self._prepare()
        self.port = free_port()
        cmd = [self.python, str(self.comfy_dir / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(self.workdir), "--database-url", "sqlite:///:memory:",
               "--disable-auto-launch", "--deterministic", *self.extra_args]
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=str(self.comfy_dir), stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"ComfyUI exited with {self.proc.returncode}; log:\n{self.log_tail()}")
            try:
                self.get("/system_stats")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        self.stop()
        raise ServerError(f"ComfyUI did not answer within {timeout}s; log:\n{self.log_tail()}")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_tail(self, n: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    # ------------------------------------------------------------------ HTTP
    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body=None, headers=None, timeout=60):
        data = None
        headers = dict(headers or {})
        if body is not None and not isinstance(body, bytes):
            data = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif body is not None:
            data = body
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return r.status, raw
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get(self, path: str):
        status, raw = self.request("GET", path)
        if status != 200:
            raise ServerError(f"GET {path} -> {status}: {raw[:500]!r}")
        return json.loads(raw)

    def object_info(self) -> dict:
        return self.get("/object_info")

    def queue(self, prompt: dict, workflow: dict | None = None):
        """POST /prompt; returns (http_status, response json)."""
        body = {"prompt": prompt, "client_id": self.client_id}
        if workflow is not None:
            body["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
        status, raw = self.request("POST", "/prompt", body)
        return status, json.loads(raw)

    def wait(self, prompt_id: str, timeout: float = 600.0) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"ComfyUI died while running {prompt_id}; log:\n{self.log_tail()}")
            hist = self.get(f"/history/{prompt_id}")
            if prompt_id in hist and hist[prompt_id].get("status", {}).get("completed") is not None:
                entry = hist[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            time.sleep(0.25)
        raise ServerError(f"prompt {prompt_id} did not finish within {timeout}s; log:\n{self.log_tail()}")

    def run(self, prompt: dict, timeout: float = 600.0, workflow: dict | None = None) -> dict:
        """Queue and wait; raise ServerError with the server's own message if it fails."""
        status, resp = self.queue(prompt, workflow)
        if status != 200:
            raise ServerError(f"/prompt rejected the prompt ({status}): {json.dumps(resp)[:3000]}")
        entry = self.wait(resp["prompt_id"], timeout)
        if entry["status"]["status_str"] != "success":
            raise ServerError(f"execution failed: {json.dumps(execution_error(entry))[:3000]}\n{self.log_tail(40)}")
        return entry

    def interrupt(self):
        self.request("POST", "/interrupt", {})

    def upload_image(self, path: Path, name: str | None = None) -> str:
        name = name or Path(path).name
        boundary = uuid.uuid4().hex
        data = Path(path).read_bytes()
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
                f"Content-Type: image/png\r\n\r\n").encode() + data + \
               (f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\ntrue"
                f"\r\n--{boundary}--\r\n").encode()
        status, raw = self.request("POST", "/upload/image", body,
                                   {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if status != 200:
            raise ServerError(f"upload failed {status}: {raw[:300]!r}")
        return json.loads(raw)["name"]

    def fetch_outputs(self, entry: dict, dest: Path | None = None) -> list[Path]:
        """Copy every output file of a history entry (images, svgs...) into dest; return the paths."""
        paths = []
        for node_out in entry.get("outputs", {}).values():
            for key, items in node_out.items():
                if not isinstance(items, list):
                    continue
                for it in items:
                    if not (isinstance(it, dict) and "filename" in it):
                        continue
                    q = urllib.parse.urlencode({"filename": it["filename"], "subfolder": it.get("subfolder", ""),
                                                "type": it.get("type", "output")})
                    status, raw = self.request("GET", f"/view?{q}")
                    if status != 200:
                        raise ServerError(f"/view {it} -> {status}")
                    if dest is not None:
                        dest.mkdir(parents=True, exist_ok=True)
                        p = dest / it["filename"]
                        p.write_bytes(raw)
                        paths.append(p)
        return paths


def execution_error(entry: dict) -> dict:
    for kind, data in entry.get("status", {}).get("messages", []):
        if kind == "execution_error":
            return data
    return {}
