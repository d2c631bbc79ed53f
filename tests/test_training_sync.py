"""No host sync in a training step between log steps: the calls that make a CUDA device wait for its queue
(item, tolist, float, int, bool, cpu, numpy, nonzero), counted on CPU whenever the project's code makes them."""
from __future__ import annotations

import dataclasses
import sys
import threading
from pathlib import Path

import pytest
import torch

from mardini_core.data import shared_dir

REPO = Path(__file__).resolve().parents[1]
CLIP = shared_dir() / "data" / "clips" / "carphone_pristine.mp4"
needs_clip = pytest.mark.skipif(
    not CLIP.is_file() or not (shared_dir() / "weights" / "taef2").is_dir(), reason="needs the shared clips and TAEF2"
)
pytestmark = pytest.mark.usefixtures("single_thread")
SYNCING = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__", "cpu", "numpy", "nonzero")


def _by_project(depth: int = 2) -> bool:
    return "/mardini_core/" in sys._getframe(depth).f_code.co_filename and threading.current_thread() is threading.main_thread()


@needs_clip
def test_a_run_syncs_only_at_log_and_checkpoint_steps(tmp_path, monkeypatch):
    from mardini_core.training import progress, trainer as trainer_module
    from mardini_core.training.config import load_stage

    cfg = load_stage(REPO / "configs" / "stages" / "tiny_stage1.toml")
    cfg = dataclasses.replace(
        cfg, steps=6, data=dataclasses.replace(cfg.data, paths=(str(CLIP),)),
        checkpoint=dataclasses.replace(cfg.checkpoint, every=6, log_every=3, sample_every=0),
    )
    trainer = trainer_module.Trainer(cfg, trainer_module.RunOptions(tmp_path / "run", cache_dir=str(tmp_path / "cache"), device="cpu"))
    state = {"phase": None, "trained": -1}
    syncs: list[tuple[str | None, int, int, str]] = []

    def watch(name):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, **kwargs):
            if _by_project():
                syncs.append((state["phase"], trainer.step, state["trained"], f"{name} in {sys._getframe(1).f_code.co_name}"))
            return original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)

    def phase(owner, name, label):
        original = getattr(owner, name)

        def marked(self, step, *args):
            state["phase"] = label
            try:
                return original(self, step, *args)
            finally:
                state["phase"], state["trained"] = None, step

        monkeypatch.setattr(owner, name, marked)

    phase(trainer_module.Trainer, "train_step", "step")
    phase(progress.StepValues, "add", "step")
    for name in SYNCING:
        watch(name)
    trainer.run()
    log_steps = {3, 6}
    in_steps = [s for s in syncs if s[0] == "step"]
    between = [s for s in syncs if s[0] is None and (s[1] not in log_steps or s[1] == s[2])]
    assert not in_steps and not between, (in_steps, between)
    assert {s[1] for s in syncs} == log_steps  # the values are read, at those steps only


def test_step_values_remember_the_first_step_that_was_not_finite():
    from mardini_core.training.progress import StepValues

    values = StepValues(["loss", "grad_norm"], torch.device("cpu"))
    values.add(0, {"loss": torch.tensor(1.0), "grad_norm": torch.tensor(2.0)})
    assert values.read() == ({"loss": 1.0, "grad_norm": 2.0}, None, {"loss": 0.0, "grad_norm": 0.0})
    values.add(1, {"loss": torch.tensor(0.5), "grad_norm": torch.tensor(float("inf"))})
    values.add(2, {"loss": float("nan"), "grad_norm": torch.tensor(3.0)})
    latest, first_bad, bad = values.read()
    assert first_bad == 1 and bad == {"loss": 0.5, "grad_norm": float("inf")} and latest["grad_norm"] == 3.0
