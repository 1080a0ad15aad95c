"""Building blocks shared by the models."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pmix_jax.errors import ConfigError


def _mix32(x: jax.Array) -> jax.Array:
  """A 32-bit integer finaliser (lowbias32): every input bit affects every output bit."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


class Dropout(nn.Module):
  """Inverted dropout whose mask is a counter-based hash of the element index.

  Same contract as `nn.Dropout` (draws from the 'dropout' RNG stream), but the mask costs a
  few integer operations per element: threefry bits cost about 10 ns per element on this CPU,
  which made dropout most of a mixer's training step. The mask depends on the global element
  index only, so it is the same whatever the sharding of `x`.
  """
  rate: float

  @nn.compact
  def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return x
    seed = jax.random.bits(self.make_rng('dropout'), (2,), jnp.uint32)
    index = jax.lax.iota(jnp.uint32, int(np.prod(x.shape))).reshape(x.shape)
    keep = _mix32(_mix32(index ^ seed[0]) + seed[1]) >= jnp.uint32(
        min(int(self.rate * 2.0**32), 2**32 - 1))
    return jnp.where(keep, x / (1.0 - self.rate), 0.0).astype(x.dtype)


def left_pad(inputs: jax.Array, max_len: int, model: str) -> jax.Array:
  """`inputs` `[B, L, F]` left-padded with zeros to `[B, max_len, F]`; L > max_len is an
  error (position-specific weights and draws are aligned to the latest behavior)."""
  inputs = jnp.asarray(inputs)
  if inputs.shape[1] > max_len:
    raise ConfigError(f'{model} got sequences of length {inputs.shape[1]} > max_len {max_len}')
  return jnp.pad(inputs, [(0, 0), (max_len - inputs.shape[1], 0), (0, 0)])
