import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mardini_core.errors import BackendUnavailableError, ConfigError
from mardini_core.model.attention import (
    FrameGroups,
    attention,
    identity_attention,
    identity_attention_dense,
    resolve_backend,
)

MASKS = [
    [[False, True, True, True, False], [False, True, True, True, False]],  # shared pattern: one group
    [[False, True, True, True, False], [True, True, False, True, True]],  # two patterns
    [[True, True, True, True, True], [False, False, False, False, False]],  # all masked / all references
]


def qkv(b=2, k=5, n=6, h=2, d=8):
    return [torch.randn(b, k, n, h, d, dtype=torch.float64) for _ in range(3)]


@pytest.mark.parametrize("split", [True, False])
@pytest.mark.parametrize("backend", ["sdpa", "math"])
@pytest.mark.parametrize("temporal", [False, True])
@pytest.mark.parametrize("mask", MASKS)
def test_both_paths_equal_dense_mask_reference(temporal, mask, backend, split):
    q, k, v = qkv()
    masked = torch.tensor(mask)
    fast = identity_attention(q, k, v, FrameGroups(masked, split=split), temporal=temporal, backend=backend)
    dense = identity_attention_dense(q, k, v, masked, temporal=temporal)
    tol = 1e-10 if backend == "sdpa" else 1e-5  # the math backend computes in float32
    torch.testing.assert_close(fast, dense, rtol=tol, atol=tol)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 4), st.booleans(), st.data())
def test_one_masked_call_is_exact_for_any_masks(b, k, n, temporal, data):
    """Training's single call (no host sync) against the dense reference, values and gradients."""
    masked = torch.tensor(data.draw(st.lists(st.lists(st.booleans(), min_size=k, max_size=k), min_size=b, max_size=b)))
    q, k_, v = (t.requires_grad_() for t in qkv(b, k, n))
    out = identity_attention(q, k_, v, FrameGroups(masked), temporal=temporal)
    ref = identity_attention_dense(q, k_, v, masked, temporal=temporal)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), (q, k_, v))
    ref_grads = torch.autograd.grad((ref * weights).sum(), (q, k_, v))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-9)


def test_split_is_chosen_by_grad_mode_and_never_syncs_in_training(monkeypatch):
    masked = torch.tensor(MASKS[1])
    with torch.no_grad():
        assert FrameGroups(masked).split and len(FrameGroups(masked).groups) == 2
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self: pytest.fail("host sync while training"))
    monkeypatch.setattr(torch.Tensor, "nonzero", lambda self: pytest.fail("host sync while training"))
    groups = FrameGroups(masked)
    assert not groups.split and groups.groups == []
    q, k, v = qkv()
    identity_attention(q, k, v, groups, temporal=False)


@pytest.mark.parametrize("temporal", [False, True])
def test_reference_outputs_are_own_values_and_ignore_masked_tokens(temporal):
    q, k, v = qkv()
    masked = torch.tensor(MASKS[1])
    out = identity_attention(q, k, v, FrameGroups(masked), temporal=temporal)
    ref = ~masked
    torch.testing.assert_close(out[ref], v[ref])
    # change every masked token: reference outputs must not move, masked outputs must
    q2, k2, v2 = (t.clone() for t in (q, k, v))
    for t in (q2, k2, v2):
        t[masked] = torch.randn_like(t[masked])
    out2 = identity_attention(q2, k2, v2, FrameGroups(masked), temporal=temporal)
    assert torch.equal(out2[ref], out[ref])
    assert not torch.allclose(out2[masked], out[masked])


def test_masked_queries_see_reference_tokens():
    q, k, v = qkv()
    masked = torch.tensor(MASKS[0])
    out = identity_attention(q, k, v, FrameGroups(masked), temporal=False)
    v2 = v.clone()
    v2[:, 0] += 1.0  # change a reference frame's values
    out2 = identity_attention(q, k, v2, FrameGroups(masked), temporal=False)
    assert not torch.allclose(out2[:, 1:4], out[:, 1:4])


@pytest.mark.parametrize("backend", ["sdpa", "math"])
def test_backends_agree(backend):
    q, k, v = (torch.randn(3, 4, 10, 16) for _ in range(3))
    torch.testing.assert_close(attention(q, k, v, backend), attention(q, k, v, "math"), rtol=1e-5, atol=1e-5)


def test_backend_resolution_and_messages():
    cpu = torch.device("cpu")
    assert resolve_backend("auto", cpu) == "sdpa"
    assert resolve_backend("math", cpu) == "math"
    with pytest.raises(BackendUnavailableError, match="no CPU kernels"):
        resolve_backend("xformers", cpu)
    with pytest.raises(ConfigError, match="unknown attention backend 'flash9'"):
        resolve_backend("flash9", cpu)
