import pytest
import torch
from hypothesis import given, strategies as st

from mardini_core import masks
from mardini_core.errors import MaskError
from mardini_core.masks import FrameMask


@pytest.mark.parametrize(
    "mask,pattern,sources",
    [
        (masks.image_to_video(9), "x........", (0,)),
        (masks.image_to_video(9, "middle"), "....x....", (0,)),
        (masks.image_to_video(9, "last"), "........x", (0,)),
        (masks.image_to_video(5, 2), "..x..", (0,)),
        (masks.interpolation(9), "x.......x", (0, 1)),
        (masks.interpolation(9, images=3), "x...x...x", (0, 1, 2)),
        (masks.loop(6), "x....x", (0, 0)),
        (masks.expansion(7, 3), "xxx....", (0, 1, 2)),
        (masks.from_indices(6, [1, -1]), ".x...x", (0, 1)),
        (masks.from_indices(4, torch.tensor([0, 3]).numpy()), "x..x", (0, 1)),
        (masks.from_pattern(" x..X. "), "x..x.", (0, 1)),
    ],
)
def test_builders(mask, pattern, sources):
    assert mask.pattern == str(mask) == pattern
    assert mask.sources == sources
    assert mask.frames == len(pattern)
    assert mask.given_indices == tuple(i for i, c in enumerate(pattern) if c == "x")
    assert mask.generated_indices == tuple(i for i, c in enumerate(pattern) if c == ".")
    assert mask.validate(max_frames=len(pattern)) is mask


def test_loop_needs_one_image_interpolation_two():
    assert masks.loop(9).images_needed == 1
    assert masks.interpolation(9).images_needed == 2


def test_to_tensor_marks_generated_frames():
    masked = masks.from_pattern("x..x").to_tensor(batch=2)
    assert masked.dtype == torch.bool and masked.shape == (2, 4)
    assert masked.tolist() == [[False, True, True, False]] * 2


def test_for_task_matches_builders():
    assert masks.for_task("i2v", 9, position="last") == masks.image_to_video(9, "last")
    assert masks.for_task("interpolate", 9, images=4) == masks.interpolation(9, 4)
    assert masks.for_task("interpolate", 9, images=1) == masks.interpolation(9)  # one image still asks for two
    assert masks.for_task("loop", 9) == masks.loop(9)
    assert masks.for_task("expand", 9, images=2) == masks.expansion(9, 2)
    assert masks.for_task("custom", 0, pattern="x.x") == masks.from_pattern("x.x")


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: masks.from_pattern("xxxx").validate(), "no frame to generate"),
        (lambda: masks.from_pattern("....").validate(), "no reference frame"),
        (lambda: masks.from_pattern("").validate(), "empty"),
        (lambda: masks.from_pattern("x" + "." * 9).validate(max_frames=9), "exceeds the model's window of 9"),
        (lambda: masks.from_pattern("x..o."), "invalid characters 'o'"),
        (lambda: masks.from_indices(5, [5]), "not a frame of a 5-frame clip; use an integer in 0..4"),
        (lambda: masks.from_indices(5, [-6]), "not a frame of a 5-frame clip; use an integer in 0..4"),
        (lambda: masks.from_indices(5, [1.0]), "not a frame of a 5-frame clip; use an integer in 0..4"),
        (lambda: masks.image_to_video(5, "centre"), "unknown; use one of first, middle, last"),
        (lambda: masks.image_to_video(5, 7), "not a frame of a 5-frame clip; use an integer in 0..4"),
        (lambda: masks.interpolation(2), "at least 3 frames"),
        (lambda: masks.interpolation(5, images=5), "between 2 and 4 images"),
        (lambda: masks.expansion(5, 5), "between 1 and 4 given frames"),
        (lambda: masks.expansion(5, 0), "between 1 and 4 given frames"),
        (lambda: masks.for_task("custom", 9), "needs a frame pattern"),
        (lambda: masks.for_task("zoom", 9), "unknown task 'zoom'"),
        (lambda: FrameMask((True, False), sources=(0, 1)), "2 image sources"),
    ],
)
def test_invalid_masks_explain_themselves(make, message):
    with pytest.raises(MaskError, match=message):
        make()


def test_unconditional_mask_allowed_when_reference_not_required():
    assert masks.from_pattern("....").validate(require_reference=False).frames == 4


@given(st.text(alphabet="x.", min_size=2, max_size=40))
def test_pattern_round_trip(pattern):
    mask = masks.from_pattern(pattern)
    assert mask.pattern == pattern
    assert masks.from_indices(len(pattern), mask.given_indices) == mask
    assert mask.to_tensor()[0].tolist() == [c == "." for c in pattern]
