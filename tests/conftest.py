"""Shared test fixtures: seeding, one-thread runs, and the location of ../shared (real clips, TAEF2 weights)."""
from pathlib import Path

import pytest
import torch
from comfy_fakes import install as install_comfy_fakes
from support import one_thread

from mardini_core import data

# pytest imports the repository root's __init__.py (the ComfyUI entry point) as a package: give it
# the small ComfyUI fakes first, so any single test file runs on its own, as in the full suite.
install_comfy_fakes()


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
