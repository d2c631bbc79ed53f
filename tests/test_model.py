import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mardini_core.config import preset
from mardini_core.errors import BackendUnavailableError, ConfigError, InputError
from mardini_core.model import MarDini
from mardini_core.model import layers
from mardini_core.model.layers import MLP, gelu_tanh
from support import live_tiny


def inputs(b=2, k=5, c=32, h=8, w=12, down=2):
    masked = torch.zeros(b, k, dtype=torch.bool)
    masked[:, 1 : max(2, k - 1)] = True  # first (and last, for k > 2) frames are references
    return torch.randn(b, k, c, h, w), torch.randn(b, k, c, h // down, w // down), masked


@pytest.mark.parametrize("name", ["tiny/T", "tiny/ST"])
@pytest.mark.parametrize("k,h,w", [(5, 8, 12), (9, 12, 4), (2, 4, 4)])
def test_non_square_sizes_frame_counts_and_gradients(name, k, h, w):
    model = MarDini(preset(name))
    z, z_low, masked = inputs(k=k, h=h, w=w)
    plan = model.planner(z_low, masked)
    assert plan.shape == (2, k, (h // 4) * (w // 4), model.config.planner.hidden)
    v = model.generator(z, torch.rand(2), plan, masked)
    assert v.shape == z.shape
    (v - torch.randn_like(v)).square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == ["generator.uncond_plan"]  # Z_uncond is used only without a plan
    assert model.generator.final.weight.grad.abs().sum() > 0  # the zero-initialised output layer learns


def test_generator_gives_gradient_to_planner_after_first_update():
    model = MarDini(preset("tiny/T"))
    torch.nn.init.normal_(model.generator.blocks[0].cross.proj.weight, std=0.02)
    torch.nn.init.normal_(model.generator.final.weight, std=0.02)
    z, z_low, masked = inputs()
    v = model.generator(z, torch.rand(2), model.planner(z_low, masked), masked)
    v.square().mean().backward()
    assert model.planner.embed.weight.grad.abs().sum() > 0


def test_planner_ignores_content_of_masked_frames():
    model = MarDini(preset("tiny/T")).eval()
    _, z_low, masked = inputs()
    plan = model.planner(z_low, masked)
    z_low2 = z_low.clone()
    z_low2[masked] = torch.randn_like(z_low2[masked])
    assert torch.equal(model.planner(z_low2, masked), plan)


def test_reference_frames_unaffected_by_noisy_frames_in_mixing_attention():
    """With Identity Attention, reference tokens never read masked frames in the frame-mixing layers."""
    model = MarDini(preset("tiny/T")).eval()
    for blk in model.generator.blocks:  # make the branches live
        torch.nn.init.normal_(blk.ada.weight, std=0.05)
        torch.nn.init.zeros_(blk.cross.proj.weight)  # isolate self-attention paths
    torch.nn.init.normal_(model.generator.final.weight, std=0.05)
    z, z_low, masked = inputs()
    plan = model.planner(z_low, masked)
    v = model.generator(z, torch.rand(2), plan, masked)
    z2 = z.clone()
    z2[masked] = torch.randn_like(z2[masked])
    v2 = model.generator(z2, torch.rand(2), plan, masked)
    ref = ~masked
    torch.testing.assert_close(v2[ref], v[ref])
    assert not torch.allclose(v2[masked], v[masked])


def test_st_to_t_switch_keeps_weights():
    model = live_tiny(name="tiny/ST")
    z, z_low, masked = inputs()
    plan = model.planner(z_low, masked)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    v_st = model.generator(z, torch.full((2,), 0.5), plan, masked)
    model.set_generator_attention("T")
    assert model.config.generator.attention == "T" and model.generator.config.generator.attention == "T"
    assert model.config.name == "tiny/T"  # a preset-style name follows the switch
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    v_t = model.generator(z, torch.full((2,), 0.5), plan, masked)
    assert not torch.allclose(v_st, v_t)  # the attention pattern really changed


def test_unconditional_plan_and_cfg_batching():
    model = live_tiny()
    z, z_low, masked = inputs()
    plan = model.planner(z_low, masked)
    uncond = model.generator.uncond_plan_like(plan)
    assert uncond.shape == plan.shape
    t = torch.rand(2)
    torch.testing.assert_close(model.generator(z, t, uncond, masked), model.generator(z, t, None, masked))


def test_activation_checkpointing_same_gradients():
    model = MarDini(preset("tiny/T"))
    torch.nn.init.normal_(model.generator.final.weight, std=0.05)
    z, z_low, masked = inputs()
    t = torch.rand(2)

    def grads():
        model.zero_grad()
        model.generator(z, t, model.planner(z_low, masked), masked).square().mean().backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = grads()
    model.gradient_checkpointing = True
    ckpt = grads()
    for a, b in zip(plain, ckpt):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_runs(dtype):
    model = MarDini(preset("tiny/T")).to(dtype)
    z, z_low, masked = inputs()
    v = model.generator(z, torch.rand(2), model.planner(z_low, masked), masked)
    assert v.dtype == dtype and torch.isfinite(v.float()).all()


def test_bad_inputs_are_clear():
    model = MarDini(preset("tiny/T"))
    z, z_low, masked = inputs()
    with pytest.raises(InputError, match="16 channels but the model expects 32"):
        model.planner(z_low[:, :, :16], masked)
    with pytest.raises(InputError, match="exceed the model's window of 9"):
        model.planner(torch.randn(1, 10, 32, 4, 4), torch.ones(1, 10, dtype=torch.bool))
    with pytest.raises(InputError, match="multiple of the patch size"):
        model.generator(z[..., :7], torch.rand(2), None, masked)
    with pytest.raises(InputError, match="frame mask must be a bool tensor"):
        model.planner(z_low, masked.float())
    with pytest.raises(BackendUnavailableError):
        model.set_attention_backend("xformers")


def test_math_backend_matches_sdpa():
    model = live_tiny().double()
    z, z_low, masked = (x.double() if x.is_floating_point() else x for x in inputs())
    t = torch.rand(2, dtype=torch.float64)
    out = model.generator(z, t, model.planner(z_low, masked), masked)
    model.set_attention_backend("math")
    torch.testing.assert_close(model.generator(z, t, model.planner(z_low, masked), masked), out)


@pytest.mark.parametrize("name", ["tiny/T", "tiny/ST"])
@pytest.mark.parametrize("given", [[], [0], [0, 6], [2, 3, 4]])
@pytest.mark.parametrize("unconditional", [0, 1])
def test_sampling_cache_matches_full_computation(name, given, unconditional):
    """Steps through the cache compute the masked frames alone, the same as the full generator; the
    unconditional CFG clip (plan = Z_uncond, the same latents) skips its cross-attention, and the first
    block's spatial and frame-mixing sub-layers, where it equals the conditional clip, and still matches."""
    model = live_tiny(name=name).double()
    for block in model.generator.blocks:  # make the cross-attention branch live
        torch.nn.init.normal_(block.cross.proj.weight, std=0.05)
    k = 7
    masked = torch.ones(2, k, dtype=torch.bool)
    masked[:, given] = False
    z = torch.randn(2, k, 32, 8, 12, dtype=torch.float64)
    plan = model.planner(torch.randn(2, k, 32, 4, 6, dtype=torch.float64), masked)
    if unconditional:
        plan = torch.cat([plan[:1], model.generator.uncond_plan_like(plan[1:])])  # CFG halves: cond + uncond
        z[1] = z[0]
    cache = model.generator.sampling_cache(z, plan, masked, unconditional=unconditional)
    rows = []  # clips each block's spatial attention computes at a step
    for block in model.generator.blocks:
        block.spatial.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    assert torch.equal(cache.masked_frames, masked[0].nonzero().flatten())
    assert len(cache.frame_kv) == len(cache.plan) == model.config.generator.depth
    for t in (0.9, 0.3):  # the same cache serves every step
        tt = torch.full((2,), t, dtype=torch.float64)
        full = model.generator(z, tt, plan, masked)
        rows.clear()
        fast = model.generator(z, tt, plan, masked, cache=cache)
        assert rows == [2 - unconditional] + [2] * (len(model.generator.blocks) - 1)
        torch.testing.assert_close(fast[masked], full[masked], rtol=1e-9, atol=1e-9)
        assert torch.equal(fast[~masked], torch.zeros_like(fast[~masked]))


def test_sampling_cache_needs_one_mask():
    model = live_tiny().double()
    z = torch.randn(2, 5, 32, 8, 8, dtype=torch.float64)
    mixed = torch.tensor([[False, True, True, True, True], [True, True, False, True, True]])
    with pytest.raises(InputError, match="one frame mask shared"):
        model.generator.sampling_cache(z, None, mixed)


def test_relabel_changes_metadata_only():
    model = MarDini(preset("tiny/T"))
    model.relabel(vae="mardini-tae", latent_scale=0.5)
    assert model.config.vae == model.planner.config.vae == model.generator.config.vae == "mardini-tae"
    with pytest.raises(ConfigError, match="latent_channels change the weights' shapes"):
        model.relabel(latent_channels=16)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4000), st.floats(0.01, 30.0), st.integers(0, 2**31 - 1))
def test_sampling_gelu_is_the_tanh_gelu_and_training_keeps_autograd(n, spread, seed):
    """The CPU sampling form x * sigmoid(2u) is F.gelu's tanh form, for any spread of values (far tails
    included), leaves its input alone, and training still differentiates through it."""
    x = torch.randn(n, generator=torch.Generator().manual_seed(seed)) * spread
    kept = x.clone()
    with torch.no_grad():
        fast = gelu_tanh(x)
    reference = F.gelu(x.double(), approximate="tanh")
    assert torch.allclose(fast.double(), reference, rtol=1e-5, atol=1e-6)
    assert torch.equal(x, kept)
    y = x.clone().requires_grad_()
    gelu_tanh(y).sum().backward()
    torch.testing.assert_close(y.grad, torch.func.grad(lambda t: F.gelu(t, approximate="tanh").sum())(x))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=3), st.integers(1, 40), st.integers(1, 16), st.integers(0, 2**31 - 1))
def test_cpu_sampling_mlp_in_chunks_is_the_whole_mlp(lead, tokens, chunk, seed):
    """Sampling on a CPU runs the MLP a chunk of tokens at a time (its wide activation then stays in cache):
    for any leading shape, token count and chunk size, that is the MLP of the whole tensor, and leaves its
    input alone."""
    torch.manual_seed(seed)
    mlp = MLP(8, 32)
    x = torch.randn(*lead, tokens, 8)
    kept = x.clone()
    reference = mlp(x).detach()  # autograd on: one call over the whole tensor
    with pytest.MonkeyPatch.context() as patch, torch.no_grad():
        patch.setattr(layers, "CPU_CHUNK_TOKENS", chunk)
        chunked = mlp(x)
    assert chunked.shape == x.shape
    torch.testing.assert_close(chunked, reference, rtol=1e-5, atol=1e-6)
    assert torch.equal(x, kept)
