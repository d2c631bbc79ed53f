import dataclasses
import math

import pytest
import torch

from mardini_core import bench
from mardini_core.commands.bench import _add_cpu_ratios


@pytest.mark.slow
def test_bench_row_on_cpu_counts_flops_and_phases():
    job = bench.Job("tiny/T", size=64, frames=5, given=1, steps=2, dtype="fp32", backend="sdpa")
    row = bench.run(job, torch.device("cpu"), repeats=1)
    assert row.planner_s > 0 and row.generator_s > 0
    assert abs(row.total_s - row.planner_s - row.generator_s) < 1e-9
    assert row.seconds_per_frame == row.total_s / 4
    assert row.mfu is None  # no known peak for a CPU
    # guidance doubles the generator's batch: more FLOPs than without it
    flops_cfg = row.tflops
    no_cfg = bench.run(dataclasses.replace(job, guidance=1.0), torch.device("cpu"), repeats=1).tflops
    assert flops_cfg > 1.5 * no_cfg


def test_cpu_ratio_is_relative_to_math_reference():
    rows = [
        {"suite": "cpu", "preset": "p", "backend": "math", "total_s": 2.0},
        {"suite": "cpu", "preset": "p", "backend": "sdpa", "total_s": 1.0},
    ]
    _add_cpu_ratios(rows)
    assert rows[0]["time_vs_reference"] == 1.0 and rows[1]["time_vs_reference"] == 0.5


def test_identity_attention_rows_compare_fast_and_dense():
    rows = bench.identity_attention_rows(torch.device("cpu"), torch.float32)
    assert [r["impl"] for r in rows] == ["gather (fast)", "dense mask"]
    assert [(r["frames"], r["tokens_per_frame"], r["peak_memory_gb"]) for r in rows] == [(9, 64, None)] * 2  # CPU shape, no CUDA peak
    assert all(math.isfinite(r["ms"]) and 0 < r["ms"] < 5_000 for r in rows)  # a mean over 5 calls, in milliseconds
