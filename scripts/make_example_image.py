"""Procedural example photo and video for the shipped workflows (no downloads needed):
example_workflows/inputs/dream_example.png and dream_example_video.mp4 (a camera pan over the same
kind of landscape: 33 frames at 16 fps, 416 x 240; writing it needs PyAV, which ComfyUI installs)."""
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image


def landscape(size=512, seed=0, width=None, pan=0.0):
    """A ``size`` x ``width`` (default square) landscape; ``pan``: the view's horizontal offset in
    image heights (the sun stays put, the ridges move: a camera pan with parallax)."""
    rng = np.random.default_rng(seed)
    width = width or size
    y, x = np.mgrid[0:size, 0:width] / size
    img = np.zeros((size, width, 3))
    sky = np.stack([0.45 + 0.4 * y, 0.6 + 0.25 * y, 0.95 - 0.2 * y], -1)
    img[:] = sky
    sun = ((x - 0.72) ** 2 + (y - 0.25) ** 2) < 0.006
    img[sun] = [1.0, 0.85, 0.4]
    for k, (h, col) in enumerate([(0.55, [0.35, 0.4, 0.5]), (0.68, [0.25, 0.45, 0.3]), (0.8, [0.2, 0.35, 0.15])]):
        xs = x + pan * (0.5 + 0.5 * k)                                      # nearer ridges move faster
        ridge = h + 0.08 * np.sin(2 * math.pi * (xs * (1.5 + k) + rng.random())) + 0.03 * np.sin(2 * math.pi * 7 * xs)
        img[y > ridge] = col
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


def landscape_video(path, frames=33, fps=16, width=416, height=240):
    import av
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            img = landscape(height, seed=0, width=width, pan=0.02 * t)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(img), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "example_workflows" / "inputs"
    out.mkdir(parents=True, exist_ok=True)
    landscape().save(out / "dream_example.png")
    print("wrote", out / "dream_example.png")
    landscape_video(out / "dream_example_video.mp4")
    print("wrote", out / "dream_example_video.mp4")
