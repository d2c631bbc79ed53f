"""CRASH-RESUME TEST (about a minute): `python -m mardini_core train` on the tiny stage-1 config is killed with
SIGKILL ten times at random moments (during start-up, training steps and checkpoint writes); after every
kill the newest checkpoint loads, `--resume` continues, and the final weights equal an uninterrupted run."""
from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mardini_core.cli import COMMANDS

pytest.importorskip("mardini_core.training.trainer")
if "train" not in COMMANDS:
    pytest.skip("the train command is not registered yet", allow_module_level=True)

from mardini_core.training.state import latest_state, read_meta  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STAGE = REPO / "configs" / "stages" / "tiny_stage1.toml"
CLIP = REPO.parent / "shared" / "data" / "clips" / "carphone_pristine.mp4"
KILLS, STEPS, EVERY = 10, 100, 2


def stage_config(folder: Path) -> Path:
    """The tiny stage-1 config with more steps, a checkpoint every 2 steps, and the data given on the command line."""
    text = STAGE.read_text()
    text = re.sub(r"(?m)^steps = \d+", f"steps = {STEPS}", text)
    text = re.sub(r"(?m)^every = \d+", f"every = {EVERY}", text)
    text = re.sub(r"(?m)^paths = .*", "paths = []", text)
    path = folder / "stage.toml"
    path.write_text(text)
    return path


def train(config: Path, out: Path, resume: bool) -> subprocess.Popen:
    """One training process; its stderr is appended to <out>.log (read back when a run fails)."""
    argv = [sys.executable, "-m", "mardini_core", "train", "--config", str(config), "--out", str(out),
            "--data", str(CLIP), "--threads", "1", "--device", "cpu", *(["--resume"] if resume else [])]
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    with open(f"{out}.log", "ab") as log:
        return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)


def checkpoints(out: Path) -> list[Path]:
    return sorted((out / "checkpoints").glob("state-*.safetensors")) if (out / "checkpoints").is_dir() else []


def wait_for(predicate, process: subprocess.Popen, timeout: float = 120) -> bool:
    """Poll `predicate` until it holds (True) or the process exits (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.005)
    raise AssertionError("training made no progress within the timeout")


@pytest.mark.slow
@pytest.mark.skipif(not CLIP.is_file() or not STAGE.is_file(), reason="needs configs/stages and ../shared/data/clips")
def test_sigkill_ten_times_resumes_to_the_uninterrupted_weights():
    rng = random.Random(20250101)
    root = Path(tempfile.mkdtemp(prefix="mardini-reliability-train-"))
    try:
        config = stage_config(root)
        reference = train(config, root / "reference", resume=False)
        assert reference.wait(timeout=300) == 0, Path(f"{root / 'reference'}.log").read_text()[-2000:]

        out, kills, resumed_steps = root / "killed", 0, []
        process = train(config, out, resume=False)
        while kills < KILLS:
            seen = {p.name for p in checkpoints(out)}
            if rng.random() < 0.3:  # anywhere, start-up and cache filling included
                try:
                    process.wait(timeout=rng.uniform(0.05, 3.0))
                except subprocess.TimeoutExpired:
                    pass
            elif wait_for(lambda: {p.name for p in checkpoints(out)} - seen, process):
                time.sleep(rng.uniform(0, 0.08))  # the random moment itself (steps, checkpoint writes), not a wait
            assert process.poll() is None, f"the run ended after {kills} kills (code {process.returncode}); raise STEPS"
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            newest = latest_state(out / "checkpoints") if (out / "checkpoints").is_dir() else None
            if newest is not None:  # the checkpoint a resume will use opens and is complete
                step = int(read_meta(newest)["step"])
                assert len(load_file(str(newest))) > 0 and 0 < step <= STEPS
                resumed_steps.append(step)
            process = train(config, out, resume=True)
        stale = out / "checkpoints" / ".state-00000002.safetensors.k1ll3d.tmp"  # what a kill inside a write leaves
        stale.parent.mkdir(parents=True, exist_ok=True)
        stale.write_bytes(b"half a training state")
        assert process.wait(timeout=300) == 0, Path(f"{out}.log").read_text()[-2000:]
        print(f"\n{kills} SIGKILLs survived; resumed from steps {resumed_steps}")
        leftovers = [p.name for p in (out / "checkpoints").iterdir() if p.name.endswith(".tmp")]
        assert not leftovers, f"half-written states of killed runs are never cleaned up: {leftovers}"
        final, expected = load_file(str(out / "model.safetensors")), load_file(str(root / "reference" / "model.safetensors"))
        assert final.keys() == expected.keys()
        assert all(torch.equal(final[k], expected[k]) for k in final), "resumed weights differ from the uninterrupted run"
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("name", ["S/T", "L/ST"])
def test_a_paper_preset_on_a_small_cpu_is_refused_before_allocating(tmp_path, monkeypatch, capsys, name):
    """train with a paper preset on a small machine ended in the OOM killer; the whole training state is
    estimated first (16 bytes a parameter on the CPU) and refused in one line naming the fix."""
    from mardini_core import cli

    monkeypatch.setenv("MARDINI_MEMORY_LIMIT", "4G")
    config = Path(__file__).resolve().parents[1] / "configs" / "stages" / "tiny_stage1.toml"
    code = cli.main(["train", "--config", str(config), "--set", f"model.preset={name}", "--out", str(tmp_path / "run"),
                     "--device", "cpu"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(err) == 1 and "smaller preset" in err[0] and "GB" in err[0]
    assert not (tmp_path / "run" / "model.safetensors").exists()
