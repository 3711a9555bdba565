// In-canvas point editor for the "Dream SDE-Drag" node: click a source, then its target; arrows
// show the drags; right-click removes the last point.  It edits the node's `points` text widget
// (JSON [{"x","y"}, ...], source/target interleaved), so typing there works too.
// Background: the image this node received on its last run, else the preview of a node feeding
// `image` directly (e.g. Load Image).  Coordinates are pixels of that image.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";
import { canvasToImage, fitImage, imageToCanvas, parsePoints, serializePoints } from "./dream_points_format.js";

const NODE_ID = "DreamSDEDrag";
const SOURCE = "#ff4d4d";
const TARGET = "#4da3ff";

function linkedImage(node) {
  const input = node.inputs?.find((i) => i.name === "image");
  if (!input || input.link == null) return null;
  const graph = node.graph ?? app.graph;
  const link = graph.getLink?.(input.link) ?? graph.links?.get?.(input.link) ?? graph.links?.[input.link];
  const origin = link && graph.getNodeById(link.origin_id);
  const img = origin?.imgs?.[0];
  return img && img.complete && img.naturalWidth ? img : null;
}

function arrow(ctx, a, b) {
  const ang = Math.atan2(b.y - a.y, b.x - a.x);
  ctx.beginPath();
  ctx.moveTo(a.x, a.y);
  ctx.lineTo(b.x, b.y);
  ctx.lineTo(b.x - 9 * Math.cos(ang - 0.5), b.y - 9 * Math.sin(ang - 0.5));
  ctx.moveTo(b.x, b.y);
  ctx.lineTo(b.x - 9 * Math.cos(ang + 0.5), b.y - 9 * Math.sin(ang + 0.5));
  ctx.stroke();
}

function dot(ctx, p, color) {
  ctx.fillStyle = color;
  ctx.beginPath();
  ctx.arc(p.x, p.y, 5, 0, 2 * Math.PI);
  ctx.fill();
  ctx.stroke();
}

function attachEditor(node) {
  const text = node.widgets?.find((w) => w.name === "points");
  if (!text || typeof node.addDOMWidget !== "function") return; // the text widget alone still works
  const canvas = document.createElement("canvas");
  canvas.width = 512;
  canvas.height = 384;
  Object.assign(canvas.style, { width: "100%", height: "100%", cursor: "crosshair", background: "#222" });
  const state = { own: null, pending: null, view: null };

  const background = () => state.own ?? linkedImage(node);

  function redraw() {
    if (canvas.clientWidth > 0 && canvas.clientHeight > 0) {
      // backing store = displayed size, so the image is not stretched
      canvas.width = Math.round(canvas.clientWidth);
      canvas.height = Math.round(canvas.clientHeight);
    }
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const img = background();
    if (!img) {
      state.view = null;
      ctx.fillStyle = "#aaa";
      ctx.font = "14px sans-serif";
      ctx.fillText("Connect Load Image (or run once) to place points here.", 12, 24);
      return;
    }
    state.view = fitImage(img.naturalWidth, img.naturalHeight, canvas.width, canvas.height);
    const v = state.view;
    ctx.drawImage(img, v.ox, v.oy, v.w * v.scale, v.h * v.scale);
    const pts = parsePoints(text.value);
    ctx.lineWidth = 2;
    ctx.strokeStyle = "#fff";
    for (let i = 0; i + 1 < pts.length; i += 2) {
      const a = imageToCanvas(pts[i], v);
      const b = imageToCanvas(pts[i + 1], v);
      arrow(ctx, a, b);
      dot(ctx, a, SOURCE);
      dot(ctx, b, TARGET);
    }
    if (state.pending) dot(ctx, imageToCanvas(state.pending, v), SOURCE);
  }

  function write(points) {
    text.value = serializePoints(points);
    text.callback?.(text.value);
    node.setDirtyCanvas?.(true, true);
    redraw();
  }

  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("pointerenter", () => redraw()); // picks up a Load Image preview loaded later
  if (typeof ResizeObserver === "function") new ResizeObserver(() => redraw()).observe(canvas);
  canvas.addEventListener("pointerdown", (e) => {
    e.preventDefault();
    e.stopPropagation();
    if (e.button === 2) {
      if (state.pending) state.pending = null;
      else write(parsePoints(text.value).slice(0, -2));
      redraw();
      return;
    }
    if (e.button !== 0 || !state.view) return;
    const rect = canvas.getBoundingClientRect();
    const p = canvasToImage(
      ((e.clientX - rect.left) * canvas.width) / rect.width,
      ((e.clientY - rect.top) * canvas.height) / rect.height,
      state.view,
    );
    if (!p) return;
    if (!state.pending) {
      state.pending = p;
      redraw();
      return;
    }
    const pts = parsePoints(text.value);
    pts.push(state.pending, p);
    state.pending = null;
    write(pts);
  });

  const widget = node.addDOMWidget("points_editor", "dream_points_editor", canvas, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => 220,
  });
  widget.serialize = false; // not part of widgets_values (the workflow keeps only the text)

  const onText = text.callback;
  text.callback = function () {
    const r = onText?.apply(this, arguments);
    redraw();
    return r;
  };

  node.dreamPointsEditor = {
    redraw,
    setBackground(url) {
      const img = new Image();
      img.onload = () => {
        state.own = img;
        redraw();
      };
      img.src = url;
    },
  };
  const onConnectionsChange = node.onConnectionsChange;
  node.onConnectionsChange = function () {
    const r = onConnectionsChange?.apply(this, arguments);
    setTimeout(redraw, 0);
    return r;
  };
  setTimeout(redraw, 0);
}

app.registerExtension({
  name: "DreamSampler.SDEDragPoints",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_ID) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      try {
        attachEditor(this);
      } catch (err) {
        console.warn("DreamSampler: point editor unavailable", err);
      }
      return r;
    };
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      const r = onExecuted?.apply(this, arguments);
      const img = message?.dream_drag_source?.[0];
      if (img && this.dreamPointsEditor) {
        const q = new URLSearchParams({ filename: img.filename, subfolder: img.subfolder ?? "", type: img.type ?? "temp" });
        this.dreamPointsEditor.setBackground(api.apiURL(`/view?${q}`));
      }
      return r;
    };
  },
});
