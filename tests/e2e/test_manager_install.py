"""Install through ComfyUI-Manager, as a user's "Install via Git URL" does, into a fresh host.

The real ``comfyui-manager`` from the package registry (its ``cm-cli``, the same install code the
Manager's UI calls) clones this repository from a git URL served over HTTP on 127.0.0.1 (a bare
clone of HEAD: what a user would clone) into a fresh copy of the ComfyUI tree and installs
``requirements.txt``.  ComfyUI 0.3.75 cannot load Manager 4.x in its server (``--enable-manager``
came later), so the CLI is the Manager's install path that runs here.  Then the host is started
("restart"), the nodes must be registered and a shipped workflow must run from the installed copy.
"""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from support.install import check_installed_copy_runs
from tools.host import REPO, host_dir
from tools.server import PACK_DIR_NAME


def _serve(directory: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_manager_installs_the_pack_from_a_git_url_and_a_workflow_runs(tmp_path, tiny_ckpt):
    comfy = tmp_path / "ComfyUI"
    shutil.copytree(host_dir(), comfy, ignore=shutil.ignore_patterns("custom_nodes", "user",
                                                                     "output", "input", "temp"))
    (comfy / "custom_nodes").mkdir()
    # the repository as a user's git URL serves it (dumb HTTP: a bare clone + update-server-info)
    served = tmp_path / "git"
    bare = served / f"{PACK_DIR_NAME}.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(REPO), str(bare)], check=True, timeout=120)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True, timeout=60)
    httpd = _serve(served)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/{PACK_DIR_NAME}.git"
    try:
        cm_cli = Path(sys.executable).with_name("cm-cli")
        out = subprocess.run([str(cm_cli), "install", url], capture_output=True, text=True, timeout=600,
                             stdin=subprocess.DEVNULL, cwd=tmp_path,
                             env=dict(os.environ, COMFYUI_PATH=str(comfy), HOME=str(tmp_path), COLUMNS="400"))
    finally:
        httpd.shutdown()
    log = out.stdout + out.stderr
    assert out.returncode == 0 and "[INSTALLED]" in log, log[-4000:]
    installed = comfy / "custom_nodes" / PACK_DIR_NAME
    assert (installed / "__init__.py").is_file() and (installed / ".git").is_dir()
    # the Manager ran pip for every line of requirements.txt
    reqs = [ln.strip() for ln in (installed / "requirements.txt").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]
    for req in reqs:
        assert f"'pip', 'install', '{req}'" in log, (req, log[-4000:])

    check_installed_copy_runs(comfy, installed, tiny_ckpt, tmp_path / "out", comfy_dir=comfy)
