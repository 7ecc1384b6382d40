"""Bounds on numbers a user passes, checked once where they enter.

Why: past these, the libraries underneath fail with tracebacks of their own (numpy refuses a
negative seed, torch and LightGBM a large one; libgomp runs out of memory creating 100,000
threads) or a run plans work it can never finish.
"""

MAX_SEED = 2**31 - 1  # LightGBM's seed is a C int; numpy and torch take this range too
MAX_THREADS = 1024
MAX_SAMPLES = 10_000_000  # rows one `lenna measure` may be asked for: years of measuring
