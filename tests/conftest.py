"""Shared fixtures."""

import pytest
import torch


@pytest.fixture
def single_thread():
    """Tiny tensors run fastest on one thread; two threads spin badly on a busy 2-core box.

    Opt-in (``pytestmark = pytest.mark.usefixtures("single_thread")``) so timing tests that
    care about the thread count are not affected.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
