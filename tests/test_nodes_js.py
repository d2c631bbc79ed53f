"""The Frame Mask timeline's JS logic: its node:test suite, and agreement with the Python presets.

Runs `node --test tests/js/`; skipped (with the reason) where Node.js is not installed.
"""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from comfy_fakes import REPO, load_pack

PACK = load_pack()
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="Node.js is not installed (the timeline's JS tests need `node`)")
LOGIC = REPO / "js" / "mardini_timeline_logic.js"


def run_node(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([NODE, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


@needs_node
def test_js_unit_tests_pass():
    result = run_node("--test", "tests/js/")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@needs_node
def test_js_presets_build_the_same_patterns_as_the_node():
    from mardini_core.errors import MaskError

    frame_mask = PACK.nodes.frame_mask
    script = (
        f"import {{ PRESETS, presetPattern }} from {json.dumps(LOGIC.as_uri())};"
        "const out = {};"
        "for (const p of PRESETS) for (let k = 2; k <= 40; k++) for (let g = 1; g <= 6; g++)"
        " out[`${p}|${k}|${g}`] = presetPattern(p, k, g);"
        "console.log(JSON.stringify({ presets: PRESETS, patterns: out }));"
    )
    result = run_node("--input-type=module", "-e", script)
    assert result.returncode == 0, result.stderr
    js = json.loads(result.stdout)
    assert js["presets"] == list(frame_mask.PRESETS)
    checked = 0
    for key, pattern in js["patterns"].items():
        preset, frames, given = key.split("|")
        if preset == frame_mask.CUSTOM:
            assert pattern is None
            continue
        try:
            mask = frame_mask.build_mask(int(frames), preset, int(given), "")
        except MaskError:
            continue  # the server refuses it; the timeline only shows a clamped guess
        assert pattern == mask.pattern, key
        checked += 1
    assert checked > 1000


def test_extension_patches_only_our_node():
    source = (REPO / "js" / "mardini_timeline.js").read_text()
    assert 'const NODE_NAME = "MarDiniFrameMask"' in source and "nodeData?.name !== NODE_NAME" in source
    assert "serialize: false" in source and "timeline.serialize = false" in source and "app.registerExtension" in source
    assert "MarDiniFrameMask" in PACK.NODE_CLASS_MAPPINGS
    assert not any(p.suffix == ".mjs" for p in Path(REPO / "js").iterdir()), "ComfyUI loads .js files only"
