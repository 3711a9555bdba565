"""The install paths a user takes, for real: the registry's view of pyproject.toml (comfy-cli's own
parser and validator), and the package the registry would distribute (`comfy node pack`),
extracted into a fresh ComfyUI host that then registers the nodes and runs a shipped workflow."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from support.install import check_installed_copy_runs
from tools.host import REPO
from tools.server import PACK_DIR_NAME

COMFY_VERSION_FILE = "comfyui_version.py"


def _requirements() -> list[str]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _registry_config():
    """What the registry reads: comfy-cli's config parser run in the repository root."""
    code = ("import json, dataclasses\n"
            "from comfy_cli.registry.config_parser import extract_node_configuration\n"
            "def plain(o):\n"
            "    if dataclasses.is_dataclass(o):\n"
            "        return {f.name: plain(getattr(o, f.name)) for f in dataclasses.fields(o)}\n"
            "    if isinstance(o, (list, tuple)):\n"
            "        return [plain(v) for v in o]\n"
            "    return o if o is None or isinstance(o, (bool, int, float)) else str(o)\n"
            "print(json.dumps(plain(extract_node_configuration())))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_registry_sees_dependencies_urls_icon_and_comfyui_range():
    cfg = _registry_config()
    project, tool = cfg["project"], cfg["tool_comfy"]
    # the registry installs project.dependencies; ComfyUI-Manager installs requirements.txt: the same
    assert project["dependencies"] == _requirements()
    assert not any(re.match(r"torch([<>=~ ]|$)", d) for d in project["dependencies"]), "never pin torch"
    # the registry id is the folder every install path creates, and so the template-browser title
    assert project["name"] == PACK_DIR_NAME
    urls = project["urls"]
    for key in ("repository", "documentation", "issues"):
        assert urls[key].startswith("https://"), f"project.urls.{key} is empty"
    assert tool["publisher_id"] and tool["display_name"] == "DreamSampler"
    icon = tool["icon"]
    assert icon.startswith("https://"), "tool.comfy.Icon is empty"
    rel = icon.split("/main/", 1)[1]
    assert (REPO / rel).is_file(), f"the icon URL points at {rel}, which the repository does not have"
    # requires-comfyui holds the tested host version
    spec = project["supported_comfyui_version"]
    from tools.host import host_dir
    m = re.search(r'__version__\s*=\s*"([^"]+)"', (host_dir() / COMFY_VERSION_FILE).read_text())
    assert m and spec.startswith(">=")
    low = tuple(int(p) for p in spec[2:].split("."))
    assert tuple(int(p) for p in m.group(1).split(".")) >= low


def test_comfy_node_validate_passes(tmp_path):
    """`comfy node validate`: the registry's config check plus its security lint (no exec/eval)."""
    comfy = Path(sys.executable).with_name("comfy")
    out = subprocess.run([str(comfy), "--skip-prompt", "--no-json", "node", "validate"], cwd=REPO,
                         capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
                         env=dict(os.environ, HOME=str(tmp_path)))
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "All validation checks passed" in text and "Security warnings" not in text, text


def _pack(dest: Path) -> Path:
    """The archive `comfy node pack` builds (git-tracked files minus .comfyignore), written outside
    the repository."""
    zip_path = dest / "node.zip"
    code = ("import sys\n"
            "from comfy_cli.file_utils import zip_files\n"
            "from comfy_cli.registry.config_parser import extract_node_configuration\n"
            "cfg = extract_node_configuration()\n"
            "zip_files(sys.argv[1], includes=cfg.tool_comfy.includes)")
    out = subprocess.run([sys.executable, "-c", code, str(zip_path)], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return zip_path


def test_registry_archive_installs_into_a_fresh_host_and_runs_a_workflow(tmp_path, tiny_ckpt):
    zip_path = _pack(tmp_path)
    with zipfile.ZipFile(zip_path) as z:
        names = z.namelist()
        assert all(not (n.startswith("/") or ".." in n.split("/")) for n in names)
        for must in ("__init__.py", "pyproject.toml", "requirements.txt", "LICENSE", "web/js/dream_points.js",
                     "web/icon.png"):
            assert must in names, f"{must} missing from the registry package"
        assert any(n.startswith("dreamsampler_core/") for n in names) and any(n.startswith("nodes/") for n in names)
        assert not any(n.startswith(("tests/", "tools/", "bench/", "scripts/", ".ci/")) for n in names), \
            "dev tooling packaged"
        workflows = sorted(n for n in names if re.match(r"[a-z_]+/[a-z0-9_]+\.json$", n)
                           and n.split("/")[0] == "example_workflows")
        assert len(workflows) >= 15
        host = tmp_path / "host"
        pack_dir = host / "custom_nodes" / PACK_DIR_NAME
        z.extractall(pack_dir)
    # what the registry / Manager does next: install requirements.txt into the user's environment
    # (here every requirement is already satisfied, so this resolves offline and changes nothing)
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--dry-run", "-q", "-r",
                          str(pack_dir / "requirements.txt")], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stdout + pip.stderr

    check_installed_copy_runs(host, pack_dir, tiny_ckpt, tmp_path / "out")
