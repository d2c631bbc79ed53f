import pytest
import torch

from mardini_core.anchor import neighbour_blend
from mardini_core.config import MarDiniConfig
from mardini_core.errors import GenerationInterrupted, InputError
from mardini_core.sampler import ddim_sample, ddim_times, guided_velocity
from mardini_core.schedule import alpha_sigma
from support import live_tiny


class OracleGenerator:
    """Predicts the exact v for a known clean target (so DDIM must land on it); counts its calls."""

    def __init__(self, target, uncond_target=None, offset=None):
        self.target, self.uncond_target = target, uncond_target
        self.offset = torch.zeros_like(target) if offset is None else offset  # what the anchor adds to masked frames
        self.batches, self.inputs = [], []

    def __call__(self, z_t, t, plan, masked, references=None, anchor=None):
        self.batches.append(z_t.shape[0])
        self.inputs.append(z_t.clone())
        target = self.target.repeat(z_t.shape[0] // self.target.shape[0], 1, 1, 1, 1)
        if self.uncond_target is not None:  # plan rows equal to -1 are the unconditional half
            uncond = (plan == -1).flatten(1).all(1)[:, None, None, None, None]
            target = torch.where(uncond, self.uncond_target.repeat(z_t.shape[0] // self.target.shape[0], 1, 1, 1, 1), target)
        a, s = alpha_sigma(t)
        a, s = a[:, None, None, None, None], s[:, None, None, None, None]
        offset = self.offset.repeat(z_t.shape[0] // self.offset.shape[0], 1, 1, 1, 1)
        residual = target - offset
        eps = (z_t - offset - a * residual) / s
        return a * eps - s * residual

    def uncond_plan_like(self, plan):
        return torch.full_like(plan, -1.0)

    def reference_cache(self, reference, plan, masked):
        return None


class FakeModel:
    def __init__(self, generator, anchor="none"):
        self.generator = generator
        self.config = MarDiniConfig(anchor=anchor)


def clip(b=1, k=5):
    reference = torch.randn(b, k, 4, 4, 4)
    masked = torch.zeros(b, k, dtype=torch.bool)
    masked[:, 1:] = True
    return reference, masked


def test_ddim_times():
    assert ddim_times(4).tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    with pytest.raises(InputError, match="positive integer"):
        ddim_times(0)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_lands_on_the_oracle_target_and_keeps_references_exact(eta):
    reference, masked = clip()
    target = torch.randn_like(reference)
    out = ddim_sample(FakeModel(OracleGenerator(target)), reference, masked, torch.zeros(1, 5, 2, 3), steps=6, eta=eta,
                      generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[masked], target[masked], atol=1e-4, rtol=1e-4)
    assert torch.equal(out[~masked], reference[~masked])


def test_anchored_ddim_diffuses_the_residual_from_the_neighbour_blend():
    reference, masked = clip(k=6)
    masked[:, -1] = False  # first and last given: interpolation
    target = torch.randn_like(reference)
    offset = neighbour_blend(reference, masked)
    anchored = OracleGenerator(target, offset=offset)
    out = ddim_sample(FakeModel(anchored, anchor="neighbours"), reference, masked, None, steps=6,
                      generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[masked], target[masked], atol=1e-4, rtol=1e-4)
    assert torch.equal(out[~masked], reference[~masked])
    # the first step sees the same noise as the paper's sampler, moved onto the blend
    plain = OracleGenerator(target)
    ddim_sample(FakeModel(plain), reference, masked, None, steps=6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(anchored.inputs[0][masked], (plain.inputs[0] + offset)[masked])


def test_guidance_batches_cond_and_uncond_in_one_call_and_extrapolates():
    reference, masked = clip()
    cond, uncond = torch.randn_like(reference), torch.randn_like(reference)
    gen = OracleGenerator(cond, uncond)
    plan = torch.zeros(1, 5, 2, 3)
    t = torch.full((1,), 0.5)
    z_t = torch.randn_like(reference)
    v_c, v_u = gen(z_t, t, plan, masked), gen(z_t, t, torch.full_like(plan, -1), masked)
    gen.batches.clear()
    v = guided_velocity(FakeModel(gen), z_t, t, plan, masked, guidance=2.5)
    assert gen.batches == [2]  # one call, cond and uncond batched
    torch.testing.assert_close(v, v_u + 2.5 * (v_c - v_u))
    for off in (1.0, 0.0):
        gen.batches.clear()
        torch.testing.assert_close(guided_velocity(FakeModel(gen), z_t, t, plan, masked, guidance=off), v_c)
        assert gen.batches == [1]


def test_guidance_calls_generator_once_per_step():
    reference, masked = clip(b=2)
    gen = OracleGenerator(torch.randn_like(reference))
    ddim_sample(FakeModel(gen), reference, masked, torch.zeros(2, 5, 2, 3), steps=3, guidance=2.5)
    assert gen.batches == [4, 4, 4]


def run(model, seed, reference, masked, plan, **kw):
    return ddim_sample(model, reference, masked, plan, steps=3, generator=torch.Generator().manual_seed(seed), **kw)


def test_seeds_reproduce_and_differ_with_real_model():
    model = live_tiny()
    reference, masked = clip(k=5)
    reference = torch.randn(1, 5, 32, 4, 4)
    plan = model.planner(torch.randn(1, 5, 32, 2, 2), masked)
    a, b, c = (run(model, s, reference, masked, plan, guidance=2.5, eta=0.5) for s in (7, 7, 8))
    assert torch.equal(a, b)
    assert not torch.allclose(a[masked], c[masked])
    assert torch.equal(a[~masked], reference[~masked]) and torch.equal(c[~masked], reference[~masked])
    assert not torch.allclose(run(model, 7, reference, masked, plan, guidance=1.0), a)  # guidance matters


def test_callback_previews_and_stop_hook():
    reference, masked = clip()
    target = torch.randn_like(reference)
    seen = []
    ddim_sample(FakeModel(OracleGenerator(target)), reference, masked, None, steps=4,
                callback=lambda i, n, x0: seen.append((i, n, x0.clone())))
    assert [(i, n) for i, n, _ in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    for _, _, x0 in seen:
        assert torch.equal(x0[~masked], reference[~masked])
        torch.testing.assert_close(x0[masked], target[masked], atol=1e-4, rtol=1e-4)  # oracle preview is exact

    calls = []
    with pytest.raises(GenerationInterrupted, match="step 2 of 4"):
        ddim_sample(FakeModel(OracleGenerator(target)), reference, masked, None, steps=4,
                    callback=lambda i, n, x0: calls.append(i), should_stop=lambda: len(calls) == 2)
    assert calls == [1, 2]


def test_negative_guidance_refused():
    reference, masked = clip()
    with pytest.raises(InputError, match="must be >= 0"):
        ddim_sample(FakeModel(OracleGenerator(reference)), reference, masked, None, steps=2, guidance=-1)


def test_reference_cache_gives_the_same_samples(monkeypatch):
    """Steps computing only the masked frames (cached references) match full computation, CFG included."""
    model = live_tiny()
    reference, masked = torch.randn(1, 5, 32, 4, 4), torch.tensor([[False, True, True, False, True]])
    plan = model.planner(torch.randn(1, 5, 32, 2, 2), masked)
    cached = run(model, 3, reference, masked, plan, guidance=2.5)
    monkeypatch.setattr(model.generator, "reference_cache", lambda *args: None)
    torch.testing.assert_close(run(model, 3, reference, masked, plan, guidance=2.5), cached, atol=1e-5, rtol=1e-5)
