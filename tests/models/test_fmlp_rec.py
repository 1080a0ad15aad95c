"""Tests of FMLP-Rec: the filter against numpy, padding, non-causality and training."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

import configs.fmlp_rec
import pmix_jax.models.fmlp_rec  # noqa: F401  (registers 'fmlp_rec')
from pmix_jax import models, train
from pmix_jax.errors import ConfigError
from pmix_jax.models.fmlp_rec import FilterBlock, FMLPRec, GlobalFilter
from tests.conftest import tiny_config
from tests.models.common import (
    BATCH, MAX_LEN, PADS, QUIET, VOCAB, assert_beats_popularity, assert_dropout_is_keyed,
    assert_oldest_and_latest_behaviors_matter, assert_short_input_is_left_padded, inputs_maker,
    jitted_hidden, model_builder, numpy_normal_init)

HIDDEN = 8
make_model = model_builder(configs.fmlp_rec, VOCAB, MAX_LEN, hidden=HIDDEN)
make_inputs = inputs_maker(VOCAB, MAX_LEN, PADS)

# Parameters N(0, 0.5): unit-scale filters make the blocks mix positions strongly (at their
# N(0, 0.02) init they barely do).
init = numpy_normal_init


def test_registry_and_contract():
  """'fmlp_rec' is FMLPRec, not causal: hidden [B, 1, D], the item table is the input's."""
  assert models.MODELS['fmlp_rec'] is FMLPRec and FMLPRec.causal is False
  model = make_model()
  inputs = make_inputs()
  variables = init(model, inputs)
  hidden, table = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, inputs)
  assert hidden.shape == (BATCH, 1, HIDDEN) and np.isfinite(hidden).all()
  np.testing.assert_array_equal(table, variables['params']['item_embed']['embedding'])
  assert table.shape == (VOCAB[0], HIDDEN)
  for i in range(2):  # The configured 2 blocks, each with a [L // 2 + 1, D] complex filter.
    block = variables['params'][f'block_{i}']['filter']
    assert block['filter_real'].shape == block['filter_imag'].shape == (MAX_LEN // 2 + 1,
                                                                        HIDDEN)
  assert 'block_2' not in variables['params']


# ------------------------------------------------------------------------ the filter


def filter_params(length, dim, seed=1):
  rng = np.random.default_rng(seed)
  real, imag = (rng.normal(size=(length // 2 + 1, dim)).astype(np.float32) for _ in range(2))
  return real, imag


@pytest.mark.parametrize('length', [12, 7])  # Even (a Nyquist bin) and odd.
def test_filter_matches_numpy_fft(length):
  """GlobalFilter is irfft(rfft(x) * W, n=L) along the sequence, orthonormal both ways."""
  x = np.random.default_rng(0).normal(size=(2, length, 5)).astype(np.float32)
  real, imag = filter_params(length, 5)
  y = GlobalFilter().apply({'params': {'filter_real': real, 'filter_imag': imag}}, x)
  expected = np.fft.irfft(np.fft.rfft(x, axis=1, norm='ortho') * (real + 1j * imag),
                          n=length, axis=1, norm='ortho')
  np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('length', [12, 7])
def test_filter_is_a_circular_convolution(length):
  """Orthonormal transforms both ways make the filter a circular convolution per channel,
  `y[t] = sum_k h[k] x[(t - k) mod L]` with `h = irfft(W)`, which sees every position."""
  x = np.random.default_rng(0).normal(size=(2, length, 5))
  real, imag = filter_params(length, 5)
  y = GlobalFilter().apply({'params': {'filter_real': real, 'filter_imag': imag}},
                           x.astype(np.float32))
  kernel = np.fft.irfft(real + 1j * imag, n=length, axis=0)  # [L, D]
  expected = np.zeros_like(x)
  for t in range(length):
    for k in range(length):
      expected[:, t] += kernel[k] * x[:, (t - k) % length]
  np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def numpy_layer_norm(x, params, eps=1e-12):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * params['scale'] + params['bias']


def test_filter_block_matches_numpy():
  """A block is LN(x + filter(x)), then LN(y + W2 gelu(W1 y)) with the exact GELU."""
  length, dim = 12, 6
  x = np.random.default_rng(0).normal(size=(2, length, dim)).astype(np.float32)
  block = FilterBlock(dropout=0.5, activation='gelu')
  params = init(block, x, scale=1.0)['params']  # Norms' scale and bias too.
  y = jax.jit(lambda p, x: block.apply({'params': p}, x, train=False))(params, x)

  p = jax.tree_util.tree_map(np.asarray, params)
  spectrum = np.fft.rfft(x, axis=1, norm='ortho') * (p['filter']['filter_real'] +
                                                    1j * p['filter']['filter_imag'])
  h = numpy_layer_norm(x + np.fft.irfft(spectrum, n=length, axis=1, norm='ortho'),
                       p['filter_norm'])
  inner = h @ p['ffn_in']['kernel'] + p['ffn_in']['bias']
  inner = 0.5 * inner * (1 + scipy.special.erf(inner / np.sqrt(2)))
  expected = numpy_layer_norm(h + inner @ p['ffn_out']['kernel'] + p['ffn_out']['bias'],
                              p['ffn_norm'])
  np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------ padding


def perturbed_padding_params(params, num_positions):
  """Changes the padding item row and the first `num_positions` position embeddings."""
  params = jax.tree_util.tree_map(jnp.asarray, params)
  # Random changes: a constant shift of a position's embedding would vanish in LayerNorm.
  rng = np.random.default_rng(2)
  embed = params['item_embed']['embedding'].at[0].add(rng.normal(size=HIDDEN))
  positions = params['position_embed'].at[:num_positions].add(
      rng.normal(size=(num_positions, HIDDEN)))
  return {**params, 'item_embed': {'embedding': embed}, 'position_embed': positions}


def test_padding_contributes_nothing():
  """With mask_padding, a padded position is zero: changing the padding row or the position
  embeddings of the first 3 positions changes only the row that has no padding there."""
  model = make_model()
  inputs = make_inputs()
  variables = init(model, inputs)
  base = jitted_hidden(model, variables, inputs)
  changed = jitted_hidden(model, {'params': perturbed_padding_params(variables['params'], 3)},
                          inputs)
  np.testing.assert_array_equal(changed[1:], base[1:])  # Rows padded by 3 and 7.
  assert not np.allclose(changed[0], base[0], atol=1e-3)  # Row 0: its positions count.


def test_every_block_reads_zeros_at_padded_positions():
  """Padded positions are zeroed again after every block, so no block's filter convolves
  the previous block's LayerNorm and feed-forward biases there."""
  model = make_model(num_layers=3)
  inputs = make_inputs()
  variables = init(model, inputs)

  def block_inputs(variables, inputs):
    seen = []

    def record(next_fun, args, kwargs, context):
      if isinstance(context.module, FilterBlock) and context.method_name == '__call__':
        seen.append(args[0])
      return next_fun(*args, **kwargs)
    with nn.intercept_methods(record):
      model.apply(variables, inputs, train=False)
    return seen

  seen = jax.jit(block_inputs)(variables, inputs)
  assert len(seen) == 3
  for x in seen:
    for b, pad in enumerate(PADS):
      np.testing.assert_array_equal(x[b, :pad], 0.0)
      assert (np.abs(x[b, pad:]).sum(-1) > 0).all()


def test_reference_padding_leaks_into_the_state():
  """mask_padding=False (the reference code's) lets padded positions' embeddings through."""
  model = make_model(mask_padding=False)
  inputs = make_inputs()
  variables = init(model, inputs)
  changed = jitted_hidden(model, {'params': perturbed_padding_params(variables['params'], 3)},
                          inputs)
  for b in (1, 2):
    assert not np.allclose(changed[b], jitted_hidden(model, variables, inputs)[b], atol=1e-3)


def test_shorter_input_is_left_padded_to_max_len():
  """A window shorter than max_len gives the same state as the same window left-padded."""
  assert_short_input_is_left_padded(make_model(), make_inputs, jitted_hidden, MAX_LEN)


# ------------------------------------------------------------------------ behaviour


def test_state_sees_the_whole_sequence():
  """The last state depends on the latest and on the oldest behavior (a global filter)."""
  model = make_model()
  inputs = make_inputs()
  assert_oldest_and_latest_behaviors_matter(model, init(model, inputs), inputs, PADS, VOCAB[0])


def test_uses_the_item_field_only():
  """Side fields do not change the state."""
  model = make_model()
  inputs = make_inputs()
  variables = init(model, inputs)
  changed = inputs.copy()
  changed[..., 1:] = np.where(changed[..., 1:] > 0, 1, 0)
  np.testing.assert_array_equal(jitted_hidden(model, variables, changed),
                                jitted_hidden(model, variables, inputs))


def test_dropout_is_keyed():
  """Evaluation is deterministic; training differs with the dropout key, not without."""
  model = make_model()
  inputs = make_inputs()
  assert_dropout_is_keyed(model, init(model, inputs), inputs, keys=(3, 4))


@pytest.mark.parametrize('overrides', [
    dict(num_layers=0), dict(activation='tanh'), dict(dropout=1.0),
], ids=['no_layers', 'bad_activation', 'dropout_one'])
def test_invalid_configs_raise(overrides):
  with pytest.raises(ConfigError):
    init(make_model(**overrides), make_inputs())


def test_unknown_model_key_raises():
  cfg = configs.fmlp_rec.get_config().model
  with pytest.raises(AttributeError):  # The config is locked: no new keys.
    cfg.num_heads = 2
  cfg.unlock()
  cfg.num_heads = 2
  with pytest.raises(ConfigError, match='num_heads'):
    models.build(cfg, vocab_sizes=VOCAB, max_len=MAX_LEN)


def test_beats_popularity_on_synthetic_data(tmp_path):
  results = train.train_and_evaluate(tiny_config('fmlp_rec', train__num_epochs=2, **QUIET),
                                     str(tmp_path))
  assert_beats_popularity(results)
