"""Tests of FDSA: shapes, causality of both streams, the feature stream, training."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import configs.fdsa
import pmix_jax.models.fdsa  # noqa: F401  (registers 'fdsa')
from pmix_jax import models, train
from pmix_jax.errors import ConfigError
from pmix_jax.models.fdsa import FDSA, FieldAttention
from tests.conftest import tiny_config
from tests.models.common import (BATCH, MAX_LEN, PADS, VOCAB, assert_beats_popularity,
                                 inputs_maker, model_builder, numpy_fan_in_init)

HIDDEN = 16
make_model = model_builder(configs.fdsa, VOCAB, MAX_LEN, hidden=HIDDEN, num_heads=2)
make_inputs = inputs_maker(VOCAB, MAX_LEN, PADS, dtype=np.int32)


@functools.cache
def variables(pre_norm=True):
  return numpy_fan_in_init(make_model(pre_norm=pre_norm), make_inputs())


@functools.cache
def forward(pre_norm=True, train=False):
  """Jitted `(variables, inputs) -> (hidden, table)`, dropout from a fixed key in training."""
  model = make_model(pre_norm=pre_norm)
  return jax.jit(lambda params, inputs: model.apply(
      params, inputs, train=train, rngs={'dropout': jax.random.key(7)}))


def change(inputs, fields, positions, seed=0):
  """A copy with different nonzero ids in `fields` at `positions` (where not padding)."""
  rng = np.random.default_rng(seed)
  out = inputs.copy()
  for f in fields:
    old = out[:, positions, f]
    new = rng.integers(1, VOCAB[f], old.shape)
    new = np.where(new == old, new % (VOCAB[f] - 1) + 1, new)
    out[:, positions, f] = np.where(old > 0, new, 0)
  return out


def test_registry_and_shapes():
  """'fdsa' is causal; hidden is [B, L, D] and the item table is `item_embed` [V0, D]."""
  assert models.MODELS['fdsa'] is FDSA
  assert FDSA.causal is True
  params = variables()
  hidden, table = forward()(params, make_inputs())
  assert hidden.shape == (BATCH, MAX_LEN, HIDDEN)
  np.testing.assert_array_equal(table, params['params']['item_embed']['embedding'])
  assert table.shape == (VOCAB[0], HIDDEN)
  assert params['params']['feature_embed'].shape == (sum(VOCAB[1:]), HIDDEN)
  assert np.isfinite(hidden).all()


@pytest.mark.parametrize('fields', [(0,), (1, 2)], ids=['item_stream', 'feature_stream'])
@pytest.mark.parametrize('pre_norm, train', [(True, False), (False, True)])
def test_no_future_leakage(fields, pre_norm, train):
  """hidden[:, :t+1] does not change when the items (item stream) or the side fields
  (feature stream) at positions > t change; later positions do."""
  params = variables(pre_norm)
  inputs = make_inputs()
  run = lambda x: forward(pre_norm, train)(params, x)[0]
  base = run(inputs)
  for t in (0, 4, 8, 10):
    hidden = run(change(inputs, fields, slice(t + 1, None), seed=t))
    np.testing.assert_allclose(hidden[:, :t + 1], base[:, :t + 1], atol=1e-5)
    assert not np.allclose(hidden[:, t + 1:], base[:, t + 1:], atol=1e-5)


@pytest.mark.parametrize('field', [1, 2, 0])
def test_each_field_of_an_earlier_behavior_changes_the_latest_state(field):
  """Changing one side field (or the item) of behavior 5 changes the state at the end."""
  inputs = make_inputs()
  base, _ = forward()(variables(), inputs)
  hidden, _ = forward()(variables(), change(inputs, (field,), [5]))
  assert not np.allclose(hidden[:, -1], base[:, -1], atol=1e-5)
  np.testing.assert_allclose(hidden[:, :5], base[:, :5], atol=1e-5)


def test_field_attention_weights_present_fields_only():
  """Vanilla attention over fields is a convex combination of the present fields: one
  present field is returned as is, none gives zero."""
  fields = jax.random.normal(jax.random.key(0), (3, 2, 4))
  present = jnp.array([[True, True], [False, True], [False, False]])
  attention = FieldAttention()
  out = jax.jit(lambda: attention.apply(attention.init(jax.random.key(1), fields, present),
                                        fields, present))()
  np.testing.assert_allclose(out[1], fields[1, 1], atol=1e-6)
  np.testing.assert_allclose(out[2], 0.0)
  # Row 0: weights in (0, 1) summing to 1 -> out lies strictly between the two fields.
  weight = (out[0] - fields[0, 1]) / (fields[0, 0] - fields[0, 1])
  np.testing.assert_allclose(weight, weight[0], atol=1e-5)
  assert 0.0 < float(weight[0]) < 1.0


def test_without_side_fields_is_a_config_error():
  """FDSA without a feature stream is refused with a message naming the config key."""
  model = make_model(vocab=VOCAB[:1])
  with pytest.raises(ConfigError, match='config.data.features'):
    model.init({'params': jax.random.key(0)}, make_inputs()[..., :1], train=False)


def test_heads_must_divide_hidden():
  model = make_model(num_heads=3)
  with pytest.raises(ConfigError, match='num_heads'):
    model.init({'params': jax.random.key(0)}, make_inputs(), train=False)


def test_beats_popularity_on_synthetic_data(tmp_path):
  """Trained by the loop on seq2seq windows, it ranks far above the most-popular items.

  One block per stream: compiling the two 2-block streams' training step takes about as
  long as the whole run, and the test is about the model and the loop, not the depth."""
  results = train.train_and_evaluate(
      tiny_config('fdsa', train__num_epochs=8, model__num_layers=1), str(tmp_path))
  assert_beats_popularity(results)
