"""Test settings: seeded, CPU, reproducible property tests, one thread.

The tests use small tensors, for which one thread is fastest; and OpenMP threads that
spin while another process holds the core slow a shared machine down many times over.
Subprocesses the tests start inherit ``OMP_NUM_THREADS``.
"""

import os

import torch
from hypothesis import settings

os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

settings.register_profile("tbptt", derandomize=True, database=None, deadline=None)
settings.load_profile("tbptt")
