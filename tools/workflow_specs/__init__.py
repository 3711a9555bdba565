"""Specs of the shipped workflows, one module per feature (scripts/build_workflows.py writes them
to example_workflows/).

Each module defines ``WORKFLOWS = {file_stem: {"title": str, "nodes": [node specs]}}`` and
optionally ``TEST_OVERRIDES = {file_stem: {class_type: {widget: value}}}``, applied on top of
the generic fast settings when CI runs the workflow on the tiny model.
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
