"""compile as an option that never breaks a run: compiled blocks give the eager result, and where
compile is unavailable or fails the model runs eagerly with one warning."""
import pytest
import torch

from mardini_core.masks import from_indices
from mardini_core.model import compiled
from mardini_core.model.compiled import CompiledForward, compile_blocks
from mardini_core.generation import Anchor, Encoded, Sampling, plan, sample
from support import live_tiny


def window(model, steps=2):
    g = torch.Generator().manual_seed(0)
    high, low = torch.randn(2, 32, 8, 8, generator=g), torch.randn(2, 32, 4, 4, generator=g)
    window = Encoded(from_indices(5, [0, 4]), torch.zeros(0), high, low, Anchor(model.config.anchor))
    return sample(model, [window], plan(model, [window]), Sampling(steps=steps, fidelity=0.0, guidance=2.0))[0]


def test_without_a_compiler_the_model_runs_eagerly_with_one_warning(monkeypatch):
    model = live_tiny().eval()
    eager = window(model)
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    with pytest.warns(UserWarning, match="no C.. compiler found"):
        assert compile_blocks(model) is False
    assert not any(isinstance(b.__dict__.get("forward"), CompiledForward) for b in model.generator.blocks)
    assert torch.equal(window(model), eager)


def test_a_compile_failure_falls_back_to_eager_for_good(monkeypatch):
    model = live_tiny().eval()
    eager = window(model)
    calls = []

    def broken_compile(fn, **options):
        def run(*args, **kwargs):
            calls.append(1)
            raise RuntimeError("inductor: no working C++ compiler\nlong trace")
        return run

    monkeypatch.setattr(compiled.torch, "compile", broken_compile)
    assert compile_blocks(model, torch.device("cpu"))
    with pytest.warns(UserWarning, match="torch.compile failed .RuntimeError: inductor: no working C.. compiler.; running without compile"):
        out = window(model)
    assert torch.equal(out, eager)
    blocks = len(model.planner.blocks) + len(model.generator.blocks)
    assert len(calls) == blocks  # each block tried its compiled forward once, then stayed eager
    window(model)
    assert len(calls) == blocks
    assert compiled.compile_errors(model) == ["RuntimeError: inductor: no working C++ compiler"] * blocks


@pytest.mark.slow
def test_compiled_blocks_give_the_eager_result():
    if compiled.compile_unavailable(torch.device("cpu")):
        pytest.skip("no C++ compiler for torch.compile's CPU backend")
    model = live_tiny().eval()
    eager = window(model, steps=3)
    assert compile_blocks(model)
    torch.testing.assert_close(window(model, steps=3), eager, rtol=1e-5, atol=1e-5)
    assert compiled.compile_errors(model) == []
    state = model.state_dict()
    assert all("_orig_mod" not in name for name in state)  # checkpoints keep their names
