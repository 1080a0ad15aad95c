"""Tests of GRU4Rec and GRU4Rec+: shapes, the GRU equations, causality, left padding, the
feature fields, config checks, and learning on synthetic data."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import configs.gru4rec
import configs.gru4rec_plus
import pmix_jax.models.gru4rec  # noqa: F401  (registers 'gru4rec')
from pmix_jax import models, train
from pmix_jax.errors import ConfigError
from pmix_jax.models.gru4rec import GRU, GRU4Rec
from tests.conftest import tiny_config
from tests.models import common
from tests.models.common import (BATCH, MAX_LEN, PADS, VOCAB, assert_beats_popularity,
                                 assert_dropout_is_keyed, assert_leading_padding_is_inert,
                                 flax_init, inputs_maker, model_builder)

HIDDEN = 16

VARIANTS = {
    'gru4rec': dict(),
    'plus_late': dict(use_features=True, fusion='late'),
    'plus_early': dict(use_features=True, fusion='early'),
}

make_model = model_builder(configs.gru4rec, VOCAB, MAX_LEN, hidden=HIDDEN, gru_hidden=8)
make_inputs = inputs_maker(VOCAB, MAX_LEN, PADS)
init = flax_init


@functools.cache
def setup(variant):
  """`VARIANTS[variant]`'s model, its variables and a jitted eval-mode apply (one compile
  per input shape, shared by the tests: op-by-op dispatch is slow on this machine)."""
  model = make_model(**VARIANTS[variant])
  variables = jax.jit(functools.partial(init, model))(make_inputs())
  apply = jax.jit(lambda inputs: model.apply(variables, inputs, train=False))
  return model, variables, apply


def perturb_future(inputs, t, seed):
  return common.perturb_future(inputs, t, seed, vocab=VOCAB)


def test_registry_and_configs():
  """'gru4rec' is the causal GRU4Rec; both configs train on every position."""
  assert models.MODELS['gru4rec'] is GRU4Rec and GRU4Rec.causal is True
  plain, plus = configs.gru4rec.get_config(), configs.gru4rec_plus.get_config()
  assert plain.model.name == plus.model.name == 'gru4rec'
  assert not plain.model.use_features and plus.model.use_features
  assert plain.train.targets == plus.train.targets == 'seq2seq'


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_shapes_and_item_table(variant):
  """hidden is [B, L, D], item_table the `item_embed` parameter [V0, D]; shorter inputs give
  one state per position."""
  _, variables, apply = setup(variant)
  hidden, table = apply(make_inputs())
  assert hidden.shape == (BATCH, MAX_LEN, HIDDEN)
  np.testing.assert_array_equal(table, variables['params']['item_embed'])
  assert table.shape == (VOCAB[0], HIDDEN)
  assert apply(make_inputs()[:, 3:])[0].shape == (BATCH, MAX_LEN - 3, HIDDEN)


def test_gru_follows_the_gru_equations():
  """Without padding, our GRU layer equals Flax's GRUCell (same r, z, n equations) with the
  same weights, split per gate."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(7, 4, 5)), jnp.float32)  # [L, B, E]
  layer = GRU(6)
  params = layer.init(jax.random.key(0), x, jnp.ones((7, 4, 1), bool))['params']
  # Non-zero biases, so that a misplaced bias is caught.
  params = dict(params, input_bias=jnp.asarray(rng.normal(size=18), jnp.float32),
                recurrent_bias=jnp.asarray(rng.normal(size=6), jnp.float32))
  ours = layer.apply({'params': params}, x, jnp.ones((7, 4, 1), bool))

  w_i, w_h, b_i = params['input_kernel'], params['recurrent_kernel'], params['input_bias']
  gate = lambda w, g: w[:, 6 * g:6 * (g + 1)]
  cell_params = {
      'ir': {'kernel': gate(w_i, 0), 'bias': b_i[:6]},
      'iz': {'kernel': gate(w_i, 1), 'bias': b_i[6:12]},
      'in': {'kernel': gate(w_i, 2), 'bias': b_i[12:]},
      'hr': {'kernel': gate(w_h, 0)}, 'hz': {'kernel': gate(w_h, 1)},
      'hn': {'kernel': gate(w_h, 2), 'bias': params['recurrent_bias']},
  }
  rnn = nn.RNN(nn.GRUCell(6), time_major=True)
  reference = rnn.apply({'params': {'cell': cell_params}}, x)
  np.testing.assert_allclose(ours, reference, atol=1e-5)


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_no_future_leakage(variant):
  """hidden[:, :t+1] does not change when any field at positions > t changes."""
  _, _, apply = setup(variant)
  inputs = make_inputs()
  base, _ = apply(inputs)
  for t in (0, 4, 8, 10):
    hidden, _ = apply(perturb_future(inputs, t, seed=t))
    np.testing.assert_allclose(hidden[:, :t + 1], base[:, :t + 1], atol=1e-6)
    assert not np.allclose(hidden[:, t + 1:], base[:, t + 1:], atol=1e-5)


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_left_padding_keeps_the_initial_state(variant):
  """The states at the real positions do not depend on how much padding precedes them:
  dropping 3 leading positions (padding in rows 1 and 2) leaves those rows' real states
  unchanged. Padding positions output zero."""
  _, variables, apply = setup(variant)
  # Padding ids have non-zero embeddings: only the state mask keeps them out.
  assert np.abs(variables['params']['item_embed'][0]).sum() > 0
  assert_leading_padding_is_inert(apply, make_inputs(), PADS, atol=1e-6)


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_side_fields_used_only_with_features(variant):
  """Side fields change the output exactly when use_features is on."""
  _, _, apply = setup(variant)
  inputs = make_inputs()
  base, _ = apply(inputs)
  changed = inputs.copy()
  for f, v in enumerate(VOCAB[1:], start=1):
    changed[..., f] = np.where(inputs[..., 0] > 0, inputs[..., f] % (v - 1) + 1, 0)
  hidden, _ = apply(changed)
  if VARIANTS[variant]:
    assert not np.allclose(hidden, base, atol=1e-5)
  else:
    np.testing.assert_array_equal(hidden, base)


def test_fusion_parameters():
  """Late fusion runs a second GRU over the features and projects [2H] to D; early fusion
  projects the embeddings before a single GRU; two layers stack two GRUs."""
  late = setup('plus_late')[1]['params']
  assert late['feature_gru']['layer_0']['input_kernel'].shape == (2 * HIDDEN, 24)
  assert late['output']['kernel'].shape == (16, HIDDEN) and 'fuse' not in late
  early = setup('plus_early')[1]['params']
  assert early['fuse']['kernel'].shape == (3 * HIDDEN, HIDDEN) and 'feature_gru' not in early
  assert early['output']['kernel'].shape == (8, HIDDEN)
  deep = jax.eval_shape(functools.partial(init, make_model(num_layers=2)), make_inputs())
  deep = deep['params']
  assert set(deep['gru']) == {'layer_0', 'layer_1'}


def test_dropout_in_training_only():
  """Training mode drops embeddings (key-dependent); evaluation is deterministic."""
  model, variables, apply = setup('gru4rec')
  inputs = make_inputs()
  trained = assert_dropout_is_keyed(model, variables, inputs)
  assert not np.allclose(trained, apply(inputs)[0])


@pytest.mark.parametrize('overrides, vocab, message', [
    (dict(num_layers=0), VOCAB, 'num_layers must be at least 1'),
    (dict(gru_hidden=0), VOCAB, 'gru_hidden must be at least 1'),
    (dict(dropout=1.0), VOCAB, r'dropout must lie in \[0, 1\)'),
    (dict(use_features=True, fusion='sum'), VOCAB, "fusion must be one of"),
    (dict(use_features=True), VOCAB[:1], 'needs side feature fields'),
], ids=['layers', 'gru_hidden', 'dropout', 'fusion', 'no_features'])
def test_invalid_configs_raise(overrides, vocab, message):
  with pytest.raises(ConfigError, match=message):
    init(make_model(vocab=vocab, **overrides), make_inputs(vocab=vocab))


@pytest.mark.parametrize('config_name', ['gru4rec', 'gru4rec_plus'])
def test_beats_popularity_on_synthetic_data(config_name, tmp_path):
  """A few epochs (lr 5e-3: the tiny run has ~8 steps an epoch; checkpoints at epoch ends
  only) beat the most-popular ranker clearly on test NDCG@10 and HR@10."""
  config = tiny_config(config_name, train__num_epochs=3, train__lr=5e-3,
                       train__checkpoint_every_steps=1000)
  results = train.train_and_evaluate(config, str(tmp_path))
  assert_beats_popularity(results)


def test_training_on_a_cut_batch_matches_the_full_width_batch():
  """Without dropout, a seq2seq batch cut to its longest row (`data.length_buckets`, as
  MGNM's table trains GRU4Rec) gives the loss and gradients of the full-width batch: the
  cut drops only padding columns, whose targets are 0 and whose states are inert."""
  model = make_model(dropout=0.0)
  pads = (4, 5, 9)  # The longest row holds MAX_LEN - 4 behaviors.
  inputs = make_inputs(pads=pads)[:, :, :1]
  targets = np.roll(inputs[..., 0], -1, axis=1)
  targets[:, -1] = 7
  targets[inputs[..., 0] == 0] = 0
  params = init(model, inputs)['params']
  loss = jax.jit(jax.value_and_grad(functools.partial(
      train.batch_loss, model=model, loss='softmax', num_negatives=0, sequence_targets=True)))
  width = MAX_LEN - min(pads)
  full = loss(params, dict(inputs=inputs, targets=targets), jax.random.key(0))
  cut = loss(params, dict(inputs=inputs[:, -width:], targets=targets[:, -width:]),
             jax.random.key(0))
  np.testing.assert_allclose(cut[0], full[0], rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), cut[1],
               full[1])
