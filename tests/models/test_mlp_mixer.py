"""Tests of the sequence MLP-Mixer: Tolstikhin et al.'s maths, padding and training."""

import numpy as np
import pytest

import configs.mlp_mixer
import pmix_jax.models.mlp_mixer  # noqa: F401  (registers 'mlp_mixer')
from pmix_jax import models, train
from pmix_jax.errors import ConfigError
from pmix_jax.models.mlp_mixer import MLPMixer
from tests.conftest import tiny_config
from tests.models.common import (
    BATCH, MAX_LEN, PADS, QUIET, VOCAB, assert_beats_popularity, assert_dropout_is_keyed,
    assert_oldest_and_latest_behaviors_matter, assert_padding_rows_do_not_matter,
    assert_short_input_is_left_padded, float64, inputs_maker, jitted_apply, jitted_hidden,
    model_builder, numpy_normal_init)

HIDDEN = 8
make_model = model_builder(configs.mlp_mixer, VOCAB, MAX_LEN, hidden=HIDDEN)
make_inputs = inputs_maker(VOCAB, MAX_LEN, PADS)
init = numpy_normal_init


def test_registry_contract_and_shapes():
  """'mlp_mixer' is not causal; hidden [B, 1, D]; the item table is the input embedding;
  the MLPs are 4x as wide as the axis they mix."""
  assert models.MODELS['mlp_mixer'] is MLPMixer and MLPMixer.causal is False
  model = make_model()
  inputs = make_inputs()
  variables = init(model, inputs)
  state, table = jitted_apply(model, variables, inputs)
  params = variables['params']
  assert state.shape == (BATCH, 1, HIDDEN) and np.isfinite(state).all()
  np.testing.assert_array_equal(table, params['item_embed'])
  assert sorted(params) == ['block_0', 'block_1', 'final_norm', 'item_embed']
  assert params['block_0']['token_mixer']['w1'].shape == (4 * MAX_LEN, MAX_LEN)
  assert params['block_0']['channel_mixer']['w1']['kernel'].shape == (HIDDEN, 4 * HIDDEN)


# ------------------------------------------------------------------------ the maths


def numpy_layer_norm(x, params, eps=1e-6):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * params['scale'] + params['bias']


def numpy_gelu(x):  # Flax's (and the Flax MLP-Mixer's) tanh approximation.
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def numpy_mixer(items, params):
  """MLP-Mixer as in Tolstikhin et al., batch-major `[B, L, D]`: per block,
  `U = X + (W2 gelu(W1 LN(X)^T))^T` (token mixing over L), `Y = U + W4 gelu(W3 LN(U))`
  (channel mixing over D); then LayerNorm and the state at the last position."""
  x = params['item_embed'][items] * (items > 0)[..., None]
  for i in range(2):
    block = params[f'block_{i}']
    token, channel = block['token_mixer'], block['channel_mixer']
    y = numpy_layer_norm(x, block['token_norm']).transpose(0, 2, 1)  # [B, D, L]
    y = numpy_gelu(y @ token['w1'].T + token['b1'][:, 0]) @ token['w2'].T + token['b2'][:, 0]
    x = x + y.transpose(0, 2, 1)
    y = numpy_layer_norm(x, block['channel_norm'])
    y = numpy_gelu(y @ channel['w1']['kernel'] + channel['w1']['bias'])
    x = x + y @ channel['w2']['kernel'] + channel['w2']['bias']
  return numpy_layer_norm(x, params['final_norm'])[:, -1:]


def test_matches_numpy_mixer():
  """The sequence-major implementation computes the paper's batch-major Mixer blocks."""
  model = make_model()
  inputs = make_inputs()
  variables = init(model, inputs)
  params = float64(variables['params'])
  np.testing.assert_allclose(jitted_hidden(model, variables, inputs),
                             numpy_mixer(inputs[..., 0], params), rtol=1e-4, atol=1e-4)


def test_state_sees_the_oldest_behavior():
  """Token mixing carries every behavior, the oldest included, into the last state."""
  model = make_model()
  inputs = make_inputs()
  assert_oldest_and_latest_behaviors_matter(model, init(model, inputs), inputs, PADS, VOCAB[0])


# ------------------------------------------------------------------------ padding


def test_padding_embeds_to_zero_and_side_fields_are_ignored():
  """Item id 0 is a zero embedding: its table row does not matter; nor do side fields."""
  model = make_model()
  inputs = make_inputs()
  variables = init(model, inputs)
  assert_padding_rows_do_not_matter(model, variables, inputs, 'item_embed', [0],
                                    inputs[0, -1, 0])
  side = inputs.copy()
  side[..., 1:] = np.where(side[..., 1:] > 0, 1, 0)
  np.testing.assert_array_equal(jitted_hidden(model, variables, side),
                                jitted_hidden(model, variables, inputs))


def test_shorter_input_is_left_padded_to_max_len():
  assert_short_input_is_left_padded(make_model(), make_inputs, jitted_hidden, MAX_LEN)


# ------------------------------------------------------------------------ config, training


def test_dropout_is_keyed():
  model = make_model(dropout=0.5)
  inputs = make_inputs()
  assert_dropout_is_keyed(model, init(model, inputs), inputs, keys=(3, 4))


@pytest.mark.parametrize('overrides', [
    dict(num_layers=0), dict(token_mlp_ratio=0.0), dict(channel_mlp_ratio=-1.0),
    dict(dropout=1.0),
], ids=['no_layers', 'token_ratio', 'channel_ratio', 'dropout_one'])
def test_invalid_configs_raise(overrides):
  with pytest.raises(ConfigError):
    init(make_model(**overrides), make_inputs())


def test_beats_popularity_on_synthetic_data(tmp_path):
  results = train.train_and_evaluate(tiny_config('mlp_mixer', train__num_epochs=2, **QUIET),
                                     str(tmp_path))
  assert_beats_popularity(results)
