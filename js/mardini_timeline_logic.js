// Pure logic of the MarDini frame timeline: pattern string <-> frames, presets, toggling.
// No DOM, no ComfyUI: the widget (mardini_timeline.js) draws what these functions compute, and
// `node --test tests/js/` tests them. The pattern string is the only state that is saved.
// Must agree with nodes/frame_mask.py (PRESETS, pattern alphabet).

export const GIVEN = "x";
export const GENERATED = ".";

export const PRESETS = [
  "image-to-video (first)",
  "image-to-video (middle)",
  "image-to-video (last)",
  "interpolation",
  "loop",
  "expansion",
  "custom",
];

/** Frames of a pattern as booleans (true = given); null when the string holds anything but x and '.'. */
export function parsePattern(pattern) {
  const text = String(pattern).replace(/\s+/g, "");
  if (!/^[x.]*$/i.test(text)) return null;
  return Array.from(text, (c) => c.toLowerCase() === GIVEN);
}

export function formatPattern(frames) {
  return frames.map((given) => (given ? GIVEN : GENERATED)).join("");
}

/** Python's round(): halves go to the even neighbour, so spreads match mardini_core.masks exactly. */
export function roundHalfEven(value) {
  const floor = Math.floor(value);
  const diff = value - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * The pattern a preset stands for, as mardini_core.masks.for_task builds it; null for "custom".
 * `givenFrames` is the number of input images for "interpolation" (at least 2, spread evenly) and
 * "expansion" (the first frames). Impossible combinations come back clamped; the server rejects them.
 */
export function presetPattern(preset, frames, givenFrames = 1) {
  const count = Math.max(1, Math.floor(frames));
  const images = Math.max(1, Math.floor(givenFrames));
  const out = new Array(count).fill(false);
  switch (preset) {
    case "image-to-video (first)":
      out[0] = true;
      break;
    case "image-to-video (middle)":
      out[Math.floor(count / 2)] = true;
      break;
    case "image-to-video (last)":
      out[count - 1] = true;
      break;
    case "interpolation":
    case "loop": {
      const n = preset === "loop" ? 2 : Math.min(count, Math.max(2, images));
      for (let i = 0; i < n; i++) out[roundHalfEven((i * (count - 1)) / (n - 1))] = true;
      break;
    }
    case "expansion":
      out.fill(true, 0, Math.min(count - 1, images));
      break;
    default:
      return null;
  }
  return formatPattern(out);
}

/** The pattern with frame `index` flipped between given and generated (unchanged if out of range). */
export function togglePattern(pattern, index) {
  const frames = parsePattern(pattern);
  if (!frames || index < 0 || index >= frames.length) return pattern;
  frames[index] = !frames[index];
  return formatPattern(frames);
}

/** A custom pattern cut or padded (with generated frames) to `frames` frames. */
export function resizePattern(pattern, frames) {
  const parsed = parsePattern(pattern) ?? [];
  const count = Math.max(1, Math.floor(frames));
  const out = parsed.slice(0, count);
  while (out.length < count) out.push(false);
  return formatPattern(out);
}

/** What the widget's controls imply for the pattern: the preset's, or the custom one fitted to `frames`. */
export function syncedPattern({ preset, frames, givenFrames, pattern }) {
  return presetPattern(preset, frames, givenFrames) ?? resizePattern(pattern, frames);
}

/** Presets that read `given_frames` (the node shows that widget only for them). */
export const GIVEN_FRAMES_PRESETS = ["interpolation", "expansion"];

export function usesGivenFrames(preset) {
  return GIVEN_FRAMES_PRESETS.includes(preset);
}

/** Whether the pattern is one the connected model can run in one clip (`window`: its frames, null = unknown). */
export function patternProblem(pattern, window = null) {
  const frames = parsePattern(pattern);
  if (!frames) return "invalid pattern: use x (given) and . (generated) only";
  if (window && frames.length > window) {
    return `${frames.length} frames: longer than this model's ${window}-frame window; lower frames, or use MarDini Long Video`;
  }
  return null;
}

/** One line under the strip, e.g. "9 frames: 2 given, 7 generated", or the problem with the pattern. */
export function describePattern(pattern, window = null) {
  const problem = patternProblem(pattern, window);
  if (problem) return problem;
  const frames = parsePattern(pattern);
  const given = frames.filter(Boolean).length;
  return `${frames.length} frames: ${given} given, ${frames.length - given} generated`;
}
