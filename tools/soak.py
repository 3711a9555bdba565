"""A long session through one real server (issue 25, section 3), shared by tests/e2e/test_soak.py (a
short schedule) and ``python -m bench.soak`` (the long one).

One ComfyUI server (``main.py --cpu``) gets a seeded schedule of prompts: the shipped SD1.5 workflows
at CI settings (fresh seeds, so they really run), the bad-input catalog's cases (tools/bad_inputs.py),
``/interrupt`` at a random point of a long run (inside score-distillation and DPS gradient steps,
inside DDIM-inversion refinement), and queue deletions (a queued prompt removed with
``POST /queue {"delete": [id]}`` while another runs); a second client polls ``/history``, ``/queue``
and ``/dreamsampler/stats`` all along.  After every action the soak checks that the server is up,
that the pack holds no gradient copy and no codec holding one (``GET /dreamsampler/stats``), and that
the output folder gained exactly files the prompt's history lists (none for an interrupted, failed or
deleted prompt); it samples the server's RSS.  The prompt run right after each interrupt (the same
workflow at CI settings) is run again on a fresh server at the end: its outputs must be identical
(PNG pixels; SVG drawings without the metadata block, which carries server state).

``run_soak`` returns a ``SoakReport``; the callers decide what to assert or print.
"""
from __future__ import annotations

import copy
import io
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .bad_inputs import SVG_CASES, WIDGET_CASES, svg_prompt
from .host import REPO
from .server import ComfyServer, ServerError

#: long versions of shipped workflows for /interrupt: label -> (workflow, node whose progress marks
#: that the long part runs, widgets of the prompt run after the interrupt (the probe), widgets that
#: make the interrupted run long, where the interrupt lands).  Where the run makes gradient copies
#: (DPS, a latent-space fit) the interrupt waits until /dreamsampler/stats shows them alive.
LONG_RUNS = {
    "distill-text_to_svg": ("text_to_svg", "DreamDistill", {}, {"DreamDistill": {"iterations": 300}},
                            "score-distillation gradient step"),
    "distill-image_to_svg": ("image_to_svg", "DreamDistill", {}, {"DreamDistill": {"iterations": 300}},
                             "score-distillation gradient step"),
    # fit in latent space: each inner step backpropagates through the VAE encoder's gradient copy
    "distill-latent-svg_restoration": ("svg_restoration", "DreamDistill",
                                       {"DreamDistill": {"fit_space": "latent"}},
                                       {"DreamDistill": {"iterations": 300}},
                                       "score-distillation gradient step"),
    # the 'paper' preset leaves 2 steps in 3 to DPS (through the UNet's and the decoder's gradient copies)
    "dps-super_resolution_x4": ("super_resolution_x4", "DreamSampler",
                                {"DreamDataConsistency": {"dps": 0.5, "preset": "paper"}},
                                {"DreamSampler": {"steps": 300}}, "DPS gradient step"),
    "refine-real_image_editing": ("real_image_editing", "DreamDDIMInversion",
                                  {"DreamDDIMInversion": {"refine_steps": 3}}, {"DreamDDIMInversion": {"steps": 300}},
                                  "inversion refinement"),
}
#: the runs that hold gradient copies while they run
COPY_RUNS = ("distill-latent-svg_restoration", "dps-super_resolution_x4")
#: the share of each kind of action after the warm-up (an interrupt is followed by its probe prompt;
#: a deletion queues two prompts)
MIX = {"workflow": 0.50, "bad": 0.30, "interrupt": 0.12, "delete": 0.08}
SEED_INPUTS = ("seed", "noise_seed")
POLL_INTERVAL_S = 0.05


@dataclass
class SoakReport:
    prompts: int = 0                                  # POST /prompt calls
    outcomes: dict = field(default_factory=dict)      # "workflow:success", "bad:400", ... -> count
    rss_mb: list = field(default_factory=list)        # (prompts so far, server RSS MB) after each action
    warmup_prompts: int = 0
    leaks: list = field(default_factory=list)         # (prompt index, label, stats) with something alive
    stats_max: dict = field(default_factory=dict)     # highest counts the poller saw while prompts ran
    stats_end: dict = field(default_factory=dict)
    file_errors: list = field(default_factory=list)   # (label, message)
    failures: list = field(default_factory=list)      # (label, message): a valid prompt that failed, ...
    interrupts: list = field(default_factory=list)    # (label, where, progress at interrupt, delay s, status,
    #                                                    gradient copies alive at the interrupt or None)
    deletions: list = field(default_factory=list)     # (label, deleted before it ran, ran anyway)
    probes: list = field(default_factory=list)        # (label, identical to a fresh server, detail)
    poll_requests: int = 0
    poll_errors: list = field(default_factory=list)
    server_alive: bool = False
    seconds: float = 0.0

    def count(self, key):
        self.outcomes[key] = self.outcomes.get(key, 0) + 1

    def rss_growth_per_100(self) -> float:
        """RSS growth after the warm-up in MB per 100 prompts, from the envelope: the highest RSS of the
        last third of the samples minus the highest of the first third, over the prompts between the
        thirds' middles.  RSS steps between a few levels as different workflows leave different
        cached outputs; a leak raises the highest level, which a slope through all samples confuses
        with the order of the levels on a short run."""
        pts = [(n, mb) for n, mb in self.rss_mb if n > self.warmup_prompts]
        k = len(pts) // 3
        if k < 2:
            return float("nan")
        first, last = pts[:k], pts[-k:]
        span = sum(n for n, _ in last) / k - sum(n for n, _ in first) / k
        return 100.0 * (max(mb for _, mb in last) - max(mb for _, mb in first)) / span

    def summary(self) -> str:
        after = [mb for n, mb in self.rss_mb if n > self.warmup_prompts]
        warm = [mb for n, mb in self.rss_mb if n <= self.warmup_prompts]
        lines = [
            f"prompts {self.prompts} in {self.seconds:.0f} s; server alive at the end: {self.server_alive}",
            "outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())),
            f"RSS: {warm[-1] if warm else float('nan'):.0f} MB after the warm-up ({self.warmup_prompts} prompts), "
            f"{min(after, default=float('nan')):.0f}-{max(after, default=float('nan')):.0f} MB after it, "
            f"{self.rss_mb[-1][1] if self.rss_mb else float('nan'):.0f} MB at the end; "
            f"growth {self.rss_growth_per_100():+.1f} MB per 100 prompts (highest RSS, last third vs first third after the warm-up)",
            f"live objects: most seen while running {self.stats_max}; after every prompt: "
            f"{len(self.leaks)} prompts left something alive; at the end {self.stats_end}",
            f"interrupts: {len(self.interrupts)} (" + ", ".join(
                f"{w} {sum(i[1] == w for i in self.interrupts)}" for w in sorted({i[1] for i in self.interrupts}))
            + f"), ended interrupted: {sum(i[4] == 'interrupted' for i in self.interrupts)}, with gradient copies "
            f"alive at the interrupt: {sum(bool(i[5]) for i in self.interrupts)}",
            f"deletions: {len(self.deletions)}, removed before running: {sum(d[1] for d in self.deletions)}, "
            f"ran anyway: {sum(d[2] for d in self.deletions)}",
            f"prompts after an interrupt identical to a fresh server: {sum(p[1] for p in self.probes)} of "
            f"{len(self.probes)}",
            f"/history poller: {self.poll_requests} requests, {len(self.poll_errors)} errors",
            f"file errors {len(self.file_errors)}, failures {len(self.failures)}",
        ]
        return "\n".join(lines)


# ----------------------------------------------------------------------------- prompts
def _apply(prompt: dict, widgets: dict) -> dict:
    for node in prompt.values():
        node["inputs"].update(widgets.get(node["class_type"], {}))
    return prompt


def _reseed(prompt: dict, rng: random.Random) -> dict:
    """A fresh seed in every seed widget: the prompt really runs instead of coming from the cache."""
    for node in prompt.values():
        for name in SEED_INPUTS:
            if isinstance(node["inputs"].get(name), int):
                node["inputs"][name] = rng.randrange(2 ** 31)
    return prompt


def _node_of(prompt: dict, class_type: str) -> str:
    return next(k for k, v in prompt.items() if v["class_type"] == class_type)


class _Prompts:
    """The CI-size API prompts of the shipped SD1.5 workflows (converted once) and of the bad-input
    catalog's cases."""

    def __init__(self, server: ComfyServer, ckpt_name: str):
        from .workflow_specs import sd15_workflows, test_overrides
        from .workflows import prepare_prompt, workflow_path
        overrides = test_overrides()
        self.workflows = {p.stem: prepare_prompt(server, p, ckpt_name, fast=True, test_overrides=overrides)[1]
                          for p in sd15_workflows(REPO / "example_workflows")}
        # the saved legacy workflows some catalog cases change ("legacy/<name>"; never run as workflows)
        self._legacy = {s: prepare_prompt(server, workflow_path(s), ckpt_name, fast=True, test_overrides=overrides)[1]
                        for s in sorted({c[1] for c in WIDGET_CASES}) if s.startswith("legacy/")}
        self.bad = [c[0] for c in WIDGET_CASES] + [c[0] for c in SVG_CASES]
        self._widget = {c[0]: c for c in WIDGET_CASES}
        self._svg = {c[0]: c for c in SVG_CASES}

    def workflow(self, stem: str, widgets: dict | None = None) -> dict:
        prompt = self.workflows[stem] if stem in self.workflows else self._legacy[stem]
        return _apply(copy.deepcopy(prompt), widgets or {})

    def bad_case(self, case: str) -> dict:
        if case in self._svg:
            return svg_prompt(self._svg[case][1])
        _, stem, cls, change, *_ = self._widget[case]
        prompt = self.workflow(stem)
        prompt[_node_of(prompt, cls)]["inputs"].update(change)
        return prompt


def schedule(n_prompts: int, seed: int, workflows: list, bad: list, long_runs: list, mix: dict | None = None) -> list:
    """The seeded list of actions, about ``n_prompts`` prompts: a warm-up run of every workflow, then one
    of each long run interrupted and one deletion (so even a short soak has them all), then the mix
    (``MIX`` by default).  Actions: ("workflow", stem), ("bad", case), ("interrupt", label),
    ("delete", stem, stem)."""
    rng = random.Random(seed)
    actions = [("workflow", s) for s in sorted(workflows)]
    actions += [("interrupt", label) for label in long_runs]
    actions.append(("delete", rng.choice(workflows), rng.choice(workflows)))
    kinds, weights = zip(*(mix or MIX).items())
    while _prompt_count(actions) < n_prompts:
        kind = rng.choices(kinds, weights)[0]
        if kind == "workflow":
            actions.append(("workflow", rng.choice(workflows)))
        elif kind == "bad":
            actions.append(("bad", rng.choice(bad)))
        elif kind == "interrupt":
            actions.append(("interrupt", rng.choice(long_runs)))
        else:
            actions.append(("delete", rng.choice(workflows), rng.choice(workflows)))
    return actions


def _prompt_count(actions) -> int:
    return sum(2 if a[0] in ("interrupt", "delete") else 1 for a in actions)


# ----------------------------------------------------------------------------- the second client
class _Poller(threading.Thread):
    """Polls /history, /queue and /dreamsampler/stats on its own connections until stopped; keeps the
    highest live-object counts it saw and every failed request."""

    def __init__(self, server: ComfyServer):
        super().__init__(daemon=True)
        self.server = server
        self.stop_event = threading.Event()
        self.requests = 0
        self.errors = []
        self.stats_max = {}

    def run(self):
        paths = ("/history?max_items=32", "/queue", "/dreamsampler/stats")
        i = 0
        while not self.stop_event.is_set():
            path = paths[i % len(paths)]
            i += 1
            try:
                status, raw = self.server.request("GET", path, timeout=60)
                body = json.loads(raw)
                if status != 200:
                    self.errors.append(f"GET {path} -> {status}")
                elif path == "/dreamsampler/stats":
                    for k, v in body.items():
                        self.stats_max[k] = max(self.stats_max.get(k, 0), v)
            except Exception as e:            # a refused connection, a timeout, a body that is not JSON
                self.errors.append(f"GET {path}: {type(e).__name__}: {e}")
            self.requests += 1
            self.stop_event.wait(POLL_INTERVAL_S)


# ----------------------------------------------------------------------------- the soak
class _Soak:
    def __init__(self, server: ComfyServer, prompts: _Prompts, rng: random.Random, report: SoakReport,
                 prompt_timeout: float):
        self.server, self.prompts, self.rng, self.report = server, prompts, rng, report
        self.timeout = prompt_timeout
        self.out_dir = server.workdir / "output"
        self.probe_prompts = []           # (label, prompt, {name: bytes}) of each prompt after an interrupt

    # --- helpers
    def _files(self) -> set:
        return {p.relative_to(self.out_dir).as_posix() for p in self.out_dir.rglob("*") if p.is_file()}

    def _queue(self, prompt: dict):
        self.report.prompts += 1
        return self.server.queue(prompt)

    def _wait(self, prompt_id: str) -> dict:
        return self.server.wait(prompt_id, timeout=self.timeout)

    @staticmethod
    def _status(entry: dict) -> str:
        kinds = [k for k, _ in entry["status"].get("messages", [])]
        if "execution_interrupted" in kinds:
            return "interrupted"
        return entry["status"]["status_str"]

    @staticmethod
    def _listed(entry: dict) -> set:
        """The output-folder files a history entry names."""
        out = set()
        for node_out in entry.get("outputs", {}).values():
            for items in node_out.values():
                for it in items if isinstance(items, list) else ():
                    if isinstance(it, dict) and "filename" in it and it.get("type", "output") == "output":
                        out.add(f"{it['subfolder']}/{it['filename']}" if it.get("subfolder") else it["filename"])
        return out

    def _check_files(self, label: str, before: set, entry: dict | None):
        """New files: none unless the prompt succeeded, and then only files its history lists (all of
        which exist)."""
        new = self._files() - before
        if entry is None or self._status(entry) != "success":
            if new:
                self.report.file_errors.append((label, f"a prompt that did not succeed left files: {sorted(new)}"))
            return
        listed = self._listed(entry)
        if new - listed:
            self.report.file_errors.append((label, f"files not in the prompt's outputs: {sorted(new - listed)}"))
        missing = [f for f in listed if not (self.out_dir / f).is_file()]
        if missing:
            self.report.file_errors.append((label, f"listed outputs missing: {missing}"))

    def _outputs(self, entry: dict) -> dict:
        got = {}
        for f in sorted(self._listed(entry)):
            got[Path(f).name] = (self.out_dir / f).read_bytes()
        return got

    def _after(self, label: str):
        """What holds after every action: the server is up, nothing of the pack's is alive, RSS sample."""
        if self.server.proc.poll() is not None:
            raise ServerError(f"the server died after {label}; log:\n{self.server.log_tail()}")
        stats = self.server.get("/dreamsampler/stats")
        if stats.get("grad_copies") or stats.get("open_codecs"):
            self.report.leaks.append((self.report.prompts, label, stats))
        self.report.rss_mb.append((self.report.prompts, rss_mb(self.server.proc.pid)))

    # --- actions
    def workflow(self, stem: str, widgets: dict | None = None, label: str | None = None) -> dict | None:
        label = label or f"workflow:{stem}"
        before = self._files()
        status, resp = self._queue(_reseed(self.prompts.workflow(stem, widgets), self.rng))
        if status != 200:
            self.report.failures.append((label, f"refused: {json.dumps(resp)[:500]}"))
            self.report.count(f"{label.split(':')[0]}:refused")
            return None
        entry = self._wait(resp["prompt_id"])
        result = self._status(entry)
        self.report.count(f"{label.split(':')[0]}:{result}")
        if result != "success":
            self.report.failures.append((label, json.dumps(entry["status"])[:800]))
        self._check_files(label, before, entry)
        return entry

    def bad(self, case: str):
        before = self._files()
        status, resp = self._queue(self.prompts.bad_case(case))
        entry = None
        if status == 400:
            result = "400"
        elif status != 200:
            result = f"http-{status}"
            self.report.failures.append((f"bad:{case}", f"HTTP {status}: {json.dumps(resp)[:300]}"))
        else:
            entry = self._wait(resp["prompt_id"])
            result = self._status(entry)
            if resp.get("node_errors"):
                result = f"partial-{result}"           # the other outputs ran; the bad node's did not
            elif result == "success":
                self.report.failures.append((f"bad:{case}", "the bad input ran without an error"))
        self.report.count(f"bad:{result}")
        self._check_files(f"bad:{case}", before, entry)

    def interrupt(self, label: str):
        import websocket
        stem, node_cls, probe_widgets, long_widgets, where = LONG_RUNS[label]
        widgets = {**probe_widgets}
        for cls, w in long_widgets.items():
            widgets[cls] = {**widgets.get(cls, {}), **w}
        prompt = _reseed(self.prompts.workflow(stem, widgets), self.rng)
        node_id = _node_of(prompt, node_cls)
        at_progress = self.rng.randint(1, 3)
        delay = self.rng.uniform(0.0, 0.3)
        before = self._files()
        ws = websocket.create_connection(f"ws://127.0.0.1:{self.server.port}/ws?clientId={self.server.client_id}",
                                         timeout=self.timeout)
        try:
            status, resp = self._queue(prompt)
            if status != 200:
                raise ServerError(f"{label}: refused {json.dumps(resp)[:500]}")
            prompt_id = resp["prompt_id"]
            seen = self._progress(ws, prompt_id, node_id, at_progress)
        finally:
            ws.close()
        copies = None
        if seen is not None:
            if label in COPY_RUNS:
                copies = self._copies_alive(prompt_id)
            time.sleep(delay)
            if label in COPY_RUNS:
                copies = min(copies, self.server.get("/dreamsampler/stats")["grad_copies"])
            self.server.request("POST", "/interrupt", {"prompt_id": prompt_id})
        entry = self._wait(prompt_id)
        result = self._status(entry)
        self.report.count(f"interrupt:{result}")
        self.report.interrupts.append((label, where, seen, round(delay, 3), result, copies))
        self._check_files(f"interrupt:{label}", before, entry)
        self._after(f"interrupt:{label}")
        # the prompt after the interrupt: the same workflow at CI settings, kept for the fresh server
        probe = _reseed(self.prompts.workflow(stem, probe_widgets), self.rng)
        before = self._files()
        status, resp = self._queue(probe)
        entry = self._wait(resp["prompt_id"]) if status == 200 else None
        result = self._status(entry) if entry else f"http-{status}"
        self.report.count(f"probe:{result}")
        self._check_files(f"probe:{label}", before, entry)
        if result == "success":
            self.probe_prompts.append((label, probe, self._outputs(entry)))
        else:
            self.report.failures.append((f"probe:{label}", json.dumps(entry["status"] if entry else resp)[:800]))

    def _copies_alive(self, prompt_id: str) -> int:
        """Wait (bounded) until the running prompt holds a gradient copy; how many it holds (0: none came)."""
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            n = self.server.get("/dreamsampler/stats")["grad_copies"]
            if n or prompt_id not in {item[1] for item in self.server.get("/queue")["queue_running"]}:
                return n
            time.sleep(0.02)
        return 0

    def _progress(self, ws, prompt_id: str, node_id: str, at_least: int):
        """Wait until the node reports progress >= at_least; the value, or None when the prompt ended first."""
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            msg = ws.recv()
            if isinstance(msg, bytes):
                continue
            m = json.loads(msg)
            data = m.get("data", {})
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            if m["type"] == "progress" and str(data.get("node")) == node_id and data["value"] >= at_least:
                return data["value"]
            if m["type"] in ("execution_success", "execution_error", "execution_interrupted"):
                return None
        raise ServerError(f"no progress from node {node_id} within {self.timeout}s")

    def delete(self, first: str, second: str):
        """Queue two prompts, delete the second from the queue while the first runs: it never runs and
        leaves no file."""
        label = f"delete:{second}"
        before = self._files()
        status_a, resp_a = self._queue(_reseed(self.prompts.workflow(first), self.rng))
        status_b, resp_b = self._queue(_reseed(self.prompts.workflow(second), self.rng))
        if status_a != 200 or status_b != 200:
            raise ServerError(f"{label}: refused {resp_a} {resp_b}")
        pid = resp_b["prompt_id"]
        pending = [item[1] for item in self.server.get("/queue")["queue_pending"]]
        self.server.request("POST", "/queue", {"delete": [pid]})
        entry_a = self._wait(resp_a["prompt_id"])
        self.report.count(f"delete-first:{self._status(entry_a)}")
        deadline = time.time() + self.timeout          # the queue drains (the second runs if it was not removed)
        while time.time() < deadline:
            q = self.server.get("/queue")
            if not q["queue_running"] and not q["queue_pending"]:
                break
            time.sleep(0.1)
        ran = pid in self.server.get(f"/history/{pid}")
        self.report.deletions.append((label, pid in pending, ran))
        self.report.count("delete-second:ran" if ran else "delete-second:removed")
        listed = self._listed(entry_a)
        new = self._files() - before
        if ran:
            listed |= self._listed(self.server.get(f"/history/{pid}")[pid])
        if new - listed:
            self.report.file_errors.append((label, f"files of no prompt: {sorted(new - listed)}"))

    def run(self, action: tuple):
        kind = action[0]
        if kind == "workflow":
            self.workflow(action[1])
        elif kind == "bad":
            self.bad(action[1])
        elif kind == "interrupt":
            self.interrupt(action[1])
            return                              # checked after the interrupt and after the probe
        else:
            self.delete(action[1], action[2])
        self._after(":".join(action))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _drawing(name: str, data: bytes):
    """What must be identical between servers: PNG pixels, an SVG without its metadata block."""
    if name.endswith(".png"):
        import numpy as np
        from PIL import Image
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA")).tobytes()
    if name.endswith(".svg"):
        return re.sub(rb"<metadata>.*?</metadata>\s*", b"", data, flags=re.S)
    return data


def _by_prefix(files: dict) -> dict:
    """{name: bytes} keyed by the name without the save node's counter (edit_00012_.png -> edit.png)."""
    return {re.sub(r"_\d{5,}_(?=\.\w+$)", "", name): data for name, data in files.items()}


def _compare_on_fresh_server(workdir: Path, ckpt: Path, probes: list, report: SoakReport, timeout: float):
    from .workflows import upload_inputs
    with ComfyServer(workdir, checkpoints=[ckpt], extra_args=["--cache-none"]) as fresh:
        upload_inputs(fresh)
        out = fresh.workdir / "output"
        for label, prompt, got in probes:
            before = {p for p in out.rglob("*") if p.is_file()}
            entry = fresh.run(prompt, timeout=timeout)
            names = sorted(_Soak._listed(entry))
            want = {Path(f).name: (out / f).read_bytes() for f in names}
            got, want = _by_prefix(got), _by_prefix(want)
            same = sorted(got) == sorted(want) and all(_drawing(n, got[n]) == _drawing(n, want[n]) for n in got)
            detail = "" if same else f"files {sorted(got)} vs {sorted(want)}, differing: " + ", ".join(
                n for n in got if n in want and _drawing(n, got[n]) != _drawing(n, want[n]))
            report.probes.append((label, same, detail))
            assert {p for p in out.rglob("*") if p.is_file()} - before, "the fresh server wrote nothing"


def run_soak(workdir: Path, ckpt: Path, n_prompts: int, seed: int = 0, workflows: list | None = None,
             long_runs: list | None = None, mix: dict | None = None, warmup: int | None = None,
             prompt_timeout: float = 600.0, log=print) -> SoakReport:
    """Run the soak in servers under ``workdir`` (the soak server in ``soak/``, the fresh one in
    ``fresh/``).  ``workflows``: the shipped workflows run and deleted (default: every SD1.5 one);
    ``long_runs``: the ``LONG_RUNS`` interrupted (default: all); ``mix``: the share of each kind of
    action after the first pass (default ``MIX``); ``warmup``: prompts before the RSS growth is
    measured (default: the first pass over the workflows and interrupts)."""
    from .workflows import upload_inputs
    report = SoakReport()
    t0 = time.time()
    server = ComfyServer(Path(workdir) / "soak", checkpoints=[ckpt])
    server.start()
    poller = None
    try:
        upload_inputs(server)
        prompts = _Prompts(server, Path(ckpt).name)
        workflows = sorted(workflows or prompts.workflows)
        long_runs = list(long_runs or LONG_RUNS)
        actions = schedule(n_prompts, seed, workflows, prompts.bad, long_runs, mix)
        first_pass = len(workflows) + 2 * len(long_runs) + 2
        report.warmup_prompts = first_pass if warmup is None else warmup
        soak = _Soak(server, prompts, random.Random(seed + 1), report, prompt_timeout)
        poller = _Poller(server)
        poller.start()
        for i, action in enumerate(actions):
            soak.run(action)
            if log is not None and (i % 25 == 0 or i == len(actions) - 1):
                log(f"[soak] {i + 1}/{len(actions)} actions, {report.prompts} prompts, "
                    f"RSS {report.rss_mb[-1][1]:.0f} MB ({report.rss_growth_per_100():+.1f} MB / 100 prompts "
                    f"after the warm-up), {len(report.leaks)} leaks, {len(report.failures)} failures, "
                    f"{time.time() - t0:.0f} s")
        poller.stop_event.set()
        poller.join(30)
        report.stats_end = server.get("/dreamsampler/stats")
        server.get("/system_stats")
        report.server_alive = server.proc.poll() is None
    finally:
        if poller is not None:
            poller.stop_event.set()
            report.poll_requests, report.poll_errors, report.stats_max = poller.requests, poller.errors, \
                poller.stats_max
        server.stop()
    _compare_on_fresh_server(Path(workdir) / "fresh", Path(ckpt), soak.probe_prompts, report, prompt_timeout)
    report.seconds = time.time() - t0
    return report

