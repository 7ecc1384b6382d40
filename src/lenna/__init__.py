"""LENNA: measure, predict and search for latency on your own hardware."""

from lenna._version import __version__
from lenna.errors import InputError
from lenna.measure import Calibration, Dataset, measure_block
from lenna.predict import load_predictor
from lenna.space import Block, SearchSpace, encode, get_space, list_spaces, probabilities

__all__ = [
    "Block",
    "Calibration",
    "Dataset",
    "InputError",
    "SearchSpace",
    "__version__",
    "encode",
    "get_space",
    "list_spaces",
    "load_predictor",
    "measure_block",
    "probabilities",
]
