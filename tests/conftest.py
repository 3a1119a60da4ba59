"""Fixtures shared by the test files."""

import pytest
import torch

from lossviz import train as T


@pytest.fixture
def one_thread():
    """One torch thread (small models on a busy 2-core machine run fastest single-threaded) and an
    empty result cache, restored afterwards."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    T.clear_cache()
    yield
    T.clear_cache()
    torch.set_num_threads(old)
