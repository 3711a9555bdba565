"""Procedural example photo for the shipped workflows (no downloads needed): example_workflows/inputs/."""
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def landscape(size=512, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size, 3))
    sky = np.stack([0.45 + 0.4 * y, 0.6 + 0.25 * y, 0.95 - 0.2 * y], -1)
    img[:] = sky
    sun = ((x - 0.72) ** 2 + (y - 0.25) ** 2) < 0.006
    img[sun] = [1.0, 0.85, 0.4]
    for k, (h, col) in enumerate([(0.55, [0.35, 0.4, 0.5]), (0.68, [0.25, 0.45, 0.3]), (0.8, [0.2, 0.35, 0.15])]):
        ridge = h + 0.08 * np.sin(2 * math.pi * (x * (1.5 + k) + rng.random())) + 0.03 * np.sin(2 * math.pi * 7 * x)
        img[y > ridge] = col
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "example_workflows" / "inputs"
    out.mkdir(parents=True, exist_ok=True)
    landscape().save(out / "dream_example.png")
    print("wrote", out / "dream_example.png")
