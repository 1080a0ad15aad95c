"""Tests of `pmix_jax.models.layers.Dropout`, the hash-mask inverted dropout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pmix_jax.models.layers import Dropout


def apply_dropout(x, rate, key=None, deterministic=False):
  rngs = {} if key is None else {'dropout': key}
  return Dropout(rate).apply({}, x, deterministic=deterministic, rngs=rngs)


def test_deterministic_is_identity():
  """deterministic=True returns the input unchanged (no RNG needed)."""
  x = jax.random.normal(jax.random.key(0), (3, 5, 7))
  np.testing.assert_array_equal(apply_dropout(x, 0.5, deterministic=True), x)


def test_rate_zero_is_identity():
  """rate 0 in training returns the input unchanged."""
  x = jax.random.normal(jax.random.key(0), (3, 5, 7))
  np.testing.assert_array_equal(apply_dropout(x, 0.0, jax.random.key(1)), x)


@pytest.mark.parametrize('rate', [0.1, 0.3, 0.5, 0.9])
def test_kept_fraction_and_scale(rate):
  """About 1 - rate of a large tensor is kept, and kept values are scaled by 1/(1-rate)."""
  x = jnp.ones((200, 1000))
  y = np.asarray(apply_dropout(x, rate, jax.random.key(3)))
  kept = y != 0
  assert abs(kept.mean() - (1.0 - rate)) < 0.01
  np.testing.assert_allclose(y[kept], 1.0 / (1.0 - rate), rtol=1e-6)


@pytest.mark.parametrize('rate', [0.2, 0.5])
def test_mean_preserved(rate):
  """The output mean is close to the input mean (inverted dropout is unbiased)."""
  x = 1.0 + jax.random.uniform(jax.random.key(0), (200_000,))
  y = apply_dropout(x, rate, jax.random.key(5))
  assert abs(float(y.mean()) - float(x.mean())) < 0.01 * float(x.mean())


def test_keys_change_mask():
  """Different dropout keys give different masks; the same key gives the same mask."""
  x = jnp.ones((4, 1000))
  a = apply_dropout(x, 0.5, jax.random.key(0)) != 0
  b = apply_dropout(x, 0.5, jax.random.key(0)) != 0
  c = apply_dropout(x, 0.5, jax.random.key(1)) != 0
  np.testing.assert_array_equal(a, b)
  assert (a != c).mean() > 0.3  # Independent masks disagree on about half the elements.


def test_mask_not_periodic_across_rows():
  """Rows of one mask are not copies of each other (the index hash covers every element)."""
  mask = np.asarray(apply_dropout(jnp.ones((4, 1000)), 0.5, jax.random.key(2)) != 0)
  for i in range(1, 4):
    assert (mask[0] != mask[i]).mean() > 0.3


def test_dtype_preserved():
  """The output keeps the input dtype."""
  x = jnp.ones((8, 8), jnp.bfloat16)
  assert apply_dropout(x, 0.5, jax.random.key(0)).dtype == jnp.bfloat16
