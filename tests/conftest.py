"""Shared test settings: deterministic, single-process-friendly torch."""

import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# Tests use tiny tensors, for which one thread is fastest and immune to a busy machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
