import dataclasses
import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st

from mardini_core import bench
from mardini_core.cli import build_parser, main
from mardini_core.commands.bench import chosen_jobs, parse_size
from mardini_core.config import preset
from mardini_core.errors import InputError

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]
TINY = bench.Job("tiny/T", 64, 64, 5, steps=2, dtype="fp32")


def parsed(*argv: str):
    return build_parser("bench").parse_args(["bench", *argv])


@settings(max_examples=200)
@given(st.integers(1, 8192), st.integers(1, 8192), st.booleans())
def test_size_reads_width_by_height_or_one_side(width, height, square):
    assert parse_size(str(width) if square else f"{width}x{height}") == ((width, width) if square else (width, height))


@pytest.mark.parametrize("size", ["", "x64", "64x", "64*64", "-64", "0x64", "9000"])
def test_bad_size_is_one_line_naming_the_form(size):
    with pytest.raises(InputError, match="--size"):
        parse_size(size)


@pytest.mark.parametrize("argv, message", [
    (["--preset", "tiny/T", "--size", "100"], "multiple of 32 .* try 96x96"),
    (["--preset", "nope"], "unknown preset"),
    (["--size", "64"], "needs --preset"),
    (["--preset", "tiny/T", "--frames", "5", "--given", "x..x"], "has 4 frames but --frames is 5"),
    (["--preset", "tiny/T", "--frames", "5", "--given", "5"], "expansion needs between 1 and 4"),
    (["--preset", "tiny/T", "--steps", "0"], "--steps must be at least 1"),
    (["--preset", "tiny/T", "--fidelity", "2"], "--fidelity must lie in 0..1"),
    (["--preset", "tiny/T", "--repeats", "0"], "--repeats must be at least 1"),
])
def test_bad_job_flags_are_one_line_on_stderr(argv, message, capsys):
    assert main(["bench", "--device", "cpu", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert __import__("re").search(message, err), err


def test_job_from_flags_is_one_row_with_tasks_as_masks():
    suites, jobs = chosen_jobs(parsed("--preset", "tiny/ST", "--size", "96x64", "--frames", "7", "--given", "interpolate",
                                      "--steps", "3", "--compile"), CPU)
    assert suites == ["custom", "identity"] and len(jobs) == 1
    job = jobs[0][1]
    assert (job.preset, job.width, job.height, job.frames, job.steps, job.compile, job.dtype) == ("tiny/ST", 96, 64, 7, 3, True, "fp32")
    assert job.mask().pattern == "x.....x" and job.guidance == 1.0  # both ends given: the paper's guidance is off
    i2v = chosen_jobs(parsed("--preset", "tiny/T", "--given", "i2v", "--frames", "5"), CPU)[1][0][1]
    assert i2v.mask().pattern == "x...." and i2v.guidance == 2.5
    assert chosen_jobs(parsed("--preset", "tiny/T", "--given", "2", "--frames", "5"), CPU)[1][0][1].mask().pattern == "xx..."


def test_suite_flags_replace_fields_and_reduced_keeps_the_paper_figure():
    _, jobs = chosen_jobs(parsed("--suite", "table2", "--reduced", "--steps", "2"), CPU)
    full = bench.suites()["table2"]
    assert len(jobs) == len(full)
    for (_, job), paper_job in zip(jobs, full):
        assert job.steps == 2 and job.frames == paper_job.frames and job.preset.startswith("small/")
        assert job.width == paper_job.width // 8 and job.paper == bench.paper_figure(paper_job) != ""
    assert "6.05 s, 42.57 G" in jobs[0][1].paper  # Table 2: L/T, 13 frames (1 given) at 512, one A100


def test_random_model_does_real_work_and_is_seeded():
    a, b = bench.random_model(TINY, CPU), bench.random_model(TINY, CPU)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name
        assert p.abs().sum() > 0, f"{name} is all zeros: AdaLN would skip every block"


def count(job: bench.Job) -> float:
    job = bench.check_job(job)
    model = bench.random_model(job, CPU)
    vae = bench.random_vae(model.config.latent_channels, CPU, torch.float32)
    return bench.count_flops(model, vae, job, bench.Inputs.of(job, CPU))[0]


def test_flops_follow_the_cached_path_reference_frames_cost_nothing_per_step(single_thread):
    job = dataclasses.replace(TINY, frames=6, guidance=1.0)
    flops = {(given, steps): count(dataclasses.replace(job, given=given, steps=steps)) for given in ("1", "4") for steps in (1, 2)}
    per_step = {given: flops[given, 2] - flops[given, 1] for given in ("1", "4")}
    assert per_step["4"] > 0
    # 4 given frames leave 2 of 6 to compute at every step, 1 given leaves 5: the cache removes the rest
    assert per_step["4"] < 0.6 * per_step["1"]
    assert flops["4", 2] < flops["1", 2]
    # fidelity 1 stops after the first step: the FLOPs of a one-step run, whatever the steps asked
    assert count(dataclasses.replace(job, given="1", steps=2, fidelity=1.0)) == pytest.approx(flops["1", 1], rel=1e-6)


def test_identity_rows_use_the_generator_shapes_of_the_job(single_thread):
    job = bench.check_job(dataclasses.replace(TINY, preset="tiny/ST", width=96, height=64, frames=4, given="i2v"))
    g = preset("tiny/ST").generator
    rows = bench.identity_attention_rows(job, CPU, calls=2)
    assert [r["impl"] for r in rows] == ["gather (fast)", "dense mask"]
    for r in rows:
        assert r["tokens_per_frame"] == (96 // 8 // g.patch) * (64 // 8 // g.patch)
        assert (r["heads"], r["head_dim"], r["frames"], r["temporal"]) == (g.heads, g.hidden // g.heads, 4, False)
        assert r["batch"] == 2  # i2v guidance doubles the batch
        assert 0 < r["ms"]["min"] <= r["ms"]["median"] <= r["ms"]["max"] and math.isfinite(r["ms"]["max"])


@settings(max_examples=200)
@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=9))
def test_spread_is_ordered(values):
    s = bench.Spread.of(values)
    assert s.min <= s.median <= s.max and s.min == min(values) and s.max == max(values)


@pytest.mark.slow
def test_row_spreads_phases_and_mfu(single_thread):
    row = bench.run(TINY, CPU, repeats=3)
    for spread in (row.total_s, row.model_s, row.total_matmul_times, row.model_matmul_times):
        assert 0 < spread.min <= spread.median <= spread.max
    assert 0 < row.planner_s < row.model_s.max and row.vae_s > 0
    assert row.model_tflop > 0 and row.vae_tflop > 0 and row.peak_tflops > 0
    assert 0 < row.mfu < 1 and row.mfu_datasheet is None  # no datasheet for a CPU
    assert 0 < row.model_floor_share < 1.5  # the model's FLOPs at the matmul's rate over its own time
    assert row.compiled == "no"


@pytest.mark.slow
def test_gpu_script_small_mode_writes_one_json_report(tmp_path):
    report = tmp_path / "out" / "bench.json"
    env = {**os.environ, "SMALL": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "benchmarks/gpu.sh", str(report)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(report.read_text())
    assert data["small"] is True and data["commands"]
    ran = [c for c in data["commands"] if c["exit"] == 0]
    assert ran, data
    rows = [r for c in ran for r in c["bench"]["rows"]]
    assert any("6.05 s, 42.57 G" in r["paper"] for r in rows)
    assert all(r["preset"].startswith(("small/", "tiny/")) for r in rows)


def test_anchor_suite_times_each_interpolator_per_generated_frame(single_thread, capsys):
    """DIS, RIFE fast and RIFE best at the given size: the ensemble does four times RIFE's work per frame."""
    assert main(["bench", "--suite", "anchor", "--size", "64x64", "--frames", "4", "--repeats", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["anchor"]
    assert [(r["interpolator"], r["quality"]) for r in rows] == list(bench.ANCHOR_CHOICES)
    dis, fast, best = rows
    assert all(r["frames"] == 2 and (r["width"], r["height"]) == (64, 64) and r["seconds_per_frame"] > 0 for r in rows)
    assert dis["gflop_per_frame"] == 0 and dis["floor_share"] is None
    assert fast["gflop_per_frame"] > 0 and best["gflop_per_frame"] == pytest.approx(4 * fast["gflop_per_frame"], rel=0.01)
    assert 0 < fast["floor_share"] < 2
