"""Training: the paper's losses, mask schedules, stage configs, the three stages on real clips, resume after a kill."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from mardini_core.checkpoint import load_checkpoint
from mardini_core.config import preset
from mardini_core.data import shared_dir
from mardini_core.errors import ConfigError
from mardini_core.model import MarDini
from mardini_core.training.config import MaskSection, load_stage
from mardini_core.training.losses import PlannerHead, TrainModules, masked_mse
from mardini_core.training.masking import sample_masks
from mardini_core.training.trainer import RunOptions, Trainer, data_order

REPO = Path(__file__).resolve().parents[1]
STAGES = REPO / "configs" / "stages"
CLIPS = shared_dir() / "data" / "clips"
needs_clips = pytest.mark.skipif(
    not (CLIPS.is_dir() and (shared_dir() / "weights" / "taef2").is_dir()),
    reason=f"shared clips or TAEF2 weights not found under {shared_dir()} (set MARDINI_SHARED)",
)


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def small_clips(tmp_path_factory):
    """Two real videos (an .mp4 and a .webm) linked into a folder: few clips, so caching latents is quick."""
    folder = tmp_path_factory.mktemp("clips")
    for name in ("carphone_pristine.mp4", "big_buck_bunny_432_433.webm"):
        (folder / name).symlink_to(CLIPS / name)
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("latents")


def stage(name: str, data: Path, **changes):
    cfg = load_stage(STAGES / name)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, paths=(str(data),)))
    checkpoint = dataclasses.replace(cfg.checkpoint, log_every=1, sample_every=changes.pop("sample_every", 0))
    return dataclasses.replace(cfg, checkpoint=checkpoint, **changes)


def fixed_loss(trainer: Trainer) -> dict[str, float]:
    """The stage's losses on the batches and draws of its first 8 steps: the same data before and after."""
    with torch.no_grad():
        outs = [trainer.modules(*trainer.batch(s)) for s in range(8)]
    return {k: sum(float(o[k]) for o in outs) / len(outs) for k in outs[0]}


def trains(cfg, opts: RunOptions) -> Path:
    """Run a stage and check that every loss of it falls on fixed batches; returns the final model's path."""
    trainer = Trainer(cfg, opts)
    before = fixed_loss(trainer)
    path = trainer.run()
    after = fixed_loss(trainer)
    for name in before:
        assert after[name] < 0.88 * before[name], (cfg.name, name, before[name], after[name])
    return path


# --- losses -------------------------------------------------------------------------------------


def test_masked_mse_scores_masked_frames_only():
    target = torch.randn(2, 4, 3, 4, 4)
    masked = torch.tensor([[True, False, True, False], [False, False, False, True]])
    pred = target.clone()
    pred[~masked] += 100  # wrong reference frames cost nothing
    assert masked_mse(pred, target, masked) == 0
    pred[0, 0] += 1
    torch.testing.assert_close(masked_mse(pred, target, masked), torch.tensor(1 / 3))


def test_unconditional_swap_cuts_the_planner_out():
    torch.manual_seed(0)
    model = MarDini(preset("tiny/T"))
    modules = TrainModules(model, None, ("diffusion",))
    z_high, z_low = torch.randn(2, 3, 32, 4, 4), torch.randn(2, 3, 32, 2, 2)
    masked = torch.tensor([[False, True, True], [True, True, False]])
    t, eps = torch.rand(2), torch.randn_like(z_high)
    for m in model.generator.blocks:  # give the zero-initialised cross-attention a path to the plan
        torch.nn.init.normal_(m.cross.proj.weight, std=0.1)
    torch.nn.init.normal_(model.generator.final.weight, std=0.1)
    for drop, planner_learns in ((torch.tensor([True, True]), False), (torch.tensor([False, True]), True)):
        model.zero_grad(set_to_none=True)
        modules(z_high, z_low, masked, t, eps, drop)["diffusion"].backward()
        grad = model.planner.embed.weight.grad
        assert (grad is not None and grad.abs().sum() > 0) == planner_learns
        assert model.generator.uncond_plan.grad is not None and model.generator.uncond_plan.grad.abs().sum() > 0


def test_reconstruction_head_maps_the_plan_back_to_latents():
    config = preset("tiny/ST")
    model, head = MarDini(config), PlannerHead(config)
    z_low = torch.randn(1, 4, 32, 4, 6)
    out = head(model.planner(z_low, torch.tensor([[True, False, True, False]])), rows=2)
    assert out.shape == z_low.shape
    assert not any(k.startswith("head") for k in model.state_dict())  # the head is never part of MarDini


# --- masks and configs ----------------------------------------------------------------------------


def test_stage3_mask_schedule_moves_from_interpolation_to_image_to_video():
    cfg = load_stage(STAGES / "tiny_stage3.toml").masks
    gen = torch.Generator().manual_seed(0)
    first = sample_masks(cfg, 64, 7, 0.0, gen)
    last = sample_masks(cfg, 64, 7, 1.0, gen)
    assert ((~first).sum(1) == 2).all() and ((~last).sum(1) == 1).all()
    interpolation = (~first[:, 0]) & (~first[:, -1])
    assert 0 < interpolation.sum() < 64  # both layouts drawn: first+last kept, or the first two (prefix)


def test_interpolation_masks_keep_both_ends():
    cfg = MaskSection(layouts={"interpolation": 1.0}, ratio_start=(0.3, 0.8), ratio_end=(0.3, 0.8))
    masked = sample_masks(cfg, 50, 9, 0.5, torch.Generator().manual_seed(1))
    assert not masked[:, 0].any() and not masked[:, -1].any() and masked.any(1).all()


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 17),
    st.dictionaries(st.sampled_from(["random", "interpolation", "prefix"]), st.floats(0.1, 3), min_size=1),
    st.tuples(st.floats(0, 1), st.floats(0, 1)).map(sorted),
    st.floats(0, 1),
)
def test_every_mask_keeps_a_reference_and_generates_a_frame(frames, layouts, ratio, progress):
    cfg = MaskSection(layouts=layouts, ratio_start=tuple(ratio), ratio_end=(0.0, 1.0))
    masked = sample_masks(cfg, 8, frames, progress, torch.Generator().manual_seed(frames))
    assert masked.shape == (8, frames) and masked.any(1).all() and (~masked).any(1).all()


def test_data_order_is_a_permutation_split_across_ranks():
    seen = [i for step in range(3) for rank in range(2) for i, epoch in data_order(step, rank, 2, 2, 12, seed=5)]
    assert sorted(seen) == list(range(12))
    assert data_order(7, 1, 2, 2, 12, 5) == data_order(7, 1, 2, 2, 12, 5)


def test_every_stage_config_parses(tmp_path):
    names = sorted(p.name for p in STAGES.glob("*.toml"))
    assert {"tiny_stage1.toml", "tiny_stage2.toml", "tiny_stage3.toml"} <= set(names) and len(names) >= 6
    configs = {n: load_stage(STAGES / n) for n in names}
    assert [configs[n].model.attention for n in ("stage1_initial.toml", "stage2_joint_model.toml", "stage3_joint_task.toml")] == ["ST", "T", "T"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[optim]\nlearning_rate = 1e-4\n')
    with pytest.raises(ConfigError, match="learning_rate"):
        load_stage(bad)
    bad.write_text('[train]\nlosses = ["diffusion", "diffusion_uncond"]\n')
    with pytest.raises(ConfigError, match="either"):
        load_stage(bad)
    bad.write_text('[data]\nframes = "nine"\n')
    with pytest.raises(ConfigError, match="frames must be int"):
        load_stage(bad)


_OVERRIDABLE = {("stage", "steps"): st.integers(1, 10**6), ("stage", "seed"): st.integers(0, 2**31), ("optim", "batch"): st.integers(1, 512),
                ("optim", "warmup"): st.integers(0, 10**4), ("data", "height"): st.integers(1, 16).map(lambda k: 32 * k),
                ("checkpoint", "every"): st.integers(1, 10**5), ("checkpoint", "log_every"): st.integers(1, 1000)}


@settings(max_examples=40, deadline=None)
@given(picks=st.lists(st.sampled_from(sorted(_OVERRIDABLE)).flatmap(lambda k: st.tuples(st.just(k), _OVERRIDABLE[k])), min_size=1, max_size=5),
       lr=st.floats(1e-7, 1e-1, allow_nan=False))
def test_set_overrides_replace_exactly_the_named_values(picks, lr):
    """--set section.key=value: the config equals the file's with those values (the last of a repeated key) replaced."""
    base = load_stage(STAGES / "tiny_stage2.toml")
    cfg = load_stage(STAGES / "tiny_stage2.toml", [f"{s}.{k}={v}" for (s, k), v in picks] + [f"optim.lr={lr!r}", "stage.name=retuned"])
    expected = dict(picks)
    for (section, key), value in expected.items():
        assert getattr(cfg if section == "stage" else getattr(cfg, section), key) == value
    assert cfg.optim.lr == lr and cfg.name == "retuned"
    untouched = {f.name for f in dataclasses.fields(base)} - {s for s, _ in expected} - {"optim", "name", "steps", "seed"}
    for section in untouched:
        assert getattr(cfg, section) == getattr(base, section)


@pytest.mark.parametrize("assignment, message", [
    ("optim.batch", "section.key=value"),
    ("batch=4", "section.key=value"),
    ("optimizer.batch=4", "unknown section 'optimizer'"),
    ("optim.bacth=4", "bacth"),
    ("optim.batch=four", "batch must be int"),
    ("data.paths=['x']", "--data"),
])
def test_set_refuses_bad_overrides_by_name(assignment, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_stage(STAGES / "tiny_stage2.toml", [assignment])


# --- the three stages on real clips ----------------------------------------------------------------


@pytest.mark.slow
@needs_clips
def test_three_stages_learn_and_chain(small_clips, cache, tmp_path):
    s1 = trains(stage("tiny_stage1.toml", small_clips, steps=40), RunOptions(tmp_path / "s1", cache_dir=cache))
    first = load_checkpoint(s1)
    assert first.config.generator.attention == "ST" and first.config.vae == "taef2"

    opts = RunOptions(tmp_path / "s2", init=str(s1), cache_dir=cache)
    trainer = Trainer(stage("tiny_stage2.toml", small_clips, steps=40), opts)
    assert trainer.modules.model.config.generator.attention == "T" and trainer.modules.model.generator.attention == "T"
    for name, value in first.state_dict().items():  # stage 2 starts from stage 1's weights, unchanged
        torch.testing.assert_close(trainer.modules.model.state_dict()[name], value)
    s2 = trains(stage("tiny_stage2.toml", small_clips, steps=40), opts)
    assert load_checkpoint(s2).config.generator.attention == "T"

    s3 = trains(stage("tiny_stage3.toml", small_clips, steps=40, sample_every=40), RunOptions(tmp_path / "s3", init=str(s2), cache_dir=cache))
    assert load_checkpoint(s3).config.max_frames >= 7
    assert (tmp_path / "s3" / "samples" / "step-00000040.png").stat().st_size > 0
    assert (tmp_path / "s3" / "samples" / "step-00000040.gif").read_bytes()[:6] == b"GIF89a"
    log = [json.loads(line) for line in (tmp_path / "s3" / "log.jsonl").read_text().splitlines()]
    assert {"step", "loss", "lr", "frames_per_s", "diffusion"} <= set(log[-1]) and [r["step"] for r in log] == list(range(1, 41))


# --- never lose work ------------------------------------------------------------------------------


def _train_cmd(config: Path, out: Path, data: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mardini_core", "train", "--config", str(config), "--out", str(out), "--data", str(data),
            "--cache-dir", str(cache), "--threads", "1", *extra]


@pytest.mark.slow
@needs_clips
def test_resume_after_kill_matches_an_uninterrupted_run(small_clips, cache, tmp_path):
    cfg = stage("tiny_stage3.toml", small_clips, steps=24)
    cfg = dataclasses.replace(cfg, checkpoint=dataclasses.replace(cfg.checkpoint, every=2, keep=2, sample_every=0))
    Trainer(cfg, RunOptions(tmp_path / "whole", cache_dir=cache)).run()

    config = tmp_path / "stage.toml"
    config.write_text((STAGES / "tiny_stage3.toml").read_text().replace("every = 10", "every = 2").replace("sample_every = 20", "sample_every = 0"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(config, run, small_clips, cache, "--steps", "24"), env=env, cwd=REPO, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((run / "checkpoints").glob("state-0000001[0-9].safetensors")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    states = sorted((run / "checkpoints").glob("state-*.safetensors"))
    assert states and not (run / "model.safetensors").exists(), "the run finished before it could be killed"
    with pytest.raises(subprocess.CalledProcessError):  # an existing run is never silently overwritten
        subprocess.run(_train_cmd(config, run, small_clips, cache, "--steps", "24"), env=env, cwd=REPO, check=True, capture_output=True)
    subprocess.run(_train_cmd(config, run, small_clips, cache, "--steps", "24", "--resume"), env=env, cwd=REPO, check=True, capture_output=True)

    whole, resumed = load_file(str(tmp_path / "whole" / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert whole.keys() == resumed.keys()
    for name in whole:
        assert torch.equal(whole[name], resumed[name]), name
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 24  # the log was cut back to the checkpoint, no duplicates


@needs_clips
def test_runs_refuse_to_mix_configs_and_report_missing_data(small_clips, cache, tmp_path, capsys):
    from mardini_core.cli import main

    cfg = stage("tiny_stage1.toml", small_clips, steps=2)
    Trainer(cfg, RunOptions(tmp_path / "run", cache_dir=cache)).run()
    changed = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=5e-4))
    with pytest.raises(ConfigError, match="different stage config"):
        Trainer(changed, RunOptions(tmp_path / "run", resume=True, cache_dir=cache))
    with pytest.raises(ConfigError, match="--resume"):
        Trainer(cfg, RunOptions(tmp_path / "run", cache_dir=cache))
    empty = tmp_path / "empty"
    empty.mkdir()
    config = str(STAGES / "tiny_stage1.toml")
    assert main(["train", "--config", config, "--out", str(tmp_path / "x"), "--data", str(empty), "--threads", "1"]) == 2
    assert "no clip of 5 frames" in capsys.readouterr().err


@needs_clips
def test_a_clip_failing_mid_run_is_skipped_not_fatal(small_clips, cache, tmp_path, monkeypatch):
    from mardini_core.data import VideoReadError

    trainer = Trainer(stage("tiny_stage1.toml", small_clips, steps=2), RunOptions(tmp_path / "run", cache_dir=cache))
    index = data_order(0, 0, trainer.cfg.optim.batch, 1, len(trainer.data), trainer.cfg.seed)[0][0]
    load = trainer.data.load

    def flaky(i, variant=0):
        if i == index:
            raise VideoReadError("clip.mp4: frames [3] do not decode")
        return load(i, variant)

    monkeypatch.setattr(trainer.data, "load", flaky)
    with pytest.warns(UserWarning, match=f"skipping clip {index}: clip.mp4"):
        high = trainer.batch(0)[0]
    torch.testing.assert_close(high[0], trainer.batch(0)[0][0])  # replaced by the same next clip every time
    assert not torch.equal(high[0].cpu(), (load(index)[0] - trainer.config.latent_shift) * trainer.config.latent_scale)


@needs_clips
def test_the_default_flow_stage_trains_from_frames_with_flow_anchors_at_reduced_size(tmp_path, small_clips):
    """configs/default/flow.toml through the real trainer (frames loader, synthetic motion, flow anchors), shrunk."""
    cfg = load_stage(REPO / "configs" / "default" / "flow.toml")
    cfg = dataclasses.replace(
        cfg, steps=2,
        model=dataclasses.replace(cfg.model, preset="tiny/T"),
        data=dataclasses.replace(cfg.data, paths=(str(small_clips),), height=64, width=64, synthetic=0.5),
        optim=dataclasses.replace(cfg.optim, batch=2, warmup=1),
        checkpoint=dataclasses.replace(cfg.checkpoint, log_every=1, every=2),
    )
    pixel = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, losses=("diffusion", "pixel")),
                                data=dataclasses.replace(cfg.data, short_side=48))
    with_pixels = Trainer(pixel, RunOptions(tmp_path / "pixel"))
    assert {min(s.shape[1:3]) for s in with_pixels.data.segments} == {48}  # shrunk to short_side, crops upscaled to fit
    *_, pixels, anchor_pixels = with_pixels.batch(0)
    assert pixels.shape == anchor_pixels.shape == (2, 9, 3, 64, 64) and 0 <= float(pixels.min()) <= float(pixels.max()) <= 1
    with pytest.raises(ConfigError, match="short_side"):
        dataclasses.replace(pixel, data=dataclasses.replace(pixel.data, short_side=-1))
    assert math.isfinite(with_pixels.train_step(0, *with_pixels.batch(0))["pixel"])
    with pytest.raises(ConfigError, match="pixel"):
        dataclasses.replace(pixel, model=dataclasses.replace(pixel.model, anchor="neighbours"))
    dataclasses.replace(pixel, model=dataclasses.replace(pixel.model, anchor=""))  # the anchor may come from --init
    trainer = Trainer(cfg, RunOptions(tmp_path / "run"))
    high, low, masked, t, eps, drop, flow, pixels, anchor_pixels = trainer.batch(0)
    assert pixels is None and anchor_pixels is None  # read only by the pixel loss
    assert flow is not None and flow.shape == high.shape and torch.isfinite(flow).all()
    again = trainer.batch(0)
    assert torch.equal(again[0], high) and torch.equal(again[6], flow)  # a step's inputs repeat exactly (resume)
    model = load_checkpoint(trainer.run())
    assert model.config.anchor == "flow" and model.config.name == "tiny/T"
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(math.isfinite(r["loss"]) for r in log)


SHIPPED_CONFIGS = sorted((REPO / "configs").rglob("*.toml"))


@needs_clips
@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_shipped_config_builds_at_full_size_and_trains_a_reduced_step(path, tmp_path, small_clips, cache):
    """Each config's model builds on the meta device at full size, then one real step runs through the
    same trainer with the model and clips shrunk (so a config that cannot start fails here)."""
    from mardini_core.training.trainer import build_model
    from mardini_core.vae import load_vae

    cfg = load_stage(path)
    vae = load_vae(cfg.data.vae)
    with torch.device("meta"):
        full = build_model(cfg, None, vae)
    assert full.config.latent_channels == vae.latent_channels and full.config.anchor == (cfg.model.anchor or "none")
    reduced = dataclasses.replace(
        cfg, steps=1,
        model=dataclasses.replace(cfg.model, preset=f"tiny/{cfg.model.attention}"),
        data=dataclasses.replace(cfg.data, paths=(str(small_clips),), height=64, width=64, stride=1, stride_max=0),
        optim=dataclasses.replace(cfg.optim, batch=2, warmup=1),
        checkpoint=dataclasses.replace(cfg.checkpoint, log_every=1, every=1, sample_every=0),
    )
    model = load_checkpoint(Trainer(reduced, RunOptions(tmp_path / "run", cache_dir=cache)).run())
    assert model.config.generator.attention == cfg.model.attention
    assert math.isfinite(json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])["loss"])


def ranged_fields():
    """(section, key, low, high, above) of every value the stage schema bounds (training/config.ranged)."""
    import dataclasses as dc

    from mardini_core.training.config import StageConfig

    out = []
    for top in dc.fields(StageConfig):
        if "low" in top.metadata:  # [stage] values
            out.append(("stage", top.name, top.metadata["low"], top.metadata["high"], top.metadata["above"]))
        elif isinstance(top.default_factory, type) and dc.is_dataclass(top.default_factory):
            out += [(top.name, f.name, f.metadata["low"], f.metadata["high"], f.metadata["above"])
                    for f in dc.fields(top.default_factory) if "low" in f.metadata]
    return out


def test_the_schema_bounds_the_values_that_reach_torch():
    bounded = {(s, k) for s, k, *_ in ranged_fields()}
    assert {("optim", "lr"), ("optim", "grad_clip"), ("optim", "weight_decay"), ("optim", "warmup"), ("stage", "seed"),
            ("stage", "steps"), ("checkpoint", "sample_every"), ("data", "height")} <= bounded


@settings(max_examples=120, deadline=None)
@given(field=st.sampled_from(ranged_fields()), kind=st.sampled_from(["below", "above", "nan", "inf", "-inf", "bool", "text"]))
def test_any_value_outside_the_schema_is_refused_by_name(field, kind):
    """Every bounded value, pushed out of its range or given a non-finite or wrong-typed value through --set,
    is one ConfigError naming the key: nothing reaches the optimiser unchecked (grad_clip -1 reversed it)."""
    section, key, low, high, above = field
    value = {"below": (low if above else low - 1), "above": high * 2 + 1 if high != float("inf") else None, "nan": "nan",
             "inf": "inf", "-inf": "-inf", "bool": "true", "text": '"x"'}[kind]
    if value is None:
        return
    with pytest.raises(ConfigError, match=key):
        load_stage(STAGES / "tiny_stage1.toml", [f"{section}.{key}={value}"])


@pytest.mark.parametrize("kind", ["fifo", "folder", "binary", "deep", "latin1"])
def test_a_config_that_is_not_a_toml_file_is_one_line_never_a_hang(tmp_path, kind):
    path = tmp_path / "stage.toml"
    if kind == "fifo":
        os.mkfifo(path)  # reading it would wait for a writer for ever
    elif kind == "folder":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "deep":
        path.write_text("a = " + "[" * 5000 + "]" * 5000)
    else:
        path.write_bytes("name = 'caf\xe9'".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_stage(path)
    assert len(str(info.value).splitlines()) == 1
