"""Helpers shared by the model tests: random inputs, numpy-drawn parameters, jitted applies,
input perturbations and the end-to-end check against the popularity baseline."""

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import flax.linen as nn
import jax
import numpy as np
import pytest

from pmix_jax.errors import ConfigError

# No checkpoints or loss logs inside an end-to-end run: every 10 and 5 steps (TINY's), they
# cost more than the training itself and do not change what it learns.
QUIET = dict(train__checkpoint_every_steps=10**6, train__log_every_steps=10**6)


def random_inputs(vocab: Sequence[int], *, batch: int, length: int, pads: Sequence[int],
                  seed: int = 0, dtype: Any = None) -> np.ndarray:
  """Random ids `[batch, length, len(vocab)]`, field f drawn from `[1, vocab[f])`, row b
  left-padded with `pads[b]` zeros in every field (rows past `len(pads)` unpadded).

  The fields are drawn one after another from `np.random.default_rng(seed)`; `dtype`, if
  given, is the ids' type (numpy's default integer otherwise)."""
  rng = np.random.default_rng(seed)
  inputs = np.stack([rng.integers(1, v, (batch, length)) for v in vocab], axis=-1)
  if dtype is not None:
    inputs = inputs.astype(dtype)
  for b, pad in enumerate(pads):
    inputs[b, :pad] = 0
  return inputs


def _shapes(module: nn.Module, *args, **kwargs) -> Any:
  """The variables' shapes of `module.init` (traced, never compiled)."""
  kwargs.setdefault('train', False)
  return jax.eval_shape(lambda: module.init({'params': jax.random.key(0)}, *args, **kwargs))


def numpy_normal_init(module: nn.Module, *args, seed: int = 0, scale: float = 0.5,
                      **kwargs) -> Any:
  """Variables of `module` drawn with numpy, N(0, scale) (LayerNorm scales around 1).

  `args` and `kwargs` go to `module.init` (`train=False` unless given). Random initialisers
  compile once per shape, seconds each on a loaded CPU; the tests using this hold for any
  parameters."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    value = rng.normal(scale=scale, size=leaf.shape).astype(leaf.dtype)
    return value + 1 if getattr(path[-1], 'key', None) == 'scale' else value
  return jax.tree_util.tree_map_with_path(draw, _shapes(module, *args, **kwargs))


def numpy_fan_in_init(model: nn.Module, inputs: np.ndarray, seed: int = 0) -> Any:
  """Parameters of `model` drawn in numpy from the shapes of `model.init` (traced, never
  compiled: an eager init compiles each initializer apart, ~10 s on this machine): unit
  LayerNorm scales, zero biases, N(0, 1/fan_in) kernels and N(0, 1) embeddings, so that
  scores differ clearly between items."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name == 'scale':
      return np.ones(leaf.shape, np.float32)
    if name == 'bias':
      return np.zeros(leaf.shape, np.float32)
    std = 1 / np.sqrt(leaf.shape[0]) if name == 'kernel' else 1.0
    return rng.normal(0.0, std, leaf.shape).astype(np.float32)
  return jax.tree_util.tree_map_with_path(draw, _shapes(model, inputs))


def flax_init(model: nn.Module, inputs: np.ndarray) -> Any:
  """`model`'s own initial variables (params key 0) for `inputs`, in evaluation mode."""
  return model.init({'params': jax.random.key(0)}, inputs, train=False)


def num_params(variables: Mapping[str, Any]) -> int:
  """How many numbers the `params` collection of `variables` holds."""
  return sum(leaf.size for leaf in jax.tree_util.tree_leaves(variables['params']))


@functools.cache
def _forward(model: nn.Module, train: bool) -> Callable:
  return jax.jit(lambda variables, inputs, key: model.apply(
      variables, inputs, train=train, rngs={'dropout': key}))


def jitted_apply(model: nn.Module, variables: Any, inputs: np.ndarray, train: bool = False,
                 key: int = 0) -> Any:
  """`model.apply`'s `(hidden, item_table)`, dropout keyed by `key`, jitted once per model
  and mode (faster than op by op)."""
  return _forward(model, train)(variables, inputs, jax.random.key(key))


def assert_short_input_is_left_padded(model: nn.Module, make_inputs: Callable[..., np.ndarray],
                                      state: Callable[..., Any], max_len: int) -> None:
  """Asserts that `state(model, variables, inputs)` is the same for a window of 8 shorter
  than `max_len` as for that window left-padded to `max_len` (variables from
  `numpy_normal_init`), and that a window longer than `max_len` is a ConfigError.

  `make_inputs(length=..., pads=...)` draws the windows."""
  short = make_inputs(length=8, pads=(0, 2, 5))
  batch, length, fields = short.shape
  padded = np.concatenate([np.zeros((batch, max_len - length, fields), short.dtype), short], 1)
  variables = numpy_normal_init(model, padded)
  np.testing.assert_array_equal(state(model, variables, short), state(model, variables, padded))
  with pytest.raises(ConfigError, match='max_len'):
    state(model, variables, make_inputs(length=max_len + 1, pads=(0, 0, 0)))


def assert_dropout_is_keyed(model: nn.Module, variables: Any,
                            inputs: np.ndarray) -> jax.Array:
  """Asserts that the training-mode hidden state is the same under one dropout key and
  differs under another; returns the state under key 0."""
  run = jax.jit(lambda key: model.apply(variables, inputs, train=True,
                                        rngs={'dropout': key})[0])
  np.testing.assert_array_equal(run(jax.random.key(0)), run(jax.random.key(0)))
  assert not np.allclose(run(jax.random.key(0)), run(jax.random.key(1)))
  return run(jax.random.key(0))


def other_item(items: Any, num_items: int) -> Any:
  """A different nonzero item id for each nonzero id in `items` (ids lie in [1, num_items))."""
  return items % (num_items - 1) + 1


def change_item(inputs: np.ndarray, row: int, position: int, num_items: int) -> np.ndarray:
  """A copy of `inputs` with another item id (field 0) at `[row, position]`."""
  out = inputs.copy()
  out[row, position, 0] = other_item(out[row, position, 0], num_items)
  return out


def perturb_future(inputs: np.ndarray, t: int, seed: int,
                   vocab: Sequence[int]) -> np.ndarray:
  """Replaces every field at positions > t with different random nonzero ids."""
  rng = np.random.default_rng(seed)
  out = inputs.copy()
  for f, v in enumerate(vocab):
    future = out[:, t + 1:, f]
    new = rng.integers(1, v, future.shape)
    out[:, t + 1:, f] = np.where(new == future, other_item(new, v), new)  # A different id.
  return out


def assert_beats_popularity(results: Mapping[str, Any]) -> None:
  """The trained model's test NDCG@10 and HR@10 clearly beat the most-popular ranker's."""
  popularity = results['baselines']['popularity']['test']
  assert results['test']['NDCG@10'] > 1.5 * popularity['NDCG@10'], (results['test'], popularity)
  assert results['test']['HR@10'] > 1.3 * popularity['HR@10']
