"""Bounds on numbers a user passes, checked once where they enter.

Why: past these, the libraries underneath fail with tracebacks of their own (numpy refuses a
negative seed, torch one past 64 bits; libgomp runs out of memory creating 100,000 threads) or
a run plans work it can never finish.
"""

MAX_SEED = 2**63 - 1  # numpy and torch take every seed up to here (LightGBM's is reduced)
MAX_THREADS = 1024
MAX_SAMPLES = 10_000_000  # rows one `lenna measure` may be asked for: years of measuring
MAX_CELLS = 1000  # cells in one network (DARTS uses 8–20); a million builds for minutes
