"""LENNA: measure, predict and search for latency on your own hardware."""

from importlib.metadata import PackageNotFoundError, version

from lenna.errors import InputError
from lenna.measure import measure_block
from lenna.space import Block, SearchSpace, encode, get_space, list_spaces, probabilities

try:
    __version__ = version("lenna")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

__all__ = [
    "Block",
    "InputError",
    "SearchSpace",
    "__version__",
    "encode",
    "get_space",
    "list_spaces",
    "measure_block",
    "probabilities",
]
