"""Specs of the shipped workflows, one module per feature (see scripts/build_workflows.py).

Each module defines ``WORKFLOWS = {file_stem: {"title": str, "nodes": [node specs]}}`` and
optionally ``TEST_OVERRIDES = {file_stem: {class_type: {widget: value}}}``, applied on top of
the generic fast settings when CI runs the workflow on the tiny model.
"""
