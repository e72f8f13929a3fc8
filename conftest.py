"""Test-session configuration shared by tests/ and the doctests of jaxreg/ (equinox-style strictness)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

# The command's persistent compilation cache stays out of the user's home during the tests (a test turns it on).
os.environ.setdefault("JAXREG_CACHE_DIR", "off")

# Strict dtype promotion: an implicit float32 + bfloat16 or int + float mix is a bug we want to see.
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    doctest_namespace.update({"jax": jax, "jnp": jnp, "np": np})
