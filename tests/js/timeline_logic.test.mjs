// node --test tests/js/   (pure logic of the Frame Mask timeline widget)
import test from "node:test";
import assert from "node:assert/strict";
import {
  PRESETS, parsePattern, formatPattern, presetPattern, togglePattern, resizePattern, syncedPattern, describePattern,
  patternProblem, usesGivenFrames,
} from "../../js/mardini_timeline_logic.js";

test("pattern <-> frames round trip", () => {
  assert.deepEqual(parsePattern("x..x"), [true, false, false, true]);
  assert.equal(formatPattern([true, false, false, true]), "x..x");
  assert.deepEqual(parsePattern(" X . .\nx "), [true, false, false, true]);
  assert.equal(parsePattern("x-.x"), null);
  assert.deepEqual(parsePattern(""), []);
});

test("presets", () => {
  assert.equal(presetPattern("image-to-video (first)", 9), "x........");
  assert.equal(presetPattern("image-to-video (middle)", 9), "....x....");
  assert.equal(presetPattern("image-to-video (middle)", 8), "....x...");
  assert.equal(presetPattern("interpolation", 9, 3), "x...x...x");
  assert.equal(presetPattern("interpolation", 6, 3), "x.x..x", "halves round to even, as in Python");
  assert.equal(presetPattern("image-to-video (last)", 5), "....x");
  assert.equal(presetPattern("interpolation", 9), "x.......x");
  assert.equal(presetPattern("loop", 9), "x.......x");
  assert.equal(presetPattern("expansion", 9, 3), "xxx......");
  assert.equal(presetPattern("expansion", 4, 9), "xxx.", "expansion always leaves a frame to generate");
  assert.equal(presetPattern("custom", 9), null);
  assert.ok(PRESETS.includes("custom"));
});

test("toggle flips one frame and ignores clicks outside", () => {
  assert.equal(togglePattern("x...", 2), "x.x.");
  assert.equal(togglePattern("x.x.", 0), "..x.");
  assert.equal(togglePattern("x...", 7), "x...");
  assert.equal(togglePattern("bad", 0), "bad");
});

test("custom pattern follows the frame count", () => {
  assert.equal(resizePattern("x..x", 6), "x..x..");
  assert.equal(resizePattern("x..x", 2), "x.");
  assert.equal(resizePattern("zz", 3), "...");
  assert.equal(syncedPattern({ preset: "custom", frames: 5, givenFrames: 1, pattern: "x.x" }), "x.x..");
  assert.equal(syncedPattern({ preset: "interpolation", frames: 5, givenFrames: 1, pattern: "x.x" }), "x...x");
});

test("caption", () => {
  assert.equal(describePattern("x.......x"), "9 frames: 2 given, 7 generated");
  assert.match(describePattern("abc"), /invalid/);
});

test("a pattern longer than the connected model's window is a problem named on the node", () => {
  for (let window = 2; window <= 40; window++) {
    for (let frames = 2; frames <= 48; frames++) {
      const pattern = "x" + ".".repeat(frames - 1);
      const problem = patternProblem(pattern, window);
      assert.equal(problem !== null, frames > window, `${frames} frames, window ${window}`);
      if (problem) {
        assert.match(problem, new RegExp(`${window}-frame window`));
        assert.match(problem, /MarDini Long Video/);
        assert.equal(describePattern(pattern, window), problem);
      }
    }
  }
  assert.equal(patternProblem("x".repeat(50) + "."), null, "unknown window: no claim");
  assert.match(patternProblem("x-x", 9), /invalid/);
});

test("given_frames is shown exactly for the presets whose pattern it changes", () => {
  for (const preset of PRESETS.filter((p) => p !== "custom")) {
    const changes = [1, 2, 3, 4, 5].some((n) => presetPattern(preset, 9, n) !== presetPattern(preset, 9, 2));
    assert.equal(usesGivenFrames(preset), changes, preset);
  }
  assert.equal(usesGivenFrames("custom"), false);
});
