"""Architecture search: data, supernet training and derivation.

The three entry points a script needs: :class:`SearchConfig`, :func:`run_search` and
:func:`evaluate_arch` (measure and train a derived network).
"""

from lenna.search.config import SearchConfig
from lenna.search.run import run_search
from lenna.search.verify import evaluate_arch

__all__ = ["SearchConfig", "evaluate_arch", "run_search"]
