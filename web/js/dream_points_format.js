// Pure helpers of the SDE-Drag point editor (no DOM, no ComfyUI), shared with the Python tests.
// The points string is a JSON list of {"x", "y"} in image pixels (KJNodes' format), interleaved
// source, target, source, target, ...; dreamsampler_core.points.parse_drag_points reads it.

export function serializePoints(points) {
  const complete = points.length - (points.length % 2); // a source waiting for its target is not written
  return JSON.stringify(points.slice(0, complete).map((p) => ({ x: Math.round(p.x), y: Math.round(p.y) })));
}

// Lenient: the editor draws what it can read; the node reports bad input when it runs.
export function parsePoints(text) {
  let data;
  try {
    data = JSON.parse(text || "[]");
  } catch {
    return [];
  }
  if (!Array.isArray(data)) return [];
  const out = [];
  for (const p of data) {
    const x = Array.isArray(p) ? p[0] : p?.x;
    const y = Array.isArray(p) ? p[1] : p?.y;
    if (Number.isFinite(x) && Number.isFinite(y)) out.push({ x, y });
  }
  return out;
}

// Largest centered placement of a w x h image in a boxW x boxH canvas.
export function fitImage(w, h, boxW, boxH) {
  const scale = Math.min(boxW / w, boxH / h);
  return { scale, ox: (boxW - w * scale) / 2, oy: (boxH - h * scale) / 2, w, h };
}

// Canvas pixel -> image pixel, or null outside the image.
export function canvasToImage(cx, cy, view) {
  const x = (cx - view.ox) / view.scale;
  const y = (cy - view.oy) / view.scale;
  if (x < 0 || y < 0 || x >= view.w || y >= view.h) return null;
  return { x: Math.min(Math.floor(x), view.w - 1), y: Math.min(Math.floor(y), view.h - 1) };
}

export function imageToCanvas(p, view) {
  return { x: view.ox + (p.x + 0.5) * view.scale, y: view.oy + (p.y + 0.5) * view.scale };
}
