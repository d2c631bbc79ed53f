"""Shared test fixtures: seeding, one-thread runs, and the location of ../shared (real clips, TAEF2 weights)."""
import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings
from comfy_fakes import install as install_comfy_fakes
from support import one_thread

from mardini_core import data

# pytest imports the repository root's __init__.py (the ComfyUI entry point) as a package: give it
# the small ComfyUI fakes first, so any single test file runs on its own, as in the full suite.
install_comfy_fakes()

# Hypothesis in CI (CI=true, as GitHub Actions sets it): no per-example deadline on a shared 2-core
# runner, the same examples on every run (a red CI is reproducible, never a draw), no example database.
# Tests keep their own max_examples (200 for property classes); a profile only fills what they leave.
settings.register_profile("ci", deadline=None, derandomize=True, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI", "").lower() == "true" else "default"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def shared_dir() -> Path:
    return data.shared_dir()


@pytest.fixture
def single_thread():
    """One intra-op thread: on a shared 2-core machine, two spinning threads run many times slower."""
    with one_thread():
        yield


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder shared by one test module's files, its tests run on one thread."""
    with one_thread():
        yield tmp_path_factory.mktemp("work")
