import pytest
import torch
from hypothesis import given, settings, strategies as st

from mardini_core.errors import InputError, MaskError
from mardini_core.hierarchical import schedule_windows, run_schedule
from test_pipeline import TinyVAE, count_calls, images
from support import live_tiny


def check_plan(plan, total, inputs, window):
    """Simulate the plan: every call fits the window, gets known frames, adds new ones; all frames end known."""
    known = set(inputs)
    for w in plan:
        assert 2 <= len(w.frames) <= window
        assert list(w.frames) == sorted(set(w.frames)) and 0 <= w.frames[0] and w.frames[-1] < total
        assert set(w.given) == known & set(w.frames)  # gives the model everything already known
        assert w.given and w.generated  # at least one reference and one frame to generate
        assert not set(w.generated) & set(inputs)  # inputs are never regenerated
        assert w.mask.pattern == "".join("x" if f in w.given else "." for f in w.frames)
        known |= set(w.frames)
    assert known == set(range(total))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_request_is_covered_within_the_window(data):
    total = data.draw(st.integers(2, 300))
    window = data.draw(st.integers(3, 33))
    inputs = data.draw(st.sets(st.integers(0, total - 1), min_size=1, max_size=min(total - 1, 8)))
    overlap = data.draw(st.integers(1, window - 1))
    check_plan(schedule_windows(total, sorted(inputs), window, overlap), total, inputs, window)


def test_slow_motion_from_four_images():
    """The paper's Fig. 10 setting: 4 images -> 128 frames, here with a 17-frame window."""
    inputs = [0, 42, 85, 127]
    plan = schedule_windows(128, inputs, 17)
    check_plan(plan, 128, inputs, 17)
    assert [w.kind for w in plan][:3] == ["keyframes"] * 3  # expand each segment first ...
    assert {w.kind for w in plan[3:]} == {"interpolate"}  # ... then interpolate between neighbours
    text = plan.describe()
    assert text.splitlines()[0] == f"128 frames from 4 given at {inputs}, window 17: {len(plan)} model call(s)"
    assert "x...............x" in text and str(plan) == text


def test_short_requests_are_one_window():
    for inputs, pattern in (([0], "x........"), ([0, 8], "x.......x"), ([4], "....x...."), ([0, 1, 2], "xxx......")):
        plan = schedule_windows(9, inputs, 9)
        assert [w.mask.pattern for w in plan] == [pattern]


def test_long_image_to_video_expands_with_overlap():
    plan = schedule_windows(20, [0], 9, overlap=3)
    assert [w.mask.pattern for w in plan] == ["x........", "xxx......", "xxxx....."]
    assert [w.frames[0] for w in plan] == [0, 6, 11]


@pytest.mark.parametrize(
    "args,message",
    [
        ((20, [0], 9, 9), "overlap must be between 1 and 8"),
        ((20, [], 9), "at least one given frame"),
        ((20, [20], 9), "within 0..19"),
        ((3, [0, 1, 2], 9), "nothing to generate"),
        ((20, [0], 2), "at least 3 frames"),
    ],
)
def test_plan_errors(args, message):
    with pytest.raises(MaskError, match=message):
        schedule_windows(*args)


@pytest.fixture(scope="module")
def model():
    return live_tiny()


@pytest.mark.slow
def test_run_schedule_interpolates_past_the_window(model):
    plan = schedule_windows(14, [0, 13], model.config.max_frames)
    assert len(plan) > 1
    img = images(2)
    planner_calls = count_calls(model.planner)
    frames = run_schedule(plan, model, TinyVAE(), img, steps=2, seed=5)
    assert frames.shape == (14, 3, 32, 32)
    assert torch.equal(frames[0], img[0]) and torch.equal(frames[13], img[1])
    assert len(planner_calls) == len(plan)  # the planner runs once per window
    assert torch.equal(run_schedule(plan, model, TinyVAE(), img, steps=2, seed=5), frames)
    assert not torch.allclose(run_schedule(plan, model, TinyVAE(), img, steps=2, seed=6)[1:13], frames[1:13])
    plain = run_schedule(plan, model, TinyVAE(), img, steps=2, seed=5, restore_detail=False)
    assert torch.equal(plain[[0, 13]], frames[[0, 13]]) and not torch.allclose(plain[1:13], frames[1:13])


def test_run_schedule_extends_from_a_middle_image(model):
    plan = schedule_windows(12, [6], model.config.max_frames)
    img = images(1)
    seen = []
    frames = run_schedule(plan, model, TinyVAE(), img, steps=1, on_window=lambda i, w: seen.append(i))
    assert frames.shape == (12, 3, 32, 32) and torch.equal(frames[6], img[0])
    assert seen == list(range(len(plan)))


def test_run_schedule_refuses_windows_larger_than_the_model(model):
    with pytest.raises(MaskError, match="exceeds the model's 9"):
        run_schedule(schedule_windows(12, [0], 12), model, TinyVAE(), images(1), steps=1)


def test_run_schedule_refuses_a_vae_of_other_channels(model):
    with pytest.raises(InputError, match="16-channel latents but the model expects 32"):
        run_schedule(schedule_windows(12, [0], 9), model, TinyVAE(16), images(1), steps=1)
