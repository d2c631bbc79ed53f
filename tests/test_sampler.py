import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mardini_core.generation import sampler
from mardini_core.anchor import neighbour_blend
from mardini_core.config import MarDiniConfig
from mardini_core.errors import GenerationInterrupted, InputError
from mardini_core.generation.settings import MAX_STEPS, SAMPLERS
from mardini_core.generation.sampler import denoise, guided_velocity, log_snr, sampling_times
from mardini_core.noise_schedule import alpha_sigma, predict_x0_eps
from mardini_core.generation import Hooks, Sampling
from mardini_core.generation.settings import Resolved
from support import live_tiny


class FakeGenerator:
    """What the sampler asks of a generator besides its forward pass: Z_uncond, and no step cache."""

    def uncond_plan_like(self, plan):
        return torch.full_like(plan, -1.0)

    def sampling_cache(self, reference, plan, masked, unconditional=0):
        return None



class OracleGenerator(FakeGenerator):
    """Predicts the exact v for a known clean target (so DDIM must land on it); counts its calls."""

    def __init__(self, target, uncond_target=None, offset=None):
        self.target, self.uncond_target = target, uncond_target
        self.offset = torch.zeros_like(target) if offset is None else offset  # what the anchor adds to masked frames
        self.batches, self.inputs = [], []

    def __call__(self, z_t, t, plan, masked, cache=None, anchor=None):
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


class GaussianGenerator(FakeGenerator):
    """The exact v for data whose values are independently N(mu, c^2): E[x0 | z_t] is linear in z_t.

    The deterministic sampling path from pure noise e then ends exactly at mu + c e, so a sampler's
    error at a number of steps is known exactly (the model itself is never wrong).
    """

    def __init__(self, mu, c):
        self.mu, self.c = mu, c

    def __call__(self, z_t, t, plan, masked, cache=None, anchor=None):
        a, s = alpha_sigma(t)
        a, s = a[:, None, None, None, None], s[:, None, None, None, None]
        x0 = self.mu + a * self.c**2 / (a**2 * self.c**2 + s**2) * (z_t - a * self.mu)
        return (a * z_t - x0) / s


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
    assert sampling_times(4).tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    with pytest.raises(InputError, match="positive integer"):
        Sampling(steps=0)


@settings(deadline=None)
@given(steps=st.integers(1, MAX_STEPS))
def test_dpmpp_2m_times_go_from_pure_noise_to_clean_evenly_in_log_snr(steps):
    times = sampling_times(steps, "dpmpp_2m")
    assert len(times) == steps + 1 and times[0] == 1 and times[-1] == 0 and (times.diff() < 0).all()
    lam = log_snr(times[1:-1])
    if 2 < steps <= 200:  # past that, float32 times near 1 cannot hold the spacing exactly
        torch.testing.assert_close(lam.diff(), lam.diff()[:1].expand(steps - 2), atol=1e-3, rtol=1e-3)
        more = log_snr(sampling_times(steps + 1, "dpmpp_2m")[1:-1])
        assert more[0] < lam[0] and more[-1] > lam[-1]  # more steps reach further towards both ends


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_lands_on_the_oracle_target_and_keeps_references_exact(eta):
    reference, masked = clip()
    target = torch.randn_like(reference)
    out = denoise(FakeModel(OracleGenerator(target)), reference, masked, torch.zeros(1, 5, 2, 3), Resolved(steps=6, eta=eta), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[masked], target[masked], atol=1e-4, rtol=1e-4)
    assert torch.equal(out[~masked], reference[~masked])


def test_anchored_ddim_diffuses_the_residual_from_the_neighbour_blend():
    reference, masked = clip(k=6)
    masked[:, -1] = False  # first and last given: interpolation
    target = torch.randn_like(reference)
    offset = neighbour_blend(reference, masked)
    anchored = OracleGenerator(target, offset=offset)
    out = denoise(FakeModel(anchored, anchor="neighbours"), reference, masked, None, Resolved(steps=6), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[masked], target[masked], atol=1e-4, rtol=1e-4)
    assert torch.equal(out[~masked], reference[~masked])
    # the first step sees the same noise as the paper's sampler, moved onto the blend
    plain = OracleGenerator(target)
    denoise(FakeModel(plain), reference, masked, None, Resolved(steps=6), generator=torch.Generator().manual_seed(0))
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
    denoise(FakeModel(gen), reference, masked, torch.zeros(2, 5, 2, 3), Resolved(steps=3, guidance=2.5))
    assert gen.batches == [4, 4, 4]


def run(model, seed, reference, masked, plan, **settings):
    return denoise(model, reference, masked, plan, Resolved(**{"steps": 3, **settings}), generator=torch.Generator().manual_seed(seed))


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
    denoise(FakeModel(OracleGenerator(target)), reference, masked, None, Resolved(steps=4), hooks=Hooks(step=lambda i, n, x0: seen.append((i, n, x0.clone()))))
    assert [(i, n) for i, n, _ in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    for _, _, x0 in seen:
        assert torch.equal(x0[~masked], reference[~masked])
        torch.testing.assert_close(x0[masked], target[masked], atol=1e-4, rtol=1e-4)  # oracle preview is exact

    calls = []
    with pytest.raises(GenerationInterrupted, match="step 2 of 4"):
        denoise(FakeModel(OracleGenerator(target)), reference, masked, None, Resolved(steps=4), hooks=Hooks(step=lambda i, n, x0: calls.append(i), should_stop=lambda: len(calls) == 2))
    assert calls == [1, 2]


def test_negative_guidance_refused():
    reference, masked = clip()
    with pytest.raises(InputError, match="must be >= 0"):
        denoise(FakeModel(OracleGenerator(reference)), reference, masked, None, Resolved(steps=2, guidance=-1))


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampling_cache_gives_the_same_samples(monkeypatch, name):
    """Steps computing only the masked frames (cached references) match full computation, CFG included."""
    model = live_tiny()
    reference, masked = torch.randn(1, 5, 32, 4, 4), torch.tensor([[False, True, True, False, True]])
    plan = model.planner(torch.randn(1, 5, 32, 2, 2), masked)
    cached = run(model, 3, reference, masked, plan, guidance=2.5, sampler=name)
    monkeypatch.setattr(sampler, "sampling_cache", lambda *args: None)
    torch.testing.assert_close(run(model, 3, reference, masked, plan, guidance=2.5, sampler=name), cached, atol=1e-5, rtol=1e-5)


def gaussian_case(seed: int, mean: float, spread: tuple[float, float]):
    """A clip, a Gaussian model of random per-value means and scales, and the end of its exact sampling path."""
    gen = torch.Generator().manual_seed(seed)
    reference, masked = torch.randn(1, 5, 4, 4, 4, generator=gen), torch.tensor([[False, True, True, False, True]])
    mu = mean * torch.randn(reference.shape, generator=gen)
    c = spread[0] + (spread[1] - spread[0]) * torch.rand(reference.shape, generator=gen)
    exact = mu + c * torch.randn(reference.shape, generator=torch.Generator().manual_seed(seed))  # the sampler's first noise
    return FakeModel(GaussianGenerator(mu, c)), reference, masked, torch.where(masked[:, :, None, None, None], exact, reference)


def gaussian_error(case, name: str, steps: int, seed: int) -> float:
    model, reference, masked, exact = case
    out = denoise(model, reference, masked, None, Resolved(steps=steps, sampler=name), generator=torch.Generator().manual_seed(seed))
    assert torch.equal(out[~masked], reference[~masked])
    return float((out - exact)[masked].pow(2).mean().sqrt())


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), mean=st.floats(0, 3), spread=st.sampled_from([(0.05, 0.3), (0.3, 1.0), (1.0, 2.0), (0.05, 2.0)]))
def test_dpmpp_2m_in_10_steps_beats_ddim_in_25_and_converges_to_the_same_path(seed, mean, spread):
    case = gaussian_case(seed, mean, spread)
    error = {(name, steps): gaussian_error(case, name, steps, seed) for name in SAMPLERS for steps in (10, 25, 200)}
    assert error["dpmpp_2m", 10] < error["ddim", 10]
    assert error["dpmpp_2m", 10] < error["ddim", 25]
    assert error["dpmpp_2m", 25] < error["ddim", 25]
    assert error["dpmpp_2m", 200] < 2e-3 and error["ddim", 200] < 2e-2  # both solve the same ODE; 2M faster


def old_ddim(model, reference, masked, steps: int, eta: float, seed: int) -> torch.Tensor:
    """DDIM as the sampler computed it before a second sampler existed, op for op."""
    generated, times, gen = masked[:, :, None, None, None], torch.linspace(1.0, 0.0, steps + 1), torch.Generator().manual_seed(seed)
    y = torch.randn(reference.shape, generator=gen)
    for i in range(steps):
        t = torch.full((y.shape[0],), float(times[i]))
        y0, eps = predict_x0_eps(y, model.generator(torch.where(generated, y, reference), t, None, masked), t)
        (a_now, s_now), (a_next, s_next) = alpha_sigma(times[i]), alpha_sigma(times[i + 1])
        spread = eta * (s_next / s_now) * (1 - (a_now / a_next) ** 2).clamp(min=0).sqrt()
        y = a_next * y0 + (s_next**2 - spread**2).clamp(min=0).sqrt() * eps
        if spread > 0:
            y = y + spread * torch.randn(reference.shape, generator=gen)
    return torch.where(generated, y, reference)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), steps=st.integers(1, 30), eta=st.sampled_from([0.0, 0.3, 1.0]))
def test_ddim_is_bit_identical_to_the_formula_before_the_second_sampler(seed, steps, eta):
    model, reference, masked, _ = gaussian_case(seed, 1.0, (0.1, 1.5))
    out = denoise(model, reference, masked, None, Resolved(steps=steps, eta=eta), generator=torch.Generator().manual_seed(seed))
    assert torch.equal(out, old_ddim(model, reference, masked, steps, eta, seed))


@settings(max_examples=10, deadline=None)
@given(steps=st.integers(1, 12), guidance=st.sampled_from([1.0, 2.5]), anchor=st.sampled_from(["none", "neighbours"]))
def test_dpmpp_2m_lands_on_the_oracle_target_with_guidance_and_anchors(steps, guidance, anchor):
    reference, masked = clip(k=6)
    masked[:, -1] = False
    cond, uncond = torch.randn_like(reference), torch.randn_like(reference)
    offset = neighbour_blend(reference, masked) if anchor == "neighbours" else None
    gen = OracleGenerator(cond, uncond, offset=offset)
    out = denoise(FakeModel(gen, anchor=anchor), reference, masked, torch.zeros(1, 6, 2, 3), Resolved(steps=steps, guidance=guidance, sampler="dpmpp_2m"), generator=torch.Generator().manual_seed(steps))
    torch.testing.assert_close(out[masked], (uncond + guidance * (cond - uncond))[masked], atol=1e-4, rtol=1e-4)
    assert torch.equal(out[~masked], reference[~masked])
    assert gen.batches == [2 if guidance != 1 else 1] * steps


def test_dpmpp_2m_previews_stops_and_keeps_fidelitys_meaning():
    model, reference, masked, _ = gaussian_case(3, 1.0, (0.1, 1.5))
    run = lambda hooks=Hooks(), **kw: denoise(model, reference, masked, None, Resolved(sampler="dpmpp_2m", **kw),
                                             generator=torch.Generator().manual_seed(2), hooks=hooks)
    seen = []
    full = run(steps=6, hooks=Hooks(step=lambda i, n, x0: seen.append((i, n, x0.clone()))))
    assert [(i, n) for i, n, _ in seen] == [(i, 6) for i in range(1, 7)]
    assert all(torch.equal(x0[~masked], reference[~masked]) for _, _, x0 in seen)
    torch.testing.assert_close(seen[-1][2], full)  # the last preview is the last clean prediction, the result
    mean = denoise(model, reference, masked, None, Resolved(steps=6, fidelity=1.0), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(run(steps=6, fidelity=1.0), mean)  # the same first step as DDIM's
    torch.testing.assert_close(run(steps=6, fidelity=0.25), 0.25 * mean + 0.75 * full)
    calls = []
    with pytest.raises(GenerationInterrupted, match="step 2 of 6"):
        run(steps=6, hooks=Hooks(step=lambda i, n, x0: calls.append(i), should_stop=lambda: len(calls) == 2))
    assert calls == [1, 2]


@pytest.mark.parametrize("bad", ["euler", "DDIM", "", None, 3])
def test_unknown_sampler_is_one_line_naming_the_choices(bad):
    reference, masked = clip()
    for call in (lambda: Sampling(sampler=bad), lambda: Resolved(sampler=bad)):
        with pytest.raises(InputError, match="sampler must be one of ddim, dpmpp_2m") as err:
            call()
        assert "\n" not in str(err.value)


def test_dpmpp_2m_refuses_eta():
    with pytest.raises(InputError, match="eta must be 0 with sampler dpmpp_2m"):
        Sampling(eta=0.5, sampler="dpmpp_2m")
    Sampling(eta=0.5, sampler="ddim")
