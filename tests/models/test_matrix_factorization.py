"""BPR-MF and FPMC: the scores are their papers' formulas, users come from the user field."""

import jax
import numpy as np
import pytest

import configs.bpr_mf
import configs.fpmc
from pmix_jax import models, train
from pmix_jax.errors import ConfigError
from tests.conftest import tiny_config

VOCAB = (9, 5)  # 8 items, 4 users (the derived `user` field).


def _build(name, vocab=VOCAB):
  cfg = {'bpr_mf': configs.bpr_mf, 'fpmc': configs.fpmc}[name].get_config().model
  cfg.hidden = 4
  return models.build(cfg, vocab_sizes=vocab, max_len=3)


def _inputs():
  items = np.array([[0, 3, 5], [2, 7, 1]])
  users = np.array([[0, 2, 2], [4, 4, 4]])
  return np.stack([items, users], axis=-1)


def test_fpmc_scores_are_mf_plus_factorised_transitions():
  model = _build('fpmc')
  inputs = _inputs()
  variables = model.init(jax.random.key(0), inputs, train=False)
  hidden, table = model.apply(variables, inputs, train=False)
  scores = np.asarray(hidden @ table.T)  # [B, L, V]
  p = {k: np.asarray(v) for k, v in variables['params'].items()}
  for b, t in [(0, 1), (0, 2), (1, 0), (1, 2)]:
    user, last = inputs[b, t, 1], inputs[b, t, 0]
    expected = p['item_user'] @ p['user_item'][user] + p['item_last'] @ p['last_item'][last]
    np.testing.assert_allclose(scores[b, t], expected, rtol=1e-5, atol=1e-6)
  assert not scores[0, 0].any()  # Padding position.


def test_bpr_mf_state_is_the_user_embedding_whatever_the_items():
  model = _build('bpr_mf')
  inputs = _inputs()
  variables = model.init(jax.random.key(0), inputs, train=False)
  hidden, table = model.apply(variables, inputs, train=False)
  users = np.asarray(variables['params']['user_embed'])
  np.testing.assert_allclose(hidden[1, 2], users[4])
  shuffled = inputs.copy()
  shuffled[..., 0] = shuffled[:, ::-1, 0]
  np.testing.assert_allclose(model.apply(variables, shuffled, train=False)[0][1], hidden[1])
  assert table.shape == (VOCAB[0], 4)


@pytest.mark.parametrize('name', ['bpr_mf', 'fpmc'])
def test_missing_user_field_is_a_clear_error(name):
  model = _build(name, vocab=(9,))
  with pytest.raises(ConfigError, match="add 'user' to config.data.features"):
    model.init(jax.random.key(0), _inputs()[..., :1], train=False)


@pytest.mark.parametrize('name', ['bpr_mf', 'fpmc'])
def test_beats_popularity_on_synthetic_data(name, tmp_path):
  results = train.train_and_evaluate(
      tiny_config(name, train__num_epochs=10, train__lr=1e-2), str(tmp_path))
  assert results['test']['NDCG@10'] > 1.5 * results['baselines']['popularity']['test']['NDCG@10']
