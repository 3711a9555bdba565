"""The long soak (issue 25, section 3): ``python -m bench.soak --prompts 500``.

One real ComfyUI server (``main.py --cpu``, the tiny SD1.5 checkpoint) takes a seeded mix of the
shipped workflows, the bad-input catalog, /interrupt inside gradient steps and refinements, and queue
deletions, while a second client polls /history (tools/soak.py does the work; tests/e2e/test_soak.py
runs a short schedule in CI).  Prints the figures recorded in bench/RESULTS.md: RSS growth per 100
prompts after the warm-up, live gradient copies and codecs, interrupts, deletions, and whether the
prompts after an interrupt match a fresh server bit for bit.  Exit status 1 when any check failed.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=500, help="prompts to post (default 500)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the schedule and of the interrupt timing")
    ap.add_argument("--workflows", nargs="*", help="shipped workflows to mix in (default: every SD1.5 one)")
    ap.add_argument("--json", type=Path, help="also write the report (with the RSS series) here")
    ap.add_argument("--workdir", type=Path, help="server folders (default: a temporary folder)")
    args = ap.parse_args(argv)

    from tools.soak import run_soak
    from tools.tiny_models import tiny_sd15_checkpoint
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="dreamsoak-") as tmp:
        report = run_soak(args.workdir or Path(tmp), tiny_sd15_checkpoint(), args.prompts, seed=args.seed,
                          workflows=args.workflows)
    print(f"\nsoak of {args.prompts} prompts, seed {args.seed}, started {started}, CPU")
    print(report.summary())
    for name in ("leaks", "failures", "file_errors", "poll_errors"):
        for row in getattr(report, name)[:20]:
            print(f"{name}: {row}")
    bad = [p for p in report.probes if not p[1]]
    for row in bad:
        print(f"probe differs: {row}")
    if args.json:
        args.json.write_text(json.dumps({k: v for k, v in vars(report).items()}, indent=1, default=str))
    ok = (report.server_alive and not report.leaks and not report.failures and not report.file_errors
          and not report.poll_errors and not bad
          and all(i[4] == "interrupted" for i in report.interrupts if i[2] is not None))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
