"""Declared ranges for settings: one declaration per value, checked where the value is parsed.

A dataclass field made with `ranged(default, low, high)` carries its range; `check_ranges(obj)` checks
every such field of a settings object (and of the settings inside it) and is called where the object
is built, and `flag(low, high)` is the argparse type of a command-line flag. Every failure is one
ConfigError naming the value, its range and what was given, so nothing out of range or non-finite
reaches torch.
"""
from __future__ import annotations

import argparse
import dataclasses
import math

from .errors import ConfigError

SEED_MAX = 2**63 - 1  # a seed of a settings file or flag (torch.Generator.manual_seed's range, non-negative)


def ranged(default, low: float, high: float = math.inf, *, above: bool = False):
    """A settings field with its allowed range: low <= value <= high (low < value with `above`), finite."""
    return dataclasses.field(default=default, metadata={"low": low, "high": high, "above": above})


def finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def describe(low: float, high: float, above: bool) -> str:
    return f"{'>' if above else '>='} {low:g}" + (f" and <= {high:,}".replace(",", "_") if math.isfinite(high) else "")


def within(value, low: float, high: float, above: bool) -> bool:
    """A finite number in the declared range."""
    return finite_number(value) and low <= value <= high and not (above and value == low)


def check_value(where: str, name: str, value, low: float, high: float = math.inf, above: bool = False) -> None:
    if not within(value, low, high, above):
        raise ConfigError(f"[{where}] {name} must be a finite number {describe(low, high, above)}, got {value!r}")


def check_ranges(obj, where: str, skip: tuple[str, ...] = ()) -> None:
    """Every `ranged` field of a settings dataclass (and of the dataclasses and tuples of them inside it),
    but the fields named in `skip` (checked by their owner, with messages of their own)."""
    for f in dataclasses.fields(obj):
        if f.name in skip:
            continue
        value = getattr(obj, f.name)
        if "low" in f.metadata:
            check_value(where, f.name, value, f.metadata["low"], f.metadata["high"], f.metadata["above"])
        elif dataclasses.is_dataclass(value):
            check_ranges(value, f.name)
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            for i, item in enumerate(value):
                check_ranges(item, f"{f.name} #{i + 1}")


def flag(kind: type, low: float, high: float = math.inf, above: bool = False):
    """The argparse type of a numeric flag within a range: a bad value is argparse's one-line usage error."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if not within(value, low, high, above):
            raise argparse.ArgumentTypeError(f"must be {describe(low, high, above)}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def field_flag(f: dataclasses.Field):
    """The argparse type of a settings field: its declared range where it has one."""
    kind = type(f.default)
    return flag(kind, f.metadata["low"], f.metadata["high"], f.metadata["above"]) if "low" in f.metadata else kind
