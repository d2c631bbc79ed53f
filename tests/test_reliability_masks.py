"""Property tests of the frame-mask parser and builders: any input gives a consistent FrameMask or a
MaskError naming the problem — never another exception, never a long stall on a huge frame count."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mardini_core import masks
from mardini_core.errors import MaskError

MANY = settings(max_examples=1000, deadline=None)

# Anything a caller might pass where a count, an index or a position is expected.
ANYTHING = st.one_of(
    st.integers(-(2**66), 2**66),
    st.integers(-3, 40),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["first", "middle", "last", "x", "", "0", "-1"]),
    st.integers(-3, 40).map(np.int64),
    st.lists(st.integers(-3, 12), max_size=3),
)
PATTERNS = st.one_of(st.text(max_size=40), st.text(alphabet="xX. \t\n", max_size=40), st.text(alphabet="x.", max_size=20))


def check_consistent(mask: masks.FrameMask) -> None:
    assert mask.pattern == "".join("x" if g else "." for g in mask.given)
    assert len(mask.sources) == len(mask.given_indices)
    assert set(mask.given_indices) | set(mask.generated_indices) == set(range(mask.frames))
    assert mask.to_tensor(2).shape == (2, mask.frames)


@MANY
@given(pattern=PATTERNS)
def test_parser_accepts_exactly_x_and_dot(pattern):
    text = "".join(pattern.split())
    try:
        mask = masks.from_pattern(pattern)
    except MaskError as exc:
        bad = sorted(set(text) - set("xX."))
        assert bad and repr("".join(bad)) in str(exc), "the message names the invalid characters"
        return
    assert mask.pattern == text.replace("X", "x")
    check_consistent(mask)


@MANY
@given(pattern=PATTERNS, max_frames=st.one_of(st.none(), st.integers(-5, 40)), reference=st.booleans())
def test_validate_raises_only_mask_errors(pattern, max_frames, reference):
    try:
        mask = masks.from_pattern(pattern)
        assert mask.validate(max_frames, require_reference=reference) is mask
    except MaskError as exc:
        assert str(exc)
        return
    assert mask.frames > 0 and not all(mask.given)
    assert max_frames is None or mask.frames <= max_frames
    assert not reference or any(mask.given)


BUILDERS = {
    "from_indices": lambda a, b: masks.from_indices(a, b if isinstance(b, list) else [b]),
    "image_to_video": masks.image_to_video,
    "interpolation": masks.interpolation,
    "loop": lambda a, _b: masks.loop(a),
    "expansion": masks.expansion,
}


@MANY
@given(builder=st.sampled_from(sorted(BUILDERS)), first=ANYTHING, second=ANYTHING)
def test_builders_raise_only_mask_errors(builder, first, second):
    try:
        mask = BUILDERS[builder](first, second)
    except MaskError as exc:
        assert str(exc)
        return
    check_consistent(mask)
    assert 2 <= mask.frames <= masks.MAX_CLIP_FRAMES
    assert any(mask.given) or builder == "from_indices"  # an empty index list is refused later by validate()


@MANY
@given(task=st.one_of(st.sampled_from(masks.TASKS), st.text(max_size=8)), frames=ANYTHING, images=ANYTHING,
       position=ANYTHING, pattern=st.one_of(st.none(), PATTERNS))
def test_for_task_raises_only_mask_errors(task, frames, images, position, pattern):
    try:
        mask = masks.for_task(task, frames, images=images, position=position, pattern=pattern)
    except MaskError as exc:
        assert str(exc)
        return
    check_consistent(mask)
    assert task in masks.TASKS
    if task != "custom":
        assert mask.frames == frames and mask.validate() is mask


@pytest.mark.parametrize("frames", [masks.MAX_CLIP_FRAMES + 1, 10**9, 2**62])
def test_huge_frame_counts_fail_fast(frames):
    """A typo such as --frames 1000000000 used to build a billion-entry list (minutes, gigabytes)."""
    for build in (lambda: masks.image_to_video(frames), lambda: masks.interpolation(frames), lambda: masks.expansion(frames, 1)):
        with pytest.raises(MaskError, match="too long"):
            build()
