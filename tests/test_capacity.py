"""The capacity plan (`train --plan`): its memory against the peak a real CPU step measures, and how it scales."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from mardini_core.cli import main
from mardini_core.data import shared_dir
from mardini_core.training.config import load_stage
from mardini_core.training.capacity import GPUS, Accelerator, plan_stage

REPO = Path(__file__).resolve().parents[1]
STAGES = REPO / "configs" / "stages"
CLIP = shared_dir() / "data" / "clips" / "carphone_pristine.mp4"
needs_taef2 = pytest.mark.skipif(not (shared_dir() / "weights" / "taef2").is_dir(), reason="needs the shared TAEF2 weights")
CPU = Accelerator("CPU", peak_flops=1e12, memory=1e12, cuda=False)  # one CPU process as the "GPU": fp32, no FSDP
pytestmark = [needs_taef2, pytest.mark.usefixtures("single_thread")]


def tiny(name: str = "tiny_stage3.toml", **optim):
    cfg = load_stage(STAGES / name)
    return dataclasses.replace(cfg, steps=4, data=dataclasses.replace(cfg.data, paths=(str(CLIP),)),
                               optim=dataclasses.replace(cfg.optim, **optim))


@pytest.mark.skipif(not CLIP.is_file(), reason="needs the shared clips")
@pytest.mark.parametrize("checkpointing", [False, True])
def test_plan_memory_matches_the_peak_of_a_real_cpu_step(tmp_path, checkpointing):
    """Tolerance 20 %: the plan leaves out the optimizer's and autograd's short-lived temporaries and counts
    a checkpointed block's input again inside its recomputation (measured: 0.93-1.09 of the peak)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    from mardini_core.training.trainer import RunOptions, Trainer

    cfg = tiny(batch=8)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, gradient_checkpointing=checkpointing))
    plan = plan_stage(cfg, 1, CPU)
    trainer = Trainer(cfg, RunOptions(tmp_path / "run", cache_dir=str(tmp_path / "cache"), device="cpu"))
    trainer.train_step(0, *trainer.batch(0))  # AdamW's moments exist from the first step on
    batch = trainer.batch(1)
    tracker = MemTracker()
    tracker.track_external(trainer.modules, trainer.optimizer, *trainer.ema.shadow.values())
    with tracker:
        trainer.train_step(1, *batch)
    measured = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]
    assert 0.8 < plan.total_bytes / measured < 1.2, (plan.total_bytes, measured)


def test_states_shard_over_gpus_activations_and_flops_follow_the_batch():
    one, four = plan_stage(tiny(), 1, GPUS["h100"]), plan_stage(tiny(), 4, GPUS["h100"])
    for name in ("params_bytes", "grads_bytes", "optimizer_bytes", "ema_bytes"):
        assert getattr(one, name) == pytest.approx(4 * getattr(four, name)) and getattr(four, name) > 0, name
    assert one.activation_bytes == four.activation_bytes and one.flops_per_step == four.flops_per_step
    assert one.gathered_bytes == 2 * (one.planner_params + one.generator_params)  # one GPU: autocast's bf16 weights
    double = plan_stage(tiny(batch=8), 4, GPUS["h100"])
    assert double.flops_per_step == pytest.approx(2 * four.flops_per_step, rel=1e-6)
    assert 1.8 < double.activation_bytes / four.activation_bytes <= 2.01
    assert double.step_seconds == pytest.approx(double.flops_per_step / (0.4 * GPUS["h100"].peak_flops))
    checkpointed = dataclasses.replace(tiny(batch=8), model=dataclasses.replace(tiny().model, gradient_checkpointing=True))
    assert plan_stage(checkpointed, 4, GPUS["h100"]).activation_bytes < double.activation_bytes


def test_a_plan_that_does_not_fit_says_so_in_one_line():
    small = Accelerator("small GPU", 1e12, memory=20e6)
    plan = plan_stage(tiny(batch=8), 1, small)
    verdict = [line for line in plan.lines() if "DOES NOT FIT" in line]
    assert not plan.fits and len(verdict) == 1 and "gradient_checkpointing" in verdict[0]
    assert plan_stage(tiny(batch=8), 1, dataclasses.replace(small, memory=1e9)).fits


def test_cli_plans_the_paper_stage_3_on_eight_gpus(capsys):
    assert main(["train", "--config", str(STAGES / "stage3_joint_task.toml"), "--plan", "--gpus", "8", "--gpu", "h200"]) == 0
    out = capsys.readouterr().out
    assert "8 x H200" in out and "activations" in out and "s per step" in out and "DOES NOT FIT" not in out
    assert "steps 0-50000" in out and "steps 50000-200000" in out and "for its 200000 steps over 2 phases" in out  # 256, then 512 px
    assert main(["train", "--config", str(STAGES / "stage3_joint_task.toml"), "--plan", "--mfu", "1.5"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: --gpus must be at least 1 and --mfu in (0, 1], got 1 and 1.5"]
