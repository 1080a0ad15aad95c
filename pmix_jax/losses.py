"""Training losses on the model contract's outputs.

Each maps `(hidden [B, T, D], item_table [V, D], targets [B, T], key, num_negatives)` to the
mean loss over the targets > 0 (0 is padding: no target). Models with a training signal of
their own (masked items, pairs) call these from their `training_loss`.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

NEG_INF = -1e9  # Finite, so that masked entries give zero (not NaN) gradients.


def _masked_mean(per_target: jax.Array, targets: jax.Array) -> jax.Array:
  valid = targets > 0
  return jnp.sum(jnp.where(valid, per_target, 0.0)) / jnp.maximum(valid.sum(), 1)


def softmax_loss(hidden, table, targets, key, num_negatives):
  del key, num_negatives
  # A 2-D product: XLA's CPU dot is much slower on the equivalent 3-D einsum.
  logits = (hidden.reshape(-1, hidden.shape[-1]) @ table.T).reshape(*targets.shape, -1)
  logits = jnp.where(jnp.arange(table.shape[0]) == 0, NEG_INF, logits)  # Padding is no class.
  return _masked_mean(optax.softmax_cross_entropy_with_integer_labels(logits, targets), targets)


def sampled_softmax_loss(hidden, table, targets, key, num_negatives):
  """Cross-entropy over the target and `num_negatives` uniform items shared by the batch."""
  negatives = jax.random.randint(key, (num_negatives,), 1, table.shape[0])
  positive = jnp.sum(hidden * table[targets], axis=-1)
  negative = jnp.einsum('btd,sd->bts', hidden, table[negatives])
  return _masked_mean(sampled_cross_entropy(positive, negative, negatives, targets), targets)


def sampled_cross_entropy(positive: jax.Array, negative: jax.Array, negatives: jax.Array,
                          targets: jax.Array) -> jax.Array:
  """`-log softmax` of each target's score `positive` `[...]` against the scores `negative`
  `[..., S]` of the shared items `negatives` `[S]`; `targets` broadcasts against `positive`.
  A negative equal to its target (an accidental hit) is left out."""
  negative = jnp.where(negatives == targets[..., None], NEG_INF, negative)
  logits = jnp.concatenate([positive[..., None], negative], axis=-1)
  return jax.nn.logsumexp(logits, axis=-1) - positive


def bce_loss(hidden, table, targets, key, num_negatives):
  """Binary cross-entropy, the target against `num_negatives` uniform items of its own."""
  negatives = jax.random.randint(key, targets.shape + (num_negatives,), 1, table.shape[0])
  positive = jnp.sum(hidden * table[targets], axis=-1)
  negative = jnp.einsum('btd,btsd->bts', hidden, table[negatives])
  negative_term = jnp.where(negatives == targets[..., None], 0.0,
                            jax.nn.log_sigmoid(-negative)).sum(-1)
  return _masked_mean(-jax.nn.log_sigmoid(positive) - negative_term, targets)


def bpr_loss(hidden, table, targets, key, num_negatives):
  """Bayesian personalised ranking (Rendle et al., UAI 2009): `-log σ(s_target - s_neg)`,
  averaged over `num_negatives` uniform items of each target's own (an item equal to the
  target counts for nothing)."""
  negatives = jax.random.randint(key, targets.shape + (num_negatives,), 1, table.shape[0])
  positive = jnp.sum(hidden * table[targets], axis=-1, keepdims=True)
  negative = jnp.einsum('btd,btsd->bts', hidden, table[negatives])
  pairs = jnp.where(negatives == targets[..., None], 0.0,
                    -jax.nn.log_sigmoid(positive - negative))
  return _masked_mean(pairs.mean(-1), targets)


LOSSES: dict[str, Callable] = dict(
    softmax=softmax_loss, sampled_softmax=sampled_softmax_loss, bce=bce_loss, bpr=bpr_loss)
