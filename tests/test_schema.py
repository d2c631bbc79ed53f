"""mardini_core/schema.py: declared ranges, checked where values are parsed (config files, --set, flags,
torchrun's environment), each failure one line naming the value."""
import argparse
import contextlib
import dataclasses
import io
import math

import pytest
from hypothesis import given, settings, strategies as st

from mardini_core.cli import build_parser, chosen_command
from mardini_core.errors import ConfigError
from mardini_core.schema import flag
from mardini_core.training.distributed import launch_env
from mardini_core.vae.distill import DistillConfig

# (command words, flag, its declared bounds) for numeric flags that reach torch or allocate
FLAGS = [
    (["train-vae", "--data", "x", "--out", "y"], f"--{f.name.replace('_', '-')}", f.metadata["low"], f.metadata["high"], f.metadata["above"])
    for f in dataclasses.fields(DistillConfig)
] + [
    (["train-vae", "--data", "x", "--out", "y"], "--threads", 0, 1024, False),
    (["train", "--config", "x", "--out", "y"], "--threads", 0, 1024, False),
    (["encode", "--data", "x", "--out", "y"], "--threads", 0, 1024, False),
    (["bench"], "--threads", 1, 1024, False),
    (["vae-psnr", "--data", "x"], "--size", 8, 4096, False),
    (["vae-psnr", "--data", "x"], "--per-segment", 1, 1000, False),
]


def bad_values(low, high, above):
    return st.sampled_from([v for v in (low - 1 if not above else low, high * 2 + 1 if math.isfinite(high) else None,
                                        "nan", "inf", "-inf", "x", "1e999") if v is not None])


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_every_bounded_flag_refuses_what_lies_outside_its_range_by_name(data):
    words, name, low, high, above = data.draw(st.sampled_from(FLAGS))
    value = data.draw(bad_values(low, high, above))
    argv = [*words, name, str(value)]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_:
        build_parser(chosen_command(argv)).parse_args(argv)
    assert exit_.value.code == 2 and f"argument {name}:" in err.getvalue() and "Traceback" not in err.getvalue()


@settings(max_examples=60, deadline=None)
@given(low=st.integers(-5, 5), span=st.integers(0, 10), value=st.one_of(st.integers(-20, 30), st.floats(allow_nan=True)))
def test_a_flag_accepts_exactly_its_range(low, span, value):
    parse = flag(float, low, low + span)
    inside = isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= low + span
    if inside:
        assert parse(repr(value)) == float(value)
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(repr(value))


def test_distillation_settings_that_cannot_train_are_refused():
    for bad in (dict(bank=0), dict(crop=0), dict(short_side=16), dict(lr=float("nan")), dict(every=0), dict(steps=-1),
                dict(batch=0), dict(crop=60)):
        with pytest.raises(ConfigError):
            DistillConfig(**bad)
    DistillConfig(crop=64, short_side=64)


@pytest.mark.parametrize("text, ok", [("0", True), ("3", True), ("abc", False), ("-1", False), ("", False), ("1.5", False)])
def test_torchruns_variables_are_numbers_or_one_line(monkeypatch, text, ok):
    monkeypatch.setenv("RANK", text)
    if ok:
        assert launch_env("RANK", 0) == int(text)
    else:
        with pytest.raises(ConfigError, match="RANK"):
            launch_env("RANK", 0)
