"""(placeholder: filled by its feature work)."""
NODES = []
