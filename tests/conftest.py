import os

import jax
import pytest
from hypothesis import settings

# Strict rank promotion catches silent broadcasting bugs; tests that compare numbers enable
# float64 locally with `jax.enable_x64(True)`.
jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile("ci", deadline=None, max_examples=20, derandomize=True)
settings.register_profile("dev", deadline=None, max_examples=20)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield
