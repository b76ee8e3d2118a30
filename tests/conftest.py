"""Shared test set-up: slow tests are opt-in, Triton runs in its interpreter without CUDA, every test gets its
own AUDIOREP_HOME."""

from __future__ import annotations

import os

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_configure(config):
    # Without CUDA the Triton kernels run in Triton's CPU interpreter; triton reads the variable when a kernel
    # is defined, so it is set here, before any test module imports audiorep's kernels.
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    run_slow = config.getoption("--runslow") or os.environ.get("AUDIOREP_SLOW") == "1"
    has_cuda = torch.cuda.is_available()
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow or AUDIOREP_SLOW=1")
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never read or write the user's real weights cache, never touch the network by accident."""
    monkeypatch.setenv("AUDIOREP_HOME", str(tmp_path_factory.mktemp("audiorep_home")))
    monkeypatch.setenv("AUDIOREP_OFFLINE", "1")
    # audiorep passes the hub's cache folder and endpoint to huggingface_hub per call: an empty cache of its own
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf_hub_cache")))
    monkeypatch.delenv("HF_ENDPOINT", raising=False)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


TINY_ENCODER = dict(hidden_size=32, num_heads=2, intermediate_size=64, num_layers=2)  # ~25k parameters


def make_tiny_model(**overrides):
    """A random-init Mockingjay-family encoder small enough for CPU tests (``TINY_ENCODER`` + ``overrides``)."""
    from audiorep.models.mockingjay import MockingjayConfig, MockingjayModel

    return MockingjayModel(MockingjayConfig(**{**TINY_ENCODER, **overrides}))


@pytest.fixture
def tiny_model():
    """The shared tiny-model factory: ``tiny_model(**config_overrides) -> MockingjayModel`` (random init)."""
    return make_tiny_model
