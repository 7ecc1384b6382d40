"""Measurement: timer, stopping rules, sampler, fingerprint, dataset store, op table."""

from lenna.measure.block_measure import Measurement, measure_block
from lenna.measure.config import MeasureConfig
from lenna.measure.fingerprint import fingerprint
from lenna.measure.reference import Calibration
from lenna.measure.rules import CIRule, Estimate, SeedRule, make_rule
from lenna.measure.sampler import Sampler, SampleSpec
from lenna.measure.store import Dataset

__all__ = [
    "CIRule",
    "Calibration",
    "Dataset",
    "Estimate",
    "MeasureConfig",
    "Measurement",
    "SampleSpec",
    "Sampler",
    "SeedRule",
    "fingerprint",
    "make_rule",
    "measure_block",
]
