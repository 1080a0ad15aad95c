"""Tests of Caser: shapes, the convolutions against a direct computation, the window, left
padding, the optional user embedding, config checks, and learning on synthetic data."""

import functools

import jax
import numpy as np
import pytest

import configs.caser
import pmix_jax.models.caser  # noqa: F401  (registers 'caser')
from pmix_jax import data as data_lib
from pmix_jax import models, train
from pmix_jax.data import batches
from pmix_jax.errors import ConfigError
from pmix_jax.models.caser import Caser
from tests.conftest import TINY, tiny_config
from tests.models import common
from tests.models.common import (assert_beats_popularity, assert_dropout_is_keyed, flax_init,
                                 model_builder, random_inputs)

VOCAB = (51, 6, 8, 5)  # item, action, category, user (users 1..4).
USER = 3
MAX_LEN = 12
BATCH = 3
HIDDEN = 8
WINDOW = 4
PADS = (0, 3, 10)  # Row 2 has 2 behaviors: fewer than the window.
make_model = model_builder(configs.caser, VOCAB, MAX_LEN, hidden=HIDDEN, window=WINDOW,
                           num_horizontal=3, num_vertical=2)


def make_inputs(seed=0, length=MAX_LEN, pads=PADS):
  """Random ids `[B, L, F]`, row b left-padded with `pads[b]` zeros in every field; the user
  field is constant along each row."""
  inputs = random_inputs(VOCAB, batch=len(pads), length=length, pads=pads, seed=seed)
  users = np.arange(1, len(pads) + 1)[:, None]
  inputs[..., USER] = np.where(inputs[..., 0] > 0, users, 0)  # Users where items (not pads).
  return inputs


init = flax_init


def setup(user_field=-1):
  """A model, its variables, a jitted eval-mode apply, and the same taking the variables
  (one compile per input shape, shared by the tests)."""
  return _setup(user_field)


@functools.cache
def _setup(user_field):
  model = make_model(user_field=user_field)
  variables = jax.jit(functools.partial(init, model))(make_inputs())
  apply = jax.jit(functools.partial(model.apply, train=False))
  return model, variables, functools.partial(apply, variables), apply


def change_item(inputs, row, position):
  return common.change_item(inputs, row, position, num_items=VOCAB[0])


def reference_caser(params, inputs, user_field=-1):
  """Caser's equations written directly with numpy, one window and filter at a time."""
  p = jax.tree.map(np.asarray, params)
  relu = lambda x: np.maximum(x, 0.0)
  out = []
  for row in inputs:
    items = row[-WINDOW:, 0]
    image = p['item_embed'][items] * (items > 0)[:, None]  # [W, D]
    # Vertical filter k: sum_l F~[l, k] E[l] + b_k, laid out [D, n_v] then flattened.
    vertical = image.T @ p['vertical']['kernel'] + p['vertical']['bias']
    horizontal = []
    for h in range(1, WINDOW + 1):
      kernel = p[f'horizontal_{h}']['kernel'].reshape(h, HIDDEN, -1)  # [h, D, n_h]
      convs = [relu(np.einsum('hd,hdn->n', image[i:i + h], kernel)
                    + p[f'horizontal_{h}']['bias']) for i in range(WINDOW - h + 1)]
      horizontal.append(np.max(convs, axis=0))
    features = np.concatenate([vertical.reshape(-1)] + horizontal)
    z = relu(features @ p['fc']['kernel'] + p['fc']['bias'])
    if user_field != -1:
      user = p['user_embed'][row[:, user_field].max()]
      z = relu(np.concatenate([z, user]) @ p['fc_user']['kernel'] + p['fc_user']['bias'])
    out.append(z)
  return np.stack(out)[:, None]


def test_registry_and_config():
  """'caser' is the non-causal Caser, trained on prefixes; the 'user' variant adds the user
  field and points the model at it."""
  assert models.MODELS['caser'] is Caser and Caser.causal is False
  config = configs.caser.get_config()
  assert config.train.targets == 'prefix' and config.model.user_field == -1
  assert (config.model.window, config.model.num_horizontal,
          config.model.num_vertical) == (5, 16, 8)
  user = configs.caser.get_config('user')
  assert user.data.features[user.model.user_field - 1] == 'user'
  with pytest.raises(ValueError, match='unknown Caser variant'):
    configs.caser.get_config('users')


@pytest.mark.parametrize('user_field', [-1, USER])
def test_matches_the_equations(user_field):
  """hidden [B, 1, D] equals a direct computation of the convolutions, pooling and dense
  layers; item_table is the `item_embed` parameter [V0, D]."""
  _, variables, apply, _ = setup(user_field=user_field)
  inputs = make_inputs()
  hidden, table = apply(inputs)
  assert hidden.shape == (BATCH, 1, HIDDEN)
  np.testing.assert_array_equal(table, variables['params']['item_embed'])
  assert ('user_embed' in variables['params']) == (user_field != -1)
  np.testing.assert_allclose(hidden, reference_caser(variables['params'], inputs, user_field),
                             rtol=1e-4, atol=1e-5)


def test_reads_only_the_window():
  """Items before the latest `window` behaviors, and side fields, change nothing; each item
  in the window changes the state."""
  _, _, apply, _ = setup()
  inputs = make_inputs(pads=(0, 0, 0))
  base, _ = apply(inputs)
  for position in range(MAX_LEN - WINDOW):
    np.testing.assert_array_equal(apply(change_item(inputs, 0, position))[0], base)
  for position in range(MAX_LEN - WINDOW, MAX_LEN):
    assert not np.allclose(apply(change_item(inputs, 0, position))[0][0], base[0], atol=1e-6)
  changed = inputs.copy()
  changed[..., 1:USER] = inputs[..., 1:USER] % 5 + 1
  np.testing.assert_array_equal(apply(changed)[0], base)


def test_padding_rows_are_zero_and_short_inputs():
  """Padding behaviors are zero rows of the image: the embedding of id 0 changes nothing
  (row 2 has 2 padding rows in its window). An input shorter than the window is padded
  like any short sequence."""
  _, variables, apply, apply_with = setup(user_field=USER)
  inputs = make_inputs()
  full, _ = apply(inputs)
  params = variables['params']
  assert np.abs(params['item_embed'][0]).sum() > 0
  noisy = dict(params, item_embed=params['item_embed'].at[0].set(5.0))
  np.testing.assert_array_equal(apply_with({'params': noisy}, inputs)[0], full)
  np.testing.assert_allclose(apply(inputs[:, -2:])[0][2], full[2], atol=1e-6)
  assert not np.allclose(apply(inputs[:, -2:])[0][0], full[0], atol=1e-6)


def test_user_embedding_only_with_user_field():
  """With user_field set, the user id changes the state; with -1 it is ignored."""
  inputs = make_inputs()
  other_user = inputs.copy()
  other_user[..., USER] = np.where(inputs[..., 0] > 0, 4, 0)
  with_user = setup(user_field=USER)[2]
  assert not np.allclose(with_user(other_user)[0], with_user(inputs)[0], atol=1e-6)
  without = setup()[2]
  np.testing.assert_array_equal(without(other_user)[0], without(inputs)[0])


@pytest.mark.parametrize('overrides, names', [
    (dict(num_vertical=0), {'vertical'}),
    (dict(num_horizontal=0), {f'horizontal_{h}' for h in range(1, WINDOW + 1)}),
], ids=['horizontal_only', 'vertical_only'])
def test_one_kind_of_convolution(overrides, names):
  """Either kind of convolution can be switched off; its weights are then absent."""
  model = make_model(**overrides)
  params = jax.eval_shape(functools.partial(init, model), make_inputs())['params']
  assert not names & set(params)
  assert params['fc']['kernel'].shape[0] == (
      2 * HIDDEN * (overrides.get('num_vertical', 2) > 0) +
      3 * WINDOW * (overrides.get('num_horizontal', 3) > 0))


def test_dropout_in_training_only():
  """Training mode drops convolution features (key-dependent); evaluation does not."""
  model, variables, apply, _ = setup()
  inputs = make_inputs()
  trained = assert_dropout_is_keyed(model, variables, inputs)
  assert not np.allclose(trained, apply(inputs)[0])


@pytest.mark.parametrize('overrides, message', [
    (dict(window=0), r'window must lie in \[1, max_len=12\]'),
    (dict(window=13), r'window must lie in \[1, max_len=12\]'),
    (dict(num_horizontal=-1), 'must not be negative'),
    (dict(num_horizontal=0, num_vertical=0), 'needs num_horizontal > 0 or num_vertical > 0'),
    (dict(dropout=1.0), r'dropout must lie in \[0, 1\)'),
    (dict(user_field=0), 'user_field=0 is not a side field'),
    (dict(user_field=len(VOCAB)), 'user_field=4 is not a side field'),
], ids=['window_0', 'window_long', 'negative', 'no_filters', 'dropout', 'user_item',
        'user_missing'])
def test_invalid_configs_raise(overrides, message):
  with pytest.raises(ConfigError, match=message):
    init(make_model(**overrides), make_inputs())


def test_user_variant_reads_the_data_user_field():
  """configs/caser.py:user points user_field at the data's derived `user` field (user index
  + 1, the same along each row), and the model's user table covers every user."""
  config = configs.caser.get_config('user')
  for key, value in TINY.items():
    *path, leaf = key.split('.')
    functools.reduce(lambda node, part: node[part], path, config)[leaf] = value
  data = data_lib.load(config.data)
  assert data.field_names[config.model.user_field] == 'user'
  inputs = batches.gather_inputs(data, batches.eval_rows(data, 'test'), config.data.max_len)
  users = inputs[..., config.model.user_field]
  np.testing.assert_array_equal(users, np.where(inputs[..., 0] > 0, users.max(1)[:, None], 0))
  np.testing.assert_array_equal(np.sort(users.max(1)), np.arange(1, data.num_users + 1))
  model = models.build(config.model, data.vocab_sizes, config.data.max_len)
  variables = jax.eval_shape(functools.partial(init, model), inputs[:8])
  assert variables['params']['user_embed'].shape == (data.num_users + 1, config.model.hidden)
  hidden, _ = jax.eval_shape(functools.partial(model.apply, train=False), variables,
                             inputs[:8])
  assert hidden.shape == (8, 1, config.model.hidden)


def test_beats_popularity_on_synthetic_data(tmp_path):
  """Two epochs (lr 5e-3; checkpoints only at epoch ends, which the ~80 steps an epoch would
  otherwise save 8 times) beat the most-popular ranker clearly on NDCG@10 and HR@10."""
  config = tiny_config('caser', train__num_epochs=2, train__lr=5e-3,
                       train__checkpoint_every_steps=1000)
  results = train.train_and_evaluate(config, str(tmp_path))
  assert_beats_popularity(results)
