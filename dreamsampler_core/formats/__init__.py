"""Readers of external file formats (DragBench items)."""
