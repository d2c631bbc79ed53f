from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from mardini_core.errors import GenerationInterrupted, InputError, MaskError
from mardini_core.generation import long_video
from mardini_core.generation.long_video import batches, schedule_windows, run_schedule
from mardini_core.interpolation import Dis
from mardini_core.generation import Hooks, Sampling
from test_window import TinyVAE, count_calls, images
from support import live_tiny
from test_flow_anchor import kept_tiny


class CountingVAE(TinyVAE):
    """TinyVAE that logs every frame it encodes (with its width: the scale) and decodes, to catch repeated work."""

    def __init__(self, log: list):
        super().__init__()
        self.log = log

    def encode(self, images):
        self.log.extend(("encode", image.shape[-1], image.numpy().tobytes()) for image in images)
        return super().encode(images)

    def decode(self, z):
        self.log.extend(("decode", None, latent.numpy().tobytes()) for latent in z)
        return super().decode(z)


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


@st.composite
def requests(draw):
    """A long-video request: total frames, the given ones, the model's window and the overlap."""
    total = draw(st.integers(2, 300))
    window = draw(st.integers(3, 33))
    inputs = draw(st.sets(st.integers(0, total - 1), min_size=1, max_size=min(total - 1, 8)))
    return total, inputs, window, draw(st.integers(1, window - 1))


@settings(max_examples=200, deadline=None)
@given(requests())
def test_any_request_is_covered_within_the_window(request):
    total, inputs, window, overlap = request
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
    frames = run_schedule(plan, model, TinyVAE(), img, Sampling(steps=2, seed=5))
    assert frames.shape == (14, 3, 32, 32)
    assert torch.equal(frames[0], img[0]) and torch.equal(frames[13], img[1])
    assert len(planner_calls) == len(batches(plan, 4))  # the planner runs once per batch of windows
    assert torch.equal(run_schedule(plan, model, TinyVAE(), img, Sampling(steps=2, seed=5)), frames)
    assert not torch.allclose(run_schedule(plan, model, TinyVAE(), img, Sampling(steps=2, seed=6))[1:13], frames[1:13])
    plain = run_schedule(plan, model, TinyVAE(), img, Sampling(steps=2, seed=5), restore_detail=False)
    assert torch.equal(plain[[0, 13]], frames[[0, 13]]) and not torch.allclose(plain[1:13], frames[1:13])


def test_run_schedule_extends_from_a_middle_image(model):
    plan = schedule_windows(12, [6], model.config.max_frames)
    img = images(1)
    seen = []
    frames = run_schedule(plan, model, TinyVAE(), img, Sampling(steps=1), hooks=Hooks(window=lambda i, w: seen.append(i)))
    assert frames.shape == (12, 3, 32, 32) and torch.equal(frames[6], img[0])
    assert seen == list(range(len(plan)))


def test_run_schedule_refuses_windows_larger_than_the_model(model):
    with pytest.raises(MaskError, match="exceeds the model's 9"):
        run_schedule(schedule_windows(12, [0], 12), model, TinyVAE(), images(1), Sampling(steps=1))


def test_run_schedule_refuses_a_vae_of_other_channels(model):
    with pytest.raises(InputError, match="16-channel latents but the model expects 32"):
        run_schedule(schedule_windows(12, [0], 9), model, TinyVAE(16), images(1), Sampling(steps=1))


def test_run_schedule_refuses_a_batch_of_no_windows(model):
    with pytest.raises(InputError, match="batch must be a positive number of windows, got 0"):
        run_schedule(schedule_windows(12, [0], 9), model, TinyVAE(), images(1), Sampling(steps=1), batch=0)


def check_batches(plan, size):
    """Every window runs in exactly one batch of at most `size` windows of one level and mask, after the
    batches that make its given frames; the windows of a batch generate disjoint frames."""
    groups = batches(plan, size)
    assert sorted(i for group in groups for i in group) == list(range(len(plan)))
    known = set(plan.inputs)
    for group in groups:
        windows = [plan[i] for i in group]
        assert 1 <= len(group) <= size and len({(w.level, w.mask.pattern) for w in windows}) == 1
        assert all(set(w.given) <= known for w in windows)
        made = [f for w in windows for f in w.generated]
        assert len(made) == len(set(made)) and not set(made) & known  # each frame is produced once
        known |= set(made)
    assert known == set(range(plan.total))


@settings(max_examples=200, deadline=None)
@given(requests(), st.integers(1, 9))
def test_batches_produce_every_frame_once(request, batch):
    total, inputs, window, overlap = request
    check_batches(schedule_windows(total, sorted(inputs), window, overlap), batch)


def test_slow_motion_levels_run_as_batches():
    plan = schedule_windows(33, [0, 16, 32], 9)
    assert [[plan[i].kind for i in group] for group in batches(plan, 4)] == [["keyframes"] * 2, ["interpolate"] * 4]
    assert [len(group) for group in batches(plan, 3)] == [2, 3, 1]


def check_vae_work(log, plan, restore_detail):
    """Each frame encoded at most once per scale and decoded at most once; only frames a window gives
    are encoded, and nothing is encoded after the last window is planned."""
    encoded = {size: [key for kind, s, key in log if kind == "encode" and s == size] for size in (32, 16)}
    decoded = [key for kind, _, key in log if kind == "decode"]
    for keys in (*encoded.values(), decoded):
        assert len(keys) == len(set(keys))
    reread = {f for w in plan for f in w.given}
    assert len(encoded[32]) == len(reread & set(plan.inputs))  # generated frames keep their latents
    assert len(encoded[16]) == len(reread)  # the planner's latents of frames some window gives
    assert len(decoded) == plan.total - len(plan.inputs) + (len(reread & set(plan.inputs)) if restore_detail else 0)
    last_plan = max(n for n, (kind, _, _) in enumerate(log) if kind == "plan")
    assert all(kind != "encode" for kind, _, _ in log[last_plan:])


@pytest.mark.parametrize("restore_detail", [True, False])
def test_each_frame_is_encoded_and_decoded_at_most_once(model, restore_detail):
    plan = schedule_windows(40, [0, 16, 32], 9, overlap=3)  # keyframes, interpolation, then expansion
    assert {w.kind for w in plan} == {"keyframes", "interpolate", "extend forward"}
    log = []
    hook = model.planner.register_forward_hook(lambda *_: log.append(("plan", None, None)))
    try:
        run_schedule(plan, model, CountingVAE(log), images(3), Sampling(steps=1), restore_detail=restore_detail)
    finally:
        hook.remove()
    check_vae_work(log, plan, restore_detail)


@settings(max_examples=8, deadline=None)
@given(st.data())
def test_any_schedule_produces_every_frame_once(model, data):
    total = data.draw(st.integers(2, 30))
    window = data.draw(st.integers(3, model.config.max_frames))
    inputs = sorted(data.draw(st.sets(st.integers(0, total - 1), min_size=1, max_size=min(total - 1, 4))))
    plan = schedule_windows(total, inputs, window, data.draw(st.integers(1, window - 1)))
    log = []
    hook = model.planner.register_forward_hook(lambda *_: log.append(("plan", None, None)))
    img = images(len(inputs), seed=total)
    try:
        frames = run_schedule(plan, model, CountingVAE(log), img, Sampling(steps=1), batch=data.draw(st.integers(1, 5)))
    finally:
        hook.remove()
    assert frames.shape == (total, 3, 32, 32) and torch.equal(frames[inputs], img)
    check_vae_work(log, plan, restore_detail=True)


class CrossFade:
    """The two frames' cross-fade as an interpolator. A batch of windows rounds floats differently from one window
    (small linear layers pick other kernels, 3e-7), and the later levels' anchors are made from those frames: a
    deep interpolator amplifies that, and so does DIS, whose 8-bit input moves its flow by a pixel when a value
    crosses a step. A cross-fade passes the rounding on unamplified."""

    name = "cross-fade"

    def pair(self, first, last):
        return SimpleNamespace(at=lambda times: np.stack([(1 - t) * first + t * last for t in times]).astype(np.float32))


@pytest.mark.parametrize("anchor", ["none", "neighbours", "flow"])
def test_batched_windows_equal_windows_one_by_one(anchor):
    """Windows of one level sampled together get the noise they get alone (eta > 0 draws it at every step)."""
    model = live_tiny(anchor=anchor)
    plan = schedule_windows(33, [0, 16, 32], 9)
    planner_calls = count_calls(model.planner)
    sampling = Sampling(steps=3, guidance=2.0, eta=1.0, seed=7, fidelity=0.0)
    one_by_one = run_schedule(plan, model, TinyVAE(), images(3), sampling, batch=1, interpolator=CrossFade())
    assert len(planner_calls) == len(plan)
    batched = run_schedule(plan, model, TinyVAE(), images(3), sampling, batch=4, interpolator=CrossFade())
    assert len(planner_calls) == len(plan) + 2
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=0)


@settings(max_examples=6, deadline=None)
@given(st.data())
def test_cancel_is_asked_between_every_stage_of_every_window(model, data):
    """Cancel is honoured within one model pass: between two stop checks there is at most one stage's work
    (encoding, the planner, or one pass with its window's decoding), and a stop raised at any check ends the run."""
    total = data.draw(st.integers(2, 24))
    window = data.draw(st.integers(3, model.config.max_frames))
    inputs = sorted(data.draw(st.sets(st.integers(0, total - 1), min_size=1, max_size=min(total - 1, 3))))
    plan = schedule_windows(total, inputs, window, data.draw(st.integers(1, window - 1)))
    log = []

    def check():
        log.append(("check", None, None))
        return False

    hook = model.planner.register_forward_hook(lambda *_: log.append(("plan", None, None)))
    try:
        run_schedule(plan, model, CountingVAE(log), images(len(inputs)), Sampling(steps=2), hooks=Hooks(should_stop=check), batch=1)
        intervals, current = [], set()
        for kind, _, _ in log:
            if kind == "check":
                intervals.append(current)
                current = set()
            else:
                current.add(kind)
        intervals.append(current)
        assert not [i for i in intervals if len(i & {"encode", "plan", "decode"}) > 1], intervals
        checks = sum(kind == "check" for kind, _, _ in log)
        stop_at = data.draw(st.integers(1, checks))
        calls = []
        with pytest.raises(GenerationInterrupted):
            run_schedule(plan, model, TinyVAE(), images(len(inputs)), Sampling(steps=2), hooks=Hooks(should_stop=lambda: calls.append(1) or len(calls) == stop_at), batch=1)
        assert len(calls) == stop_at
    finally:
        hook.remove()


class FrameByFrame(CountingVAE):
    """A frame's latent whatever batch it is encoded in, as the autoencoders run on a CPU (vae.run_frames): a frame
    made in pixels is encoded later and in another batch than the anchor latent the latent path samples it as."""

    def encode(self, images):
        return torch.cat([super(FrameByFrame, self).encode(image[None]) for image in images])


@settings(max_examples=20, deadline=None)
@given(st.data())
def test_windows_made_in_pixels_encode_nothing_and_match_the_latent_path(data):
    """A window whose frames are its anchor's whatever the networks say (made_in_pixels: the default's calibration
    between given frames and past an end of two or more) runs no network and encodes nothing; a later window that
    gives one of its frames encodes that frame then. The video is the one the latent path makes."""
    model = kept_tiny()
    total = data.draw(st.integers(3, 24))
    window = data.draw(st.integers(3, model.config.max_frames))
    inputs = sorted(data.draw(st.sets(st.integers(0, total - 1), min_size=1, max_size=min(total - 1, 4))))
    plan = schedule_windows(total, inputs, window, data.draw(st.integers(1, window - 1)))
    sampling = Sampling(steps=2, seed=data.draw(st.integers(0, 2**31)))
    img = images(len(inputs), seed=total)
    pixel_windows = [w for w in plan if long_video.made_in_pixels(sampling, w.mask, model.config, True)]
    log, planner_calls = [], count_calls(model.planner)
    fast = run_schedule(plan, model, FrameByFrame(log), img, sampling, interpolator=Dis(), batch=1)
    assert len(planner_calls) == len(plan) - len(pixel_windows)
    latent_windows = [w for w in plan if w not in pixel_windows]
    given = {p for w in latent_windows for p in w.given}  # frames some latent window gives
    sampled = {p for w in latent_windows for p in w.generated}  # frames that keep the latent they were sampled as
    anchors = sum(len(w.generated) for w in latent_windows)  # the latents of the latent windows' anchors
    encoded = [kind for kind, _, _ in log if kind == "encode"]
    assert len(encoded) == len(given) + len(given - sampled) + anchors  # the planner's scale, then the DM's, once each
    assert len(log) - len(encoded) <= 2 * anchors  # decodes: D(z) and R(A) of the latent windows' generated frames
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(long_video, "made_in_pixels", lambda *args: False)
        slow = run_schedule(plan, model, FrameByFrame([]), img, sampling, interpolator=Dis(), batch=1)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=0)
    assert torch.equal(fast[inputs], img)


class Broken:
    """An interpolator whose frames at some times are not finite (a half-precision checkpoint overflowing)."""

    name = "broken"

    def __init__(self, bad: float, at: int):
        self.bad, self.bad_at = bad, at

    def pair(self, first, last):
        def at(times):
            frames = CrossFade().pair(first, last).at(times)
            frames[min(self.bad_at, len(frames) - 1)] = self.bad
            return frames
        return SimpleNamespace(at=at)


@settings(max_examples=10, deadline=None)
@given(st.sampled_from([float("nan"), float("inf"), -float("inf")]), st.integers(0, 6), st.booleans())
def test_an_interpolator_making_non_finite_frames_is_named_on_every_path(bad, at, restore_detail):
    """A window made in pixels takes the anchor's frames as they come, so they are checked where they are made:
    one line naming the interpolator and the fix, on the pixel path and on the latent path alike."""
    plan = schedule_windows(17, [0, 8, 16], 9)
    with pytest.raises(InputError, match=r"interpolator \(broken\) made NaN or infinite frames.*float32"):
        run_schedule(plan, kept_tiny(), TinyVAE(), images(3), Sampling(steps=1), restore_detail=restore_detail,
                     interpolator=Broken(bad, at))
