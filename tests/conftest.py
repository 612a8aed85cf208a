"""Shared test settings.

Hypothesis profiles: ``dev`` (default) and ``ci`` (derandomised so a CI failure is
reproducible from its log; no deadline because torch's first calls are slow on CPU).
"""
import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci", deadline=None, derandomize=True, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# one intra-op thread: the models under test are tiny, and a 2-thread OpenMP pool spin-waits on a
# busy machine (measured 5-100x slower with identical results)
torch.set_num_threads(1)


@pytest.fixture
def one_thread():
    """Torch on one intra-op thread during a test (restored after).

    Tests that train tiny models use it (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    one thread is fastest for them, and on a shared 2-core machine a 2-thread OpenMP pool
    spin-waits, which made such tests 5-100x slower (measured) with identical results.
    """
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)
