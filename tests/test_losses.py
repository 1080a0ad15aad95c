"""The training losses of `pmix_jax.losses` against direct computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pmix_jax import losses


def _inputs(seed=0, batch=3, length=4, dim=5, vocab=7):
  keys = jax.random.split(jax.random.key(seed), 3)
  hidden = jax.random.normal(keys[0], (batch, length, dim))
  table = jax.random.normal(keys[1], (vocab, dim))
  targets = jax.random.randint(keys[2], (batch, length), 1, vocab)
  return hidden, table, targets.at[0, :2].set(0)  # Two ignored (padding) targets.


def test_softmax_loss_is_cross_entropy_over_real_items_and_targets():
  hidden, table, targets = _inputs()
  logits = np.einsum('btd,vd->btv', hidden, table)[..., 1:]  # Item 0 is no class.
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  real = np.asarray(targets) > 0
  expected = -np.take_along_axis(log_probs, np.asarray(targets)[..., None] - 1, -1)[..., 0]
  loss = losses.softmax_loss(hidden, table, targets, None, 0)
  np.testing.assert_allclose(loss, expected[real].mean(), rtol=1e-5)


def test_sampled_softmax_with_every_item_sampled_equals_full_softmax():
  """Uniform negatives covering the catalogue (accidental hits masked) give the full loss."""
  hidden, table, targets = _inputs()
  full = losses.softmax_loss(hidden, table, targets, None, 0)
  # 2,000 uniform draws over 6 items cover all of them; duplicates change the sum, so
  # compare against the formula with the same draws instead.
  key = jax.random.key(3)
  negatives = jax.random.randint(key, (2000,), 1, table.shape[0])
  assert set(np.asarray(negatives).tolist()) == set(range(1, table.shape[0]))
  sampled = losses.sampled_softmax_loss(hidden, table, targets, key, 2000)
  positive = np.einsum('btd,btd->bt', hidden, table[targets])
  negative = np.einsum('btd,sd->bts', hidden, table[negatives])
  negative = np.where(np.asarray(negatives) == np.asarray(targets)[..., None], -np.inf, negative)
  logits = np.concatenate([positive[..., None], negative], -1)
  per_target = np.log(np.exp(logits).sum(-1)) - positive
  real = np.asarray(targets) > 0
  np.testing.assert_allclose(sampled, per_target[real].mean(), rtol=1e-5)
  assert sampled > full  # Duplicated negatives only add mass.


def test_bce_loss_matches_its_formula():
  hidden, table, targets = _inputs()
  key = jax.random.key(4)
  loss = losses.bce_loss(hidden, table, targets, key, 2)
  negatives = jax.random.randint(key, targets.shape + (2,), 1, table.shape[0])
  positive = np.einsum('btd,btd->bt', hidden, table[targets])
  negative = np.einsum('btd,btsd->bts', hidden, table[negatives])
  log_sigmoid = lambda x: -np.log1p(np.exp(-x))
  negative_term = np.where(np.asarray(negatives) == np.asarray(targets)[..., None], 0.0,
                           log_sigmoid(-negative)).sum(-1)
  real = np.asarray(targets) > 0
  np.testing.assert_allclose(loss, (-log_sigmoid(positive) - negative_term)[real].mean(),
                             rtol=1e-5)


def test_bpr_loss_matches_its_formula():
  hidden, table, targets = _inputs()
  key = jax.random.key(5)
  loss = losses.bpr_loss(hidden, table, targets, key, 3)
  negatives = np.asarray(jax.random.randint(key, targets.shape + (3,), 1, table.shape[0]))
  positive = np.einsum('btd,btd->bt', hidden, table[targets])[..., None]
  negative = np.einsum('btd,btsd->bts', hidden, table[negatives])
  pairs = np.where(negatives == np.asarray(targets)[..., None], 0.0,
                   np.log1p(np.exp(-(positive - negative))))
  real = np.asarray(targets) > 0
  np.testing.assert_allclose(loss, pairs.mean(-1)[real].mean(), rtol=1e-5)


@pytest.mark.parametrize('loss', sorted(losses.LOSSES))
def test_every_loss_has_finite_gradients_with_padding(loss):
  hidden, table, targets = _inputs()
  grads = jax.grad(lambda h, t: losses.LOSSES[loss](h, t, targets, jax.random.key(0), 3),
                   argnums=(0, 1))(hidden, table)
  assert all(bool(jnp.isfinite(g).all()) for g in grads)
  assert not np.asarray(grads[0])[0, :2].any()  # Ignored targets get no gradient.
