"""torch's thread count for one piece of work, restored afterwards.

Why: a label is measured at a fixed, recorded thread count, but the caller (a search that
trains afterwards, a test, a notebook) keeps its own; setting it without restoring it changed
the speed of whatever ran next.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` threads (``None``: 1, the measurement default)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n or 1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
