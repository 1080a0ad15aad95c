"""Tests of AutoMLP's model: the embedding fusion, the two interest modules, the relaxation
over short-term lengths, the output layer, padding and training."""

import jax
import numpy as np
import pytest

import configs.automlp
from pmix_jax import models, train
from pmix_jax.errors import ConfigError
from pmix_jax.models.automlp import ARCH_PARAM, AutoMLP
from tests.conftest import tiny_config
from tests.models.common import (
    BATCH, MAX_LEN, PADS, QUIET, VOCAB, assert_beats_popularity, assert_dropout_is_keyed,
    assert_short_input_is_left_padded, change_item, inputs_maker, jitted_apply, jitted_hidden,
    model_builder, numpy_normal_init)

HIDDEN = 8
make_model = model_builder(configs.automlp, VOCAB, MAX_LEN, hidden=HIDDEN, short_lengths=(2, 5))
make_inputs = inputs_maker(VOCAB, MAX_LEN, PADS)


def test_registry_contract_and_parameters():
  """Not causal; hidden [B, 1, D]; one long-term and one short-term stack per candidate, α
  over the candidates, the fusion layer over F * D and the output layer over 2D."""
  assert models.MODELS['automlp'] is AutoMLP and AutoMLP.causal is False
  model = make_model()
  inputs = make_inputs()
  variables = numpy_normal_init(model, inputs)
  state, table = jitted_apply(model, variables, inputs)
  params = variables['params']
  assert state.shape == (BATCH, 1, HIDDEN) and np.isfinite(state).all()
  np.testing.assert_array_equal(table, params['embeddings'][:VOCAB[0]])
  assert sorted(params) == sorted([ARCH_PARAM, 'embeddings', 'fusion', 'long_term',
                                   'output', 'short_term_2', 'short_term_5'])
  assert params[ARCH_PARAM].shape == (2,)
  assert params['fusion']['kernel'].shape == (len(VOCAB) * HIDDEN, HIDDEN)
  assert params['output']['kernel'].shape == (2 * HIDDEN, HIDDEN)
  # Each stack's sequence mixer reads its window through R_s hidden units.
  assert params['long_term']['layer_0']['token_mixer']['w1'].shape == (64, MAX_LEN)
  assert params['short_term_5']['layer_1']['token_mixer']['w1'].shape == (64, 5)
  assert params['short_term_5']['layer_1']['channel_mixer']['w1']['kernel'].shape == (
      HIDDEN, 256)
  # The retrained model, one k: no α and one short-term stack.
  single = numpy_normal_init(make_model(short_lengths=(5,)), inputs)['params']
  assert ARCH_PARAM not in single and 'short_term_2' not in single


def test_short_term_module_reads_only_the_last_k_behaviors():
  """With the output layer's long-term half zeroed, the state depends on the last k
  behaviors only: changing the behavior just before them changes nothing, changing the
  earliest of them changes the state."""
  model = make_model(short_lengths=(4,))
  inputs = make_inputs(pads=(0, 0, 0))
  variables = numpy_normal_init(model, inputs)
  kernel = np.array(variables['params']['output']['kernel'])
  kernel[HIDDEN:] = 0.0  # [x^s ; x^l] @ kernel: rows D.. read the long-term state.
  variables = {'params': {**variables['params'],
                          'output': {**variables['params']['output'], 'kernel': kernel}}}
  base = jitted_hidden(model, variables, inputs)
  np.testing.assert_array_equal(
      base, jitted_hidden(model, variables, change_item(inputs, 0, MAX_LEN - 5, VOCAB[0])))
  assert not np.allclose(
      base[0], jitted_hidden(model, variables, change_item(inputs, 0, MAX_LEN - 4, VOCAB[0]))[0])


def test_relaxation_mixes_candidates_by_softmax_alpha():
  """x^s = Σ softmax(α)_k x^s(k): pushing α towards one candidate gives that candidate's
  model (the same weights with only that stack)."""
  model = make_model()
  inputs = make_inputs()
  variables = numpy_normal_init(model, inputs)
  params = dict(variables['params'])
  for index, k in enumerate((2, 5)):
    alpha = np.full(2, -1e4, np.float32)
    alpha[index] = 0.0
    relaxed = jitted_hidden(model, {'params': {**params, ARCH_PARAM: alpha}}, inputs)
    only = {name: value for name, value in params.items()
            if name != ARCH_PARAM and name not in (f'short_term_{j}' for j in (2, 5) if j != k)}
    np.testing.assert_allclose(
        relaxed, jitted_hidden(make_model(short_lengths=(k,)), {'params': only}, inputs),
        rtol=1e-5, atol=1e-6)


def test_side_fields_reach_the_state_through_the_fusion_layer():
  model = make_model()
  inputs = make_inputs()
  variables = numpy_normal_init(model, inputs)
  changed = inputs.copy()
  changed[0, -1, 1] = changed[0, -1, 1] % (VOCAB[1] - 1) + 1
  assert not np.allclose(jitted_hidden(model, variables, inputs)[0],
                         jitted_hidden(model, variables, changed)[0])


def test_padding_and_dropout():
  model = make_model()
  assert_short_input_is_left_padded(model, make_inputs, jitted_hidden, MAX_LEN)
  inputs = make_inputs()
  assert_dropout_is_keyed(model, numpy_normal_init(model, inputs), inputs)


@pytest.mark.parametrize('overrides, message', [
    (dict(short_lengths=(2, 13)), 'must lie in'),
    (dict(short_lengths=(0,)), 'must lie in'),
    (dict(short_lengths=(5, 5)), 'repeated'),
    (dict(short_lengths=()), 'at least one'),
    (dict(num_layers=0), 'num_layers'),
    (dict(sequence_hidden=0), 'sequence_hidden'),
])
def test_bad_config_is_a_clear_error(overrides, message):
  model = make_model(**overrides)
  with pytest.raises(ConfigError, match=message):
    model.init(jax.random.key(0), make_inputs(), train=False)


def test_prefix_training_beats_popularity(tmp_path):
  config = tiny_config('automlp', train__num_epochs=3, **QUIET)
  config.model.short_lengths = (4,)  # One k, as retrained: the search has its own tests.
  assert_beats_popularity(train.train_and_evaluate(config, str(tmp_path)))
