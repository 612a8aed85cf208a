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

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
