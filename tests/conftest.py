"""Shared test settings: deterministic, single-process-friendly torch."""

import os
import tempfile

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# multi-coil runs cache their coil maps on disk (--maps-cache auto): not in the user's ~/.cache
os.environ.setdefault("MRI_N2N_CACHE", tempfile.mkdtemp(prefix="mri_n2n_test_cache_"))
# Tests use tiny tensors, for which one thread is fastest and immune to a busy machine.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
