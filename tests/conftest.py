"""Shared fixtures and hypothesis profiles.

Profiles: "ci" (the default: derandomised, so every run of the README's test command draws the same
examples and a run is reproducible from its log) and "dev" (random examples, to explore by hand:
``HYPOTHESIS_PROFILE=dev python -m pytest``). Both keep example counts small for a 2-core machine and no
deadline (TensorFlow's first call in a process traces functions and is slow).
"""

pytest_plugins = ["pytester"]  # tests/test_parity_harness.py runs a user's test file through the plugin

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("dev", deadline=None, max_examples=10,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", parent=settings.get_profile("dev"), derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def small_spec(**options):
    """A small U-Net spec for fast tests (options override the defaults here)."""
    from segparity.networks.specs import make_spec

    base = dict(in_channels=3, num_classes=3, base_channels=4, depth=2)
    base.update(options)
    return make_spec("unet", **base)

