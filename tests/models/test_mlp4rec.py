"""Tests of MLP4Rec: the three mixers, feature mixing, weight sharing, padding, training."""

import jax
import numpy as np
import pytest
import scipy.special

import configs.mlp4rec
import pmix_jax.models.mlp4rec  # noqa: F401  (registers 'mlp4rec')
from pmix_jax import models, train
from pmix_jax.errors import ConfigError
from pmix_jax.models.mlp4rec import AxisMixer, MLP4Rec
from tests.conftest import tiny_config
from tests.models.common import (
    BATCH, MAX_LEN, PADS, QUIET, VOCAB, assert_beats_popularity, assert_dropout_is_keyed,
    assert_oldest_and_latest_behaviors_matter, assert_padding_rows_do_not_matter,
    assert_short_input_is_left_padded, float64, inputs_maker, jitted_apply, jitted_hidden,
    model_builder, num_params, numpy_normal_init)

HIDDEN = 8
# One layer unless overridden: fast to compile; the layers' weight sharing has tests of its own.
make_model = model_builder(configs.mlp4rec, VOCAB, MAX_LEN, hidden=HIDDEN, num_layers=1)
make_inputs = inputs_maker(VOCAB, MAX_LEN, PADS)
init = numpy_normal_init


@pytest.mark.parametrize('readout', ['item', 'concat'])
def test_registry_and_contract(readout):
  """Not causal; hidden [B, 1, D]; the item table is the item id field's embeddings."""
  assert models.MODELS['mlp4rec'] is MLP4Rec and MLP4Rec.causal is False
  model = make_model(readout=readout)
  inputs = make_inputs()
  variables = init(model, inputs)
  state, table = jitted_apply(model, variables, inputs)
  assert state.shape == (BATCH, 1, HIDDEN) and np.isfinite(state).all()
  np.testing.assert_array_equal(table, variables['params']['embeddings'][:VOCAB[0]])
  assert ('readout' in variables['params']) == (readout == 'concat')


# ------------------------------------------------------------------------ the mixers


def numpy_layer_norm(x, params, eps=1e-6):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * params['scale'] + params['bias']


def numpy_gelu(x):  # Exact, as PyTorch's nn.GELU in the reference.
  return 0.5 * x * (1 + scipy.special.erf(x / np.sqrt(2)))


AXIS_OF = dict(feature=0, sequence=1, channel=3)  # In the `[F, L, B, D]` layout.


def numpy_axis_mixer(x, params, axis):
  """`x + MLP(LN(x))` with the MLP along `axis`, written with the mixed axis moved last."""
  p = params
  y = np.moveaxis(numpy_layer_norm(x, p['norm']), AXIS_OF[axis], -1)
  if axis == 'channel':  # Weights [in, out].
    y = numpy_gelu(y @ p['w1'] + p['b1']) @ p['w2'] + p['b2']
  else:  # Weights [out, in], biases [out, 1].
    y = numpy_gelu(y @ p['w1'].T + p['b1'][:, 0]) @ p['w2'].T + p['b2'][:, 0]
  return x + np.moveaxis(y, -1, AXIS_OF[axis])


@pytest.mark.parametrize('axis', ['sequence', 'channel', 'feature'])
def test_axis_mixer_matches_numpy(axis):
  """Each mixer is a pre-norm residual MLP along its axis, the same for all the others (the
  sequence mixer: one MLP for every field), with widths 4x the mixed axis."""
  x = np.random.default_rng(0).normal(size=(3, 5, 2, 4)).astype(np.float32)  # [F, L, B, D]
  mixer = AxisMixer(axis, expansion=4.0, dropout=0.5)
  params = init(mixer, x, call=0)['params']
  n = x.shape[AXIS_OF[axis]]
  assert params['w1'].shape == ((n, 4 * n) if axis == 'channel' else (4 * n, n))
  y = jax.jit(lambda p, x: mixer.apply({'params': p}, x, call=0, train=False))(params, x)
  np.testing.assert_allclose(y, numpy_axis_mixer(x.astype(np.float64), float64(params), axis),
                             rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('axis', ['sequence', 'channel', 'feature'])
def test_only_the_feature_mixer_crosses_fields(axis):
  """Changing field 1 changes field 0's output through the feature mixer only."""
  x = np.random.default_rng(0).normal(size=(3, 5, 2, 4)).astype(np.float32)
  mixer = AxisMixer(axis, expansion=4.0, dropout=0.0)
  params = init(mixer, x, call=0)
  run = jax.jit(lambda x: mixer.apply(params, x, call=0, train=False))
  changed = x.copy()
  changed[1] += np.random.default_rng(1).normal(size=x.shape[1:])
  field0_moved = not np.allclose(run(changed)[0], run(x)[0], atol=1e-4)
  assert field0_moved == (axis == 'feature')


def test_dropout_masks_differ_per_layer_and_field():
  """A shared mixer draws new masks at every application (`call`) and for every field;
  the same call and key give the same masks."""
  x = np.ones((3, 5, 2, 4), np.float32) * np.arange(4, dtype=np.float32)  # Equal fields.
  mixer = AxisMixer('sequence', expansion=4.0, dropout=0.5)
  params = init(mixer, x, call=0)
  run = lambda call: mixer.apply(params, x, call=call, train=True,
                                 rngs={'dropout': jax.random.key(0)})
  first, again, second = jax.jit(lambda: (run(0), run(0), run(1)))()
  np.testing.assert_array_equal(first, again)
  assert not np.allclose(first, second)
  assert not np.allclose(first[0], first[1])


# ------------------------------------------------------------------------ the model


@pytest.mark.parametrize('readout', ['item', 'concat'])
def test_side_fields_reach_the_state(readout):
  """With either read-out, a side field at the last and at the oldest behavior changes the
  user state: the feature mixer fuses it into the item field."""
  model = make_model(readout=readout)
  inputs = make_inputs()
  assert_oldest_and_latest_behaviors_matter(model, init(model, inputs), inputs, PADS, VOCAB[2],
                                            field=2, atol=1e-4)


def test_weights_shared_across_layers():
  """share_layers=True: one sequence, one channel and one feature mixer whatever the depth;
  share_layers=False: num_layers of each."""
  inputs = make_inputs()
  shared = {n: init(make_model(num_layers=n), inputs) for n in (1, 4)}
  assert sorted(shared[4]['params']) == ['channel_mixer', 'embeddings', 'feature_mixer',
                                         'final_norm', 'sequence_mixer']
  assert num_params(shared[1]) == num_params(shared[4])
  mixers = sum(num_params({'params': shared[4]['params'][f'{axis}_mixer']})
               for axis in ('sequence', 'channel', 'feature'))
  separate = init(make_model(num_layers=4, share_layers=False), inputs)
  assert num_params(separate) == num_params(shared[4]) + 3 * mixers
  assert sorted(n for n in separate['params'] if n.startswith('layer_')) == sorted(
      f'layer_{i}_{axis}_mixer' for i in range(4) for axis in ('channel', 'feature',
                                                               'sequence'))
  # The same weights applied twice are a deeper model than applied once.
  one, two = make_model(num_layers=1), make_model(num_layers=2)
  assert not np.allclose(jitted_hidden(one, shared[4], inputs),
                         jitted_hidden(two, shared[4], inputs))


def test_sequence_and_channel_weights_shared_across_fields():
  """A third field adds its embedding rows and widens the feature mixer, nothing else."""
  two, three = VOCAB[:2], VOCAB
  count = {v: num_params(init(make_model(vocab=v), make_inputs(vocab=v))) for v in (two, three)}
  feature_mixer = lambda f: 2 * f * 4 * f + 4 * f + f  # w1, w2, b1, b2 for F fields.
  assert count[three] - count[two] == VOCAB[2] * HIDDEN + feature_mixer(3) - feature_mixer(2)
  params = init(make_model(), make_inputs())['params']
  assert params['sequence_mixer']['w1'].shape == (4 * MAX_LEN, MAX_LEN)  # No field axis.
  assert params['channel_mixer']['w1'].shape == (HIDDEN, 4 * HIDDEN)


def test_padding_embeds_to_zero():
  """Id 0 of any field is a zero embedding: the padding rows of the table do not matter."""
  model = make_model()
  inputs = make_inputs()
  assert_padding_rows_do_not_matter(model, init(model, inputs), inputs, 'embeddings',
                                    np.cumsum((0,) + VOCAB[:-1]),  # Each field's id 0.
                                    VOCAB[0] + inputs[0, -1, 1])


def test_shorter_input_is_left_padded_to_max_len():
  assert_short_input_is_left_padded(make_model(), make_inputs, jitted_hidden, MAX_LEN)


def test_dropout_is_keyed():
  model = make_model()
  inputs = make_inputs()
  assert_dropout_is_keyed(model, init(model, inputs), inputs, keys=(3, 4))


# ------------------------------------------------------------------------ config, training


@pytest.mark.parametrize('overrides', [
    dict(num_layers=0), dict(expansion=0.0), dict(readout='mean'), dict(dropout=1.0),
], ids=['no_layers', 'no_expansion', 'bad_readout', 'dropout_one'])
def test_invalid_configs_raise(overrides):
  with pytest.raises(ConfigError):
    init(make_model(**overrides), make_inputs())


def test_beats_popularity_on_synthetic_data(tmp_path):
  """The reference's lr 1e-4 and 4 layers are for 100 epochs; this tiny run learns in two
  with lr 3e-3 and one layer (the mixers and their sharing are tested above)."""
  config = tiny_config('mlp4rec', train__num_epochs=2, train__lr=3e-3, model__num_layers=1,
                       **QUIET)
  results = train.train_and_evaluate(config, str(tmp_path))
  assert_beats_popularity(results)
