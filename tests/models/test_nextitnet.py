"""Tests of NextItNet: shapes, the causal dilated convolution, receptive field, causality,
left padding, config checks, and learning on synthetic data."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import configs.nextitnet
import pmix_jax.models.nextitnet  # noqa: F401  (registers 'nextitnet')
from pmix_jax import models, train
from pmix_jax.errors import ConfigError
from pmix_jax.models.nextitnet import CausalConv, NextItNet
from tests.conftest import tiny_config
from tests.models import common
from tests.models.common import (BATCH, MAX_LEN, PADS, VOCAB, assert_beats_popularity,
                                 assert_dropout_is_keyed, assert_leading_padding_is_inert,
                                 flax_init, inputs_maker, model_builder)

HIDDEN = 16
# One residual block (dilations 1 then 2), with dropout (inactive in evaluation).
ONE_BLOCK = dict(dilations=(1,), num_blocks=1, dropout=0.3)
# num_blocks=2: 4 blocks, dilations 1, 2, 4, 8, 1, 2, 4, 8: covers MAX_LEN.
make_model = model_builder(configs.nextitnet, VOCAB, MAX_LEN, hidden=HIDDEN, num_blocks=2)
make_inputs = inputs_maker(VOCAB, MAX_LEN, PADS)
init = flax_init


@functools.cache
def setup(**overrides):
  """A model, its variables and a jitted eval-mode apply (one compile per input shape).

  Every parameter is perturbed: at initialisation the biases are zero, under which a
  convolution of zero padding stays zero even without the padding masks."""
  model = make_model(**overrides)
  variables = jax.jit(functools.partial(init, model))(make_inputs())
  leaves, treedef = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  variables = jax.tree.unflatten(treedef, [
      leaf + 0.1 * jax.random.normal(key, leaf.shape) for leaf, key in zip(leaves, keys)])
  apply = jax.jit(functools.partial(model.apply, train=False))
  return model, variables, functools.partial(apply, variables)


def change_item(inputs, row, position):
  return common.change_item(inputs, row, position, num_items=VOCAB[0])


def test_registry_and_config():
  """'nextitnet' is the causal NextItNet, trained on every position, RecBole's defaults."""
  assert models.MODELS['nextitnet'] is NextItNet and NextItNet.causal is True
  config = configs.nextitnet.get_config()
  assert config.train.targets == 'seq2seq'
  assert (config.model.kernel_size, tuple(config.model.dilations),
          config.model.num_blocks) == (3, (1, 4), 5)


def test_shapes_item_table_and_blocks():
  """hidden is [B, L, D], item_table the `item_embed` parameter [V0, D], one residual block
  per dilation and repetition; shorter inputs give one state per position."""
  _, variables, apply = setup()
  hidden, table = apply(make_inputs())
  assert hidden.shape == (BATCH, MAX_LEN, HIDDEN)
  assert table.shape == (VOCAB[0], HIDDEN)
  np.testing.assert_array_equal(table, variables['params']['item_embed'])
  assert {k for k in variables['params'] if k.startswith('block_')} == {
      f'block_{i}' for i in range(4)}
  assert apply(make_inputs()[:, 3:])[0].shape == (BATCH, MAX_LEN - 3, HIDDEN)


def test_causal_conv_matches_its_formula():
  """conv_{k,d}(x)_t = sum_j W_j x_{t-(k-1-j)d} + b, with zeros before the sequence."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 9, 4)), jnp.float32)
  conv = CausalConv(5, kernel_size=3, dilation=2)
  params = conv.init(jax.random.key(0), x)['params']
  params = {'conv': dict(params['conv'], bias=jnp.arange(5, dtype=jnp.float32))}
  out = np.asarray(conv.apply({'params': params}, x))
  kernel, bias = np.asarray(params['conv']['kernel']), np.asarray(params['conv']['bias'])
  assert kernel.shape == (3, 4, 5)
  expected = np.zeros((2, 9, 5)) + bias
  for t in range(9):
    for j in range(3):
      source = t - (2 - j) * 2
      if source >= 0:
        expected[:, t] += np.asarray(x)[:, source] @ kernel[j]
  np.testing.assert_allclose(out, expected, atol=1e-5)


def test_receptive_field_of_one_block():
  """One block of dilation d has convolutions dilated by d and 2d: with k = 3 an item at
  position s reaches positions s..s+6d and no further."""
  _, _, apply = setup(**ONE_BLOCK)
  inputs = make_inputs(pads=(0, 0, 0))
  base, _ = apply(inputs)
  hidden, _ = apply(change_item(inputs, 0, 3))
  changed = ~np.isclose(hidden[0], base[0], atol=1e-6).all(axis=-1)
  np.testing.assert_array_equal(np.flatnonzero(changed), np.arange(3, 10))
  np.testing.assert_array_equal(hidden[1:], base[1:])


def test_no_future_leakage():
  """hidden[:, :t+1] does not change when the items at positions > t change."""
  _, _, apply = setup()
  inputs = make_inputs()
  base, _ = apply(inputs)
  rng = np.random.default_rng(1)
  for t in (0, 4, 8, 10):
    changed = inputs.copy()
    future = changed[:, t + 1:, 0]
    new = rng.integers(1, VOCAB[0], future.shape)
    changed[:, t + 1:, 0] = np.where(new == future, new % (VOCAB[0] - 1) + 1, new)
    hidden, _ = apply(changed)
    np.testing.assert_allclose(hidden[:, :t + 1], base[:, :t + 1], atol=1e-6)
    assert not np.allclose(hidden[:, t + 1:], base[:, t + 1:], atol=1e-5)


def test_left_padding_reads_as_zero_padding():
  """The states at the real positions do not depend on how much padding precedes them:
  dropping 3 leading positions (padding in rows 1 and 2) leaves those rows' real states
  unchanged. Padding positions output zero."""
  _, variables, apply = setup()
  # Padding ids have non-zero embeddings: only the masks keep them out.
  assert np.abs(variables['params']['item_embed'][0]).sum() > 0
  assert_leading_padding_is_inert(apply, make_inputs(), PADS, atol=1e-5)


def test_ignores_side_fields_and_reads_the_past():
  """Only the item field is used; an earlier item changes the last state."""
  _, _, apply = setup()
  inputs = make_inputs()
  base, _ = apply(inputs)
  changed = inputs.copy()
  changed[..., 1:] = np.where(inputs[..., :1] > 0, inputs[..., 1:] % 5 + 1, 0)
  np.testing.assert_array_equal(apply(changed)[0], base)
  assert not np.allclose(apply(change_item(inputs, 0, 1))[0][0, -1], base[0, -1], atol=1e-5)


def test_dropout_in_training_only():
  """With dropout > 0, training mode is key-dependent; evaluation is deterministic."""
  model, variables, apply = setup(**ONE_BLOCK)
  inputs = make_inputs()
  assert_dropout_is_keyed(model, variables, inputs)
  np.testing.assert_array_equal(apply(inputs)[0], apply(inputs)[0])


@pytest.mark.parametrize('overrides, message', [
    (dict(kernel_size=0), 'kernel_size must be at least 1'),
    (dict(dilations=()), 'dilations must be a non-empty tuple'),
    (dict(dilations=(1, 0)), 'dilations must be a non-empty tuple'),
    (dict(num_blocks=0), 'num_blocks must be at least 1'),
    (dict(dropout=-0.1), r'dropout must lie in \[0, 1\)'),
], ids=['kernel', 'no_dilations', 'zero_dilation', 'blocks', 'dropout'])
def test_invalid_configs_raise(overrides, message):
  with pytest.raises(ConfigError, match=message):
    init(make_model(**overrides), make_inputs())


def test_beats_popularity_on_synthetic_data(tmp_path):
  """A few epochs beat the most-popular ranker clearly on test NDCG@10 and HR@10. One
  repetition of the dilations (receptive field 30 > max_len 16), lr 5e-3 (the tiny run has
  ~8 steps an epoch) and checkpoints at epoch ends only keep it short."""
  config = tiny_config('nextitnet', train__num_epochs=4, train__lr=5e-3, model__num_blocks=1,
                       train__checkpoint_every_steps=1000)
  results = train.train_and_evaluate(config, str(tmp_path))
  assert_beats_popularity(results)
