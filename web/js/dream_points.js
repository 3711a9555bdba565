// In-canvas point editor for the "Dream SDE-Drag" node: click a source, then its target; arrows
// show the drags; right-click removes the last point.  It edits the node's `points` text widget
// (JSON [{"x","y"}, ...], source/target interleaved), so typing there works too.
// Background: the image this node received on its last run, else the preview of the nearest node
// upstream of `image` that has one (e.g. Load Image behind an Image Scale).  Coordinates are
// pixels of the image the node receives.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";
import { canvasToImage, fitImage, imageToCanvas, parsePoints, serializePoints } from "./dream_points_format.js";

const NODE_ID = "DreamSDEDrag";
const SOURCE = "#ff4d4d";
const TARGET = "#4da3ff";

function upstream(node, inputName) {
  const input = node.inputs?.find((i) => i.name === inputName) ?? node.inputs?.find((i) => i.type === "IMAGE");
  if (!input || input.link == null) return null;
  const graph = node.graph ?? app.graph;
  const link = graph.getLink?.(input.link) ?? graph.links?.get?.(input.link) ?? graph.links?.[input.link];
  return link ? graph.getNodeById(link.origin_id) : null;
}

function widgetInt(node, name) {
  const v = node.widgets?.find((w) => w.name === name)?.value;
  return Number.isInteger(v) ? v : null;
}

// The preview of the nearest node upstream of `image` that shows one (Load Image, a previous
// run...), walking through pass-through nodes such as Image Scale.  Points are pixels of the
// image the drag node *receives*, so the nearest resize node with width/height widgets on the
// way sets the coordinate space (0 keeps the aspect ratio, as Image Scale does).
function linkedImage(node) {
  let cur = upstream(node, "image");
  let size = null;
  for (let depth = 0; cur && depth < 16; depth++) {
    if (!size) {
      const w = widgetInt(cur, "width");
      const h = widgetInt(cur, "height");
      if (w !== null && h !== null && (w > 0 || h > 0)) size = { w, h };
    }
    const img = cur.imgs?.[0];
    if (img && img.complete && img.naturalWidth) {
      let w = img.naturalWidth;
      let h = img.naturalHeight;
      if (size) {
        w = size.w || Math.round((size.h * img.naturalWidth) / img.naturalHeight);
        h = size.h || Math.round((size.w * img.naturalHeight) / img.naturalWidth);
      }
      return { img, w, h };
    }
    cur = upstream(cur, "image");
  }
  return null;
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
  // The canvas floats inside a box: its backing store (resized to the displayed size on redraw)
  // must never feed back into the layout, or nodes that size to their content (the "Nodes 2.0"
  // renderer) would grow it without end.
  const box = document.createElement("div");
  Object.assign(box.style, { position: "relative", width: "100%", height: "100%", minHeight: "220px" });
  const canvas = document.createElement("canvas");
  canvas.width = 512;
  canvas.height = 384;
  Object.assign(canvas.style, {
    position: "absolute", left: "0", top: "0", width: "100%", height: "100%", display: "block",
    cursor: "crosshair", background: "#222",
  });
  box.appendChild(canvas);
  const state = { own: null, pending: null, view: null, key: null };

  const background = () =>
    (state.own ? { img: state.own, w: state.own.naturalWidth, h: state.own.naturalHeight } : null) ?? linkedImage(node);

  function redraw() {
    if (canvas.clientWidth > 0 && canvas.clientHeight > 0) {
      // backing store = displayed size, so the image is not stretched
      canvas.width = Math.round(canvas.clientWidth);
      canvas.height = Math.round(canvas.clientHeight);
    }
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const bg = background();
    if (!bg) {
      state.view = null;
      ctx.fillStyle = "#aaa";
      ctx.font = "14px sans-serif";
      ctx.fillText("Connect an image (e.g. Load Image)", 12, 24);
      ctx.fillText("or run once to place points here.", 12, 44);
      return;
    }
    state.view = fitImage(bg.w, bg.h, canvas.width, canvas.height);
    const v = state.view;
    ctx.drawImage(bg.img, v.ox, v.oy, v.w * v.scale, v.h * v.scale);
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

  const widget = node.addDOMWidget("points_editor", "dream_points_editor", box, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => 220,
  });
  widget.serialize = false; // not part of widgets_values (the workflow keeps only the text)

  // redraw when the background changes: a Load Image preview that arrives later, a new upstream
  // size, a new connection (cheap: a walk over at most 16 upstream nodes per frame)
  const onDrawForeground = node.onDrawForeground;
  node.onDrawForeground = function () {
    const r = onDrawForeground?.apply(this, arguments);
    const bg = background();
    const key = bg ? `${bg.img.src}|${bg.w}x${bg.h}` : "";
    if (key !== state.key) {
      state.key = key;
      redraw();
    }
    return r;
  };

  const onText = text.callback;
  text.callback = function () {
    const r = onText?.apply(this, arguments);
    redraw();
    return r;
  };

  node.dreamPointsEditor = {
    canvas,
    redraw,
    // the coordinate space of the points (pixels of the image the node receives), once known
    space: () => (state.view ? { w: state.view.w, h: state.view.h } : null),
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
