"""Specs of the shipped workflows, one module per feature (scripts/build_workflows.py writes them
to example_workflows/).

Each module defines ``WORKFLOWS = {file_stem: {"title": str, "nodes": [node specs]}}`` and
optionally ``TEST_OVERRIDES = {file_stem: {class_type: {widget: value}}}``, applied on top of
the generic fast settings when CI runs the workflow on the tiny model, and ``FAMILY = {file_stem:
family}`` for workflows of another model family than SD1.5 (CI runs those on that family's tiny
model, tests/support/families; the rest on the tiny SD1.5 checkpoint).
"""
import importlib
import pkgutil


def _modules():
    for m in pkgutil.iter_modules(__path__):
        yield importlib.import_module(f"{__name__}.{m.name}")


def all_specs() -> dict:
    specs = {}
    for mod in _modules():
        for stem, wf in getattr(mod, "WORKFLOWS", {}).items():
            if stem in specs:
                raise SystemExit(f"duplicate workflow name {stem}")
            specs[stem] = wf
    return specs


def test_overrides() -> dict:
    out = {}
    for mod in _modules():
        out.update(getattr(mod, "TEST_OVERRIDES", {}))
    return out


def workflow_families() -> dict:
    """file_stem -> model family (tests/support/families) of the workflows not on SD1.5."""
    out = {}
    for mod in _modules():
        out.update(getattr(mod, "FAMILY", {}))
    return out


def sd15_workflows(folder) -> list:
    """The shipped workflow files in ``folder`` that run on an SD1.5 checkpoint."""
    from pathlib import Path
    other = workflow_families()
    return [p for p in sorted(Path(folder).glob("*.json")) if p.stem not in other]
