// Clickable frame timeline inside the "MarDini Frame Mask" node.
// It only edits the node's own `pattern` STRING widget (the value saved in workflows and sent to the
// server); it never adds, removes or reorders the node's inputs. The strip itself is a DOM widget with
// `serialize: false` (in its options and on the widget), so it leaves no trace in prompts or saved workflows.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { describePattern, parsePattern, patternProblem, syncedPattern, togglePattern, usesGivenFrames } from "./mardini_timeline_logic.js";

const NODE_NAME = "MarDiniFrameMask"; // nodes/__init__.py mapping key
const LOADER = "MarDiniModelLoader";
const CUSTOM = "custom";
const windows = new Map(); // model name -> its window in frames (null while asked, or when the server cannot say)

const STYLE = `
.mardini-timeline { display: flex; flex-direction: column; gap: 4px; font: 11px sans-serif; color: #bbb; }
.mardini-strip { display: flex; gap: 1px; height: 26px; cursor: pointer; user-select: none; }
.mardini-cell { flex: 1 1 0; min-width: 0; border-radius: 2px; background: #3a3f4b; display: flex;
  align-items: center; justify-content: center; overflow: hidden; color: #888; font-size: 9px; }
.mardini-cell.given { background: #e2a33b; color: #222; }
.mardini-cell:hover { outline: 1px solid #fff; }
.mardini-timeline.invalid .mardini-caption { color: #e66; }
`;

function injectStyle() {
  if (document.getElementById("mardini-timeline-style")) return;
  const style = document.createElement("style");
  style.id = "mardini-timeline-style";
  style.textContent = STYLE;
  document.head.appendChild(style);
}

function widget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

function setWidget(node, name, value) {
  const w = widget(node, name);
  if (!w || w.value === value) return;
  w.value = value;
  node.setDirtyCanvas?.(true, true);
}

// The model this mask feeds: the loader behind the `model` input of any node its mask output goes to.
function connectedModel(node) {
  const graph = node.graph ?? app.graph;
  for (const id of node.outputs?.[0]?.links ?? []) {
    const target = graph.getNodeById?.(graph.links?.get?.(id)?.target_id ?? graph.links?.[id]?.target_id);
    const input = target?.inputs?.find((i) => i.name === "model" && i.link != null);
    const link = input && (graph.links?.get?.(input.link) ?? graph.links?.[input.link]);
    const loader = link && graph.getNodeById?.(link.origin_id);
    if (loader?.type === LOADER) return String(widget(loader, "model")?.value ?? "");
  }
  return null;
}

// That model's window (frames), asked of the server once per name (nodes/model_window.py); null until known.
function modelWindow(node) {
  const name = connectedModel(node);
  if (!name) return null;
  if (!windows.has(name)) {
    windows.set(name, null);
    api.fetchApi(`/mardini/model_window?model=${encodeURIComponent(name)}`)
      .then((r) => (r.ok ? r.json() : null))
      .then((info) => { windows.set(name, info?.frames ?? null); node.setDirtyCanvas?.(true, true); })
      .catch(() => {});
  }
  return windows.get(name);
}

// given_frames is shown only for the presets that read it.
function showWidgets(node) {
  const givenFrames = widget(node, "given_frames");
  const hidden = !usesGivenFrames(widget(node, "preset")?.value);
  if (!givenFrames || givenFrames.hidden === hidden) return;
  givenFrames.hidden = hidden;
  node.setSize?.([node.size[0], node.computeSize?.()[1] ?? node.size[1]]);
  node.setDirtyCanvas?.(true, true);
}

function render(node, view) {
  const pattern = String(widget(node, "pattern")?.value ?? "");
  const window = modelWindow(node);
  showWidgets(node);
  if (pattern === view.rendered && window === view.window) return;
  view.rendered = pattern;
  view.window = window;
  const frames = parsePattern(pattern) ?? [];
  view.strip.replaceChildren(
    ...frames.map((given, i) => {
      const cell = document.createElement("div");
      cell.className = given ? "mardini-cell given" : "mardini-cell";
      cell.dataset.index = String(i);
      cell.title = `frame ${i}: ${given ? "given (click: generate it)" : "generated (click: give it)"}`;
      if (frames.length <= 32) cell.textContent = String(i);
      return cell;
    }),
  );
  view.caption.textContent = describePattern(pattern, window);
  view.root.classList.toggle("invalid", patternProblem(pattern, window) !== null);
}

function controls(node) {
  return {
    preset: widget(node, "preset")?.value,
    frames: widget(node, "frames")?.value,
    givenFrames: widget(node, "given_frames")?.value,
    pattern: widget(node, "pattern")?.value ?? "",
  };
}

// frames / preset / given_frames changed: the pattern follows them.
function followControls(node, view) {
  setWidget(node, "pattern", syncedPattern(controls(node)));
  render(node, view);
}

// pattern typed by hand: it becomes a custom pattern and sets the frame count. An invalid one becomes
// custom too (the caption says what is wrong and the server refuses it): never replaced by the preset's.
function followPattern(node, view) {
  const c = controls(node);
  const typed = String(c.pattern).replace(/\s+/g, "");
  if (typed.length > 0 && syncedPattern(c) !== typed) {
    setWidget(node, "preset", CUSTOM);
    const frames = parsePattern(typed);
    if (frames && frames.length > 0) setWidget(node, "frames", frames.length);
  }
  render(node, view);
}

function chain(w, after) {
  if (!w) return;
  const original = w.callback;
  w.callback = function (...args) {
    const result = original?.apply(this, args);
    after();
    return result;
  };
}

function attachTimeline(node) {
  injectStyle();
  const root = document.createElement("div");
  root.className = "mardini-timeline";
  const strip = document.createElement("div");
  strip.className = "mardini-strip";
  const caption = document.createElement("div");
  caption.className = "mardini-caption";
  root.append(strip, caption);
  const view = { root, strip, caption, rendered: null, window: null };

  strip.addEventListener("pointerdown", (event) => {
    const index = Number(event.target?.dataset?.index);
    if (!Number.isInteger(index)) return;
    event.preventDefault();
    event.stopPropagation();
    setWidget(node, "pattern", togglePattern(String(widget(node, "pattern").value), index));
    setWidget(node, "preset", CUSTOM);
    render(node, view);
  });

  const timeline = node.addDOMWidget("timeline", "mardini_timeline", root, {
    serialize: false, // not sent to the server
    hideOnZoom: false,
    getMinHeight: () => 48,
    getValue: () => undefined,
    setValue: () => {},
  });
  timeline.serialize = false; // not saved in the workflow's widgets_values (as core's own display widgets)

  for (const name of ["frames", "preset", "given_frames"]) chain(widget(node, name), () => followControls(node, view));
  chain(widget(node, "pattern"), () => followPattern(node, view));
  return view;
}

app.registerExtension({
  name: "MarDini.FrameTimeline",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_NAME) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function (...args) {
      const result = onNodeCreated?.apply(this, args);
      this.mardiniTimeline = attachTimeline(this);
      render(this, this.mardiniTimeline);
      return result;
    };
    // Values restored from a saved workflow, or set by links/undo, arrive without callbacks:
    // re-render whenever the pattern string differs from what is drawn.
    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (...args) {
      const result = onDrawForeground?.apply(this, args);
      if (this.mardiniTimeline) render(this, this.mardiniTimeline);
      return result;
    };
  },
  setup() {
    console.log("[mardini] setup: frame timeline ready");
  },
});
