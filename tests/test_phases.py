"""What the paper varies within training, as stage data: [[phases]] change the clips' length, frame rate
(stride) and size, and the clips per step, from a given step on; validated with one-line errors."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mardini_core.checkpoint import load_checkpoint
from mardini_core.data import shared_dir
from mardini_core.errors import ConfigError
from mardini_core.training.config import Phase, StageConfig, load_stage

REPO = Path(__file__).resolve().parents[1]
STAGES = REPO / "configs" / "stages"
CLIP = shared_dir() / "data" / "clips" / "carphone_pristine.mp4"
needs_clip = pytest.mark.skipif(
    not CLIP.is_file() or not (shared_dir() / "weights" / "taef2").is_dir(), reason="needs the shared clips and TAEF2"
)
pytestmark = pytest.mark.usefixtures("single_thread")


def write(tmp_path: Path, phases: str, base: str = "tiny_stage1.toml") -> Path:
    path = tmp_path / "stage.toml"
    path.write_text((STAGES / base).read_text() + "\n" + phases)
    return path


def test_phases_read_from_toml_apply_from_their_first_step(tmp_path):
    cfg = load_stage(write(tmp_path, "[[phases]]\nstart = 10\nheight = 64\nwidth = 64\nbatch = 2\n\n[[phases]]\nstart = 30\nframes = 7\nstride = 1\n"))
    assert cfg.phases == (Phase(10, height=64, width=64, batch=2), Phase(30, frames=7, stride=1))
    assert cfg.phase(9) == (0, dataclasses.replace(cfg, phases=()))
    start, view = cfg.phase(29)
    assert start == 10 and (view.data.height, view.data.width, view.optim.batch, view.data.frames) == (64, 64, 2, cfg.data.frames)
    start, view = cfg.phase(39)
    assert start == 30 and (view.data.height, view.data.frames, view.data.stride, view.optim.batch) == (64, 7, 1, 2)
    assert cfg.max_frames == 7 and view.phases == ()
    shortened = dataclasses.replace(cfg, steps=20)  # e.g. --steps 20: the phase from step 30 is never reached
    assert shortened.phase(19)[0] == 10


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 39), min_size=1, max_size=4, unique=True), st.integers(0, 39))
def test_the_phase_in_force_is_the_last_one_started(starts, step):
    base = load_stage(STAGES / "tiny_stage1.toml")
    phases = tuple(Phase(s, frames=2 + s % 7) for s in sorted(starts))
    start, view = dataclasses.replace(base, phases=phases).phase(step)
    started = [p for p in phases if p.start <= step]
    assert start == (started[-1].start if started else 0)
    assert view.data.frames == (started[-1].frames if started else base.data.frames)


@pytest.mark.parametrize("phases, message", [
    ("[[phases]]\nstart = 0\nframes = 9\n", r"increasing start steps from 1 on \(step 0 is the \[data\] section\), got \[0\]"),
    ("[[phases]]\nstart = 20\n\n[[phases]]\nstart = 10\n", r"increasing start steps .* got \[20, 10\]"),
    ("[[phases]]\nstart = 10\n\n[[phases]]\nstart = 10\n", r"increasing start steps .* got \[10, 10\]"),
    ("[[phases]]\nstart = 5\nstride = -1\n", r"the phase from step 5 has negative \['stride'\]; use 0 to keep a value"),
    ("[[phases]]\nstart = 5\nframes = 1\n", r"frames must be a finite number >= 2 .* \(in the phase from step 5\)"),
    ("[[phases]]\nstart = 5\nfps = 8\n", r"unknown key\(s\) \['fps'\] in \[\[phases\] #1\]"),
    ("[[phases]]\nstart = 5\nheight = '64'\n", r"height must be int, got '64'"),
])
def test_bad_phases_are_one_line_config_errors(tmp_path, phases, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_stage(write(tmp_path, phases))
    assert len(str(info.value).splitlines()) == 1


def test_shards_phases_may_change_only_the_batch():
    shards = dataclasses.replace(StageConfig(steps=10), data=dataclasses.replace(StageConfig().data, loader="shards"))
    assert dataclasses.replace(shards, phases=(Phase(5, batch=2),)).phase(5)[1].optim.batch == 2
    with pytest.raises(ConfigError, match="latent shards fix their frames, stride and size"):
        dataclasses.replace(shards, phases=(Phase(5, height=128),))


def phased(steps: int = 4):
    cfg = load_stage(STAGES / "tiny_stage1.toml")
    return dataclasses.replace(
        cfg, steps=steps, data=dataclasses.replace(cfg.data, paths=(str(CLIP),)),
        checkpoint=dataclasses.replace(cfg.checkpoint, every=1, log_every=1, keep=4, sample_every=0),
        phases=(Phase(2, frames=7, height=64, width=64, batch=2),),
    )


@needs_clip
def test_a_run_switches_clips_at_the_phase_and_resumes_across_it_bit_identically(tmp_path, monkeypatch):
    from mardini_core.training.trainer import RunOptions, Trainer

    shapes, train_step = {}, Trainer.train_step

    def recorded(self, step, *batch):
        shapes[step] = tuple(batch[0].shape[:2]) + tuple(batch[0].shape[-2:])
        return train_step(self, step, *batch)

    monkeypatch.setattr(Trainer, "train_step", recorded)
    cache = str(tmp_path / "cache")
    whole = Trainer(phased(), RunOptions(tmp_path / "whole", cache_dir=cache, device="cpu")).run()
    assert shapes[0] == shapes[1] == (4, 5, 4, 4) and shapes[2] == shapes[3] == (2, 7, 8, 8)  # TAEF2: 8 pixels per latent

    class Killed(Exception):
        pass

    def dies_at_3(self, step, *batch):
        if step == 3:
            raise Killed
        return train_step(self, step, *batch)

    monkeypatch.setattr(Trainer, "train_step", dies_at_3)
    with pytest.raises(Killed):
        Trainer(phased(), RunOptions(tmp_path / "resumed", cache_dir=cache, device="cpu")).run()
    monkeypatch.setattr(Trainer, "train_step", train_step)
    resumed = Trainer(phased(), RunOptions(tmp_path / "resumed", cache_dir=cache, device="cpu", resume=True))
    assert resumed.step == 3 and resumed.cfg.optim.batch == 2
    ours, theirs = load_checkpoint(resumed.run()).state_dict(), load_checkpoint(whole).state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
