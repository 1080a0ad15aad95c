"""Helpers shared by the model tests: the common test window, model and input builders,
random inputs, numpy-drawn parameters, jitted applies and scorers, input perturbations, checks
that several models share, and the end-to-end check against the popularity baseline."""

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pmix_jax import models
from pmix_jax.errors import ConfigError

# No checkpoints or loss logs inside an end-to-end run: every 10 and 5 steps (TINY's), they
# cost more than the training itself and do not change what it learns.
QUIET = dict(train__checkpoint_every_steps=10**6, train__log_every_steps=10**6)

# The window most model tests draw: an item field (50 items) and two side fields, three rows
# left-padded by 0, 3 and 7.
VOCAB = (51, 6, 8)
MAX_LEN = 12
PADS = (0, 3, 7)
BATCH = len(PADS)


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


def inputs_with_users(vocab: Sequence[int], *, length: int, pads: Sequence[int],
                      seed: int = 0) -> np.ndarray:
  """`random_inputs` (int32) whose field 1 is the derived user field: row b's user is
  `b % (vocab[1] - 1) + 1` at every real position, as the data derives it (a sequence is one
  user's), so that user-aware models see one user a row."""
  inputs = random_inputs(vocab, batch=len(pads), length=length, pads=pads, seed=seed,
                         dtype=np.int32)
  users = np.arange(len(pads)) % (vocab[1] - 1) + 1
  inputs[..., 1] = np.where(inputs[..., 0] > 0, users[:, None], 0)
  return inputs


def model_builder(config_module: Any, vocab: Sequence[int], max_len: int,
                  **fixed) -> Callable[..., nn.Module]:
  """`make_model(vocab=vocab, **overrides)`: `config_module.get_config().model` with a test's
  `fixed` settings, then `overrides`, built for `vocab` and `max_len`."""
  def make_model(vocab: Sequence[int] = vocab, **overrides) -> nn.Module:
    cfg = config_module.get_config().model
    cfg.update(fixed, **overrides)
    return models.build(cfg, vocab_sizes=vocab, max_len=max_len)
  return make_model


def inputs_maker(vocab: Sequence[int], max_len: int, pads: Sequence[int],
                 dtype: Any = None) -> Callable[..., np.ndarray]:
  """`make_inputs(seed=0, length=max_len, pads=pads, vocab=vocab)`: `random_inputs` of `dtype`
  with one row per entry of `pads`."""
  def make_inputs(seed: int = 0, length: int = max_len, pads: Sequence[int] = pads,
                  vocab: Sequence[int] = vocab) -> np.ndarray:
    return random_inputs(vocab, batch=len(pads), length=length, pads=pads, seed=seed,
                         dtype=dtype)
  return make_inputs


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
  return _jitted_init(model, inputs)


def _jitted_init(model: nn.Module, inputs: np.ndarray) -> Any:
  # Jitted: run eagerly, every initialiser op compiles on its own (seconds on a loaded CPU).
  return jax.jit(lambda x: model.init({'params': jax.random.key(0)}, x, train=False))(inputs)


def num_params(variables: Mapping[str, Any]) -> int:
  """How many numbers the `params` collection of `variables` holds."""
  return sum(leaf.size for leaf in jax.tree_util.tree_leaves(variables['params']))


def float64(tree: Any) -> Any:
  """`tree` with every leaf a float64 numpy array: the numpy references run in float64, so
  that their own rounding is negligible beside the tests' tolerances."""
  return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf, np.float64), tree)


@functools.cache
def _forward(model: nn.Module, train: bool) -> Callable:
  return jax.jit(lambda variables, inputs, key: model.apply(
      variables, inputs, train=train, rngs={'dropout': key}))


def jitted_apply(model: nn.Module, variables: Any, inputs: np.ndarray, train: bool = False,
                 key: int = 0) -> Any:
  """`model.apply`'s `(hidden, item_table)`, dropout keyed by `key`, jitted once per model
  and mode (faster than op by op)."""
  return _forward(model, train)(variables, inputs, jax.random.key(key))


def jitted_hidden(model: nn.Module, variables: Any, inputs: np.ndarray, train: bool = False,
                  key: int = 0) -> jax.Array:
  """The hidden state (`jitted_apply`'s first output), which most behaviour tests compare."""
  return jitted_apply(model, variables, inputs, train=train, key=key)[0]


@functools.cache
def jitted_method(model: nn.Module, method: str) -> Callable:
  """`(variables, *args) -> model.apply(variables, *args, method=method)`, jitted once per
  model and method (the scorers run slowly op by op)."""
  return jax.jit(lambda variables, *args: model.apply(variables, *args, method=method))


def score_items(model: nn.Module, variables: Any, inputs: np.ndarray) -> np.ndarray:
  """`model.score_items(inputs)` `[B, V]` in float64 (the float32 scores exactly), to set
  beside the numpy references."""
  return np.asarray(jitted_method(model, 'score_items')(variables, inputs), np.float64)


@functools.cache
def jitted_interests(model: nn.Module, train: bool = False) -> Callable:
  """`(variables, inputs, key) -> (model.interests(inputs), sown intermediates)` of a
  multi-interest model, jitted once per model and mode; `key` is the dropout stream (which
  also draws random routing logits in training)."""
  return jax.jit(lambda variables, inputs, key: model.apply(
      variables, inputs, train=train, method='interests', mutable=['intermediates'],
      rngs={'dropout': key}))


def assert_short_input_is_left_padded(model: nn.Module, make_inputs: Callable[..., np.ndarray],
                                      state: Callable[..., Any], max_len: int) -> None:
  """Asserts that `state(model, variables, inputs)` is the same (to float rounding) for a
  window of 8 shorter than `max_len` as for that window left-padded to `max_len` (variables from
  `numpy_normal_init`), and that a window longer than `max_len` is a ConfigError.

  `make_inputs(length=..., pads=...)` draws the windows."""
  short = make_inputs(length=8, pads=(0, 2, 5))
  batch, length, fields = short.shape
  padded = np.concatenate([np.zeros((batch, max_len - length, fields), short.dtype), short], 1)
  variables = numpy_normal_init(model, padded)
  # Up to float rounding: a model that does not pad internally sums over fewer zeros.
  np.testing.assert_allclose(state(model, variables, short), state(model, variables, padded),
                             rtol=1e-6, atol=1e-6)
  with pytest.raises(ConfigError, match='max_len'):
    state(model, variables, make_inputs(length=max_len + 1, pads=(0, 0, 0)))


def assert_dropout_is_keyed(model: nn.Module, variables: Any, inputs: np.ndarray,
                            keys: tuple[int, int] = (0, 1)) -> jax.Array:
  """Asserts that the training-mode hidden state is the same twice under dropout key
  `keys[0]` and differs under `keys[1]`; returns the state under `keys[0]`."""
  # Parameters as jit arguments (numpy ones cannot be indexed by traced ids), compiled once.
  run = lambda key: jitted_hidden(model, variables, inputs, train=True, key=key)
  np.testing.assert_array_equal(run(keys[0]), run(keys[0]))
  assert not np.allclose(run(keys[0]), run(keys[1]))
  return run(keys[0])


def assert_oldest_and_latest_behaviors_matter(model: nn.Module, variables: Any,
                                              inputs: np.ndarray, pads: Sequence[int],
                                              num_ids: int, field: int = 0,
                                              atol: float = 1e-3) -> None:
  """Asserts that another id in `field` (ids in `[1, num_ids)`) at row b's oldest real
  behavior (after `pads[b]` pads) or at its latest changes row b of the hidden state by
  more than `atol`: what mixes every position must reach both ends."""
  base = jitted_hidden(model, variables, inputs)
  for b, pad in enumerate(pads):
    for position in (pad, inputs.shape[1] - 1):
      changed = inputs.copy()
      changed[b, position, field] = other_item(changed[b, position, field], num_ids)
      assert not np.allclose(jitted_hidden(model, variables, changed)[b], base[b],
                             atol=atol), (b, position)


def assert_leading_padding_is_inert(apply: Callable[[np.ndarray], Any], inputs: np.ndarray,
                                    pads: Sequence[int], atol: float) -> None:
  """Asserts that the states `apply(inputs)[0]` `[B, L, D]` at real positions do not depend
  on how much padding precedes them: without the first 3 positions, a row padded at least
  that long keeps its real states (to `atol`, not all zero) and outputs zero at padding,
  while an unpadded row's states change (its first behaviors are gone)."""
  full, _ = apply(inputs)
  trimmed, _ = apply(inputs[:, 3:])
  for b, pad in enumerate(pads):
    if pad >= 3:
      np.testing.assert_allclose(full[b, pad:], trimmed[b, pad - 3:], atol=atol)
      assert not np.abs(full[b, pad:]).max() == 0
      np.testing.assert_array_equal(full[b, :pad], 0.0)
    elif pad == 0:
      assert not np.allclose(full[b, 3:], trimmed[b], atol=1e-5)


def assert_padding_rows_do_not_matter(model: nn.Module, variables: Any, inputs: np.ndarray,
                                      table: str, padding_rows: Sequence[int],
                                      used_row: int) -> None:
  """Asserts that the hidden state stays the same when the rows `padding_rows` of
  `params[table]` (the padding ids' embeddings) change, and that it changes when row
  `used_row`, one that `inputs` uses, does (so that the first check could fail)."""
  params = variables['params']
  embeddings = np.asarray(params[table]).copy()
  hidden = lambda: jitted_hidden(model, {'params': {**params, table: embeddings}}, inputs)
  base = jitted_hidden(model, variables, inputs)
  # Random changes: a constant shift of an embedding would vanish in the LayerNorms.
  rng = np.random.default_rng(1)
  for row in padding_rows:
    embeddings[row] = rng.normal(size=embeddings.shape[-1])
  np.testing.assert_array_equal(hidden(), base)
  embeddings[used_row] += rng.normal(size=embeddings.shape[-1])
  assert not np.allclose(hidden(), base)


def assert_padding_embeddings_reach_no_score(model: nn.Module, variables: Any,
                                             inputs: np.ndarray, users: bool = False) -> None:
  """Asserts that every real item's `score_items` stays the same when the padding item's
  embedding (and, with `users`, the padding user's) is set far off: masks must keep
  padding out of the user state, where any leak would move the scores."""
  params = dict(variables['params'])
  params['item_embed'] = np.asarray(params['item_embed']).copy()
  params['item_embed'][0] = 50.0
  if users:
    params['user_embed'] = np.asarray(params['user_embed']).copy()
    params['user_embed'][0] = -50.0
  np.testing.assert_array_equal(score_items(model, {'params': params}, inputs)[:, 1:],
                                score_items(model, variables, inputs)[:, 1:])


def assert_call_and_score_shapes(model: nn.Module, variables: Any, inputs: np.ndarray,
                                 num_items: int, hidden_size: int) -> jax.Array:
  """Asserts that `__call__` gives one state `[B, 1, hidden_size]` a row and the `item_embed`
  parameter as the item table, and `score_items` finite scores `[B, num_items]`; returns the
  states."""
  hidden, table = jitted_apply(model, variables, inputs)
  assert hidden.shape == (len(inputs), 1, hidden_size)
  np.testing.assert_array_equal(table, variables['params']['item_embed'])
  scores = score_items(model, variables, inputs)
  assert scores.shape == (len(inputs), num_items) and np.isfinite(scores).all()
  return hidden


def assert_scores_ignore_padding(model: nn.Module, variables: Any,
                                 make_inputs: Callable[..., np.ndarray], users: bool = False,
                                 rtol: float = 1e-5, atol: float = 1e-6) -> None:
  """Asserts that `score_items` does not depend on padding: a short window scores as it
  left-padded to max_len (a longer one is an error), 5 more positions of padding before the
  behaviors (a longer max_len) change no score (to `rtol`, `atol`), and neither does the
  padding item's embedding nor, with `users`, the padding user's."""
  assert_short_input_is_left_padded(model, make_inputs, score_items, model.max_len)
  inputs = make_inputs()
  longer = model.clone(max_len=model.max_len + 5)  # The parameters do not depend on max_len.
  np.testing.assert_allclose(score_items(longer, variables, inputs),
                             score_items(model, variables, inputs), rtol=rtol, atol=atol)
  assert_padding_embeddings_reach_no_score(model, variables, inputs, users)


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


def assert_negatives_are_uniform(model: nn.Module, variables: Any, num_items: int) -> None:
  """Asserts that `model.negatives` draws (200 for each of 50 rows of target 7) avoid the
  padding id and the target and hit every other item about equally often (within 5
  standard deviations): the sampled losses assume uniform negatives."""
  draw = np.asarray(model.apply(variables, jnp.full((50,), 7, jnp.int32), 200,
                                method='negatives', rngs={'negatives': jax.random.key(0)}))
  counts = np.bincount(draw.ravel(), minlength=num_items)
  assert counts[0] == 0 and counts[7] == 0 and (counts[1:7] > 0).all() and (
      counts[8:] > 0).all()
  expected = draw.size / (num_items - 2)
  assert np.abs(counts[counts > 0] - expected).max() < 5 * np.sqrt(expected)


def assert_beats_popularity(results: Mapping[str, Any]) -> None:
  """The trained model's test NDCG@10 and HR@10 clearly beat the most-popular ranker's."""
  popularity = results['baselines']['popularity']['test']
  assert results['test']['NDCG@10'] > 1.5 * popularity['NDCG@10'], (results['test'], popularity)
  assert results['test']['HR@10'] > 1.3 * popularity['HR@10']


def assert_loss_falls_from_chance(model: nn.Module, inputs: np.ndarray, *, steps: int = 300,
                                  lr: float = 1e-3, num_negatives: int = 4) -> None:
  """Adam on one fixed batch moves the sampled-softmax loss of a model with its own
  `training_loss` (L2 terms included) well below chance, log(1 + n): a network that
  collapses to constant logits stays there."""
  import optax
  targets = np.arange(len(inputs), dtype=np.int32) * 7 % (model.vocab_sizes[0] - 1) + 1
  batch = dict(inputs=inputs, targets=targets)
  params = _jitted_init(model, inputs)['params']
  optimizer = optax.adam(lr)

  @jax.jit
  def step(state, key):
    params, opt_state = state
    loss, grads = jax.value_and_grad(lambda p: model.apply(
        {'params': p}, batch, loss='sampled_softmax', num_negatives=num_negatives,
        rngs={'dropout': key, 'negatives': key}, method='training_loss'))(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  state = (params, optimizer.init(params))
  for i in range(steps):
    state, loss = step(state, jax.random.key(i))
  assert loss < np.log(1 + num_negatives) - 0.5, float(loss)


def assert_candidate_training_checks(model: nn.Module, variables: Any,
                                     inputs: np.ndarray) -> None:
  """A `CandidateScorer`'s `training_loss` runs with the sampled losses and refuses, with a
  clear ConfigError, the full softmax, no negatives and a target per position."""
  run = lambda batch, loss='sampled_softmax', n=2: jax.eval_shape(lambda: model.apply(
      variables, batch, loss=loss, num_negatives=n, method='training_loss',
      rngs={'dropout': jax.random.key(0), 'negatives': jax.random.key(1)}))
  targets = np.ones(len(inputs), np.int32)
  for loss in ('sampled_softmax', 'bce'):
    assert run(dict(inputs=inputs, targets=targets), loss=loss).shape == ()
  with pytest.raises(ConfigError, match="must be one of .*not 'softmax'"):
    run(dict(inputs=inputs, targets=targets), loss='softmax')
  with pytest.raises(ConfigError, match='num_negatives >= 1'):
    run(dict(inputs=inputs, targets=targets), n=0)
  with pytest.raises(ConfigError, match="targets='prefix'"):
    run(dict(inputs=inputs, targets=inputs[..., 0]))
