"""Shared test settings.

Hypothesis profiles: ``dev`` (default) and ``ci`` (derandomised so a CI failure is
reproducible from its log; no deadline because torch's first calls are slow on CPU).
"""
import os

import torch
from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci", deadline=None, derandomize=True, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# one intra-op thread for the whole suite: the models under test are tiny, and a 2-thread OpenMP
# pool spin-waits on a busy machine (measured 5-100x slower with identical results). Experiments
# that change the thread count restore it on exit.
torch.set_num_threads(1)
