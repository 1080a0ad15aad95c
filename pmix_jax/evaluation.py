"""Full-ranking evaluation: explicit ranks with a stated tie policy, batched and jitted.

The rank of a target (0 = best) is

    rank = #{candidates scoring strictly higher} + tie_share * #{other candidates tied with it}

over every item except padding (and, with `mask_history`, except the user's earlier items;
the target itself is never excluded). `tie_share = 1` is pessimistic: a model that gives all
items the same score ranks every target last. A NaN target score ranks last. Ranks are never
read off the order of a sort or `top_k`, whose tie-breaking is arbitrary.

From a rank r: HR@K = [r < K], NDCG@K = [r < K] / log2(r + 2), MRR@K = [r < K] / (r + 1)
(MRR truncated at K, as RecBole); a fractional rank under `tie_share` in (0, 1) is used as is.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from pmix_jax.data import batches as batches_lib
from pmix_jax.data.sequences import SequenceData

ScoreFn = Callable[[Any, jax.Array], jax.Array]  # (params, inputs [B, L, F]) -> [B, V]


def ranks_from_scores(scores: jax.Array, targets: jax.Array, exclude: jax.Array | None,
                      tie_share: float) -> jax.Array:
  """`[B]` float ranks of `targets` `[B]` under `scores` `[B, V]`.

  `exclude` `[B, V]` bool marks items that are not candidates; padding (item 0) never is.
  """
  not_candidate = jnp.zeros(scores.shape, bool).at[:, 0].set(True)
  if exclude is not None:
    not_candidate = not_candidate | exclude
  rows = jnp.arange(scores.shape[0])
  not_candidate = not_candidate.at[rows, targets].set(False)
  target_score = scores[rows, targets]
  candidate = ~not_candidate
  higher = jnp.sum(candidate & (scores > target_score[:, None]), axis=1)
  tied = jnp.sum(candidate & (scores == target_score[:, None]), axis=1) - 1
  rank = higher + tie_share * tied
  return jnp.where(jnp.isnan(target_score), candidate.sum(axis=1) - 1, rank).astype(jnp.float32)


def metrics_from_ranks(ranks: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
  """HR/NDCG/MRR@K averaged over `ranks` `[N]` (0-based)."""
  ranks = np.asarray(ranks, np.float64)
  metrics = {}
  for k in ks:
    hit = ranks < k
    metrics[f'HR@{k}'] = float(hit.mean())
    metrics[f'NDCG@{k}'] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
    metrics[f'MRR@{k}'] = float(np.where(hit, 1.0 / (ranks + 1.0), 0.0).mean())
  return metrics


def history_mask(history: jax.Array, num_items_with_padding: int) -> jax.Array:
  """`[B, V]` bool from right-padded item lists `[B, H]` (0 entries mark nothing useful)."""
  rows = jnp.arange(history.shape[0])[:, None]
  return jnp.zeros((history.shape[0], num_items_with_padding), bool).at[rows, history].set(True)


@dataclasses.dataclass
class Evaluator:
  """Evaluates one split (all users that have a target in it) in a single jitted call.

  The split's inputs live on the devices, laid out `[num_batches, batch, ...]` with the batch
  axis sharded over the mesh; `lax.map` walks the batches inside the jit. Padding rows have
  target 0 and are dropped from the metrics, never from the split.
  """
  data: SequenceData
  split: str
  max_len: int
  batch_size: int
  mask_history: bool
  tie_share: float
  ks: tuple[int, ...]
  mesh: Mesh

  def __post_init__(self):
    rows = batches_lib.eval_rows(self.data, self.split)
    self.num_rows = len(rows)
    rows = batches_lib.pad_rows(rows, self.batch_size)
    num_batches = len(rows) // self.batch_size

    def lay_out(array: np.ndarray) -> jax.Array:
      array = array.reshape(num_batches, self.batch_size, *array.shape[1:])
      return jax.device_put(array, NamedSharding(self.mesh, P(None, 'data')))

    self.arrays = dict(
        inputs=lay_out(batches_lib.gather_inputs(self.data, rows, self.max_len)),
        targets=lay_out(batches_lib.gather_targets(self.data, rows, self.max_len, False)))
    if self.mask_history:
      self.arrays['history'] = lay_out(batches_lib.gather_history(self.data, rows))
    self._compiled: dict[ScoreFn, Callable] = {}

  def ranks(self, score_fn: ScoreFn, params: Any) -> np.ndarray:
    """`[num_rows]` ranks of this split's targets."""
    if score_fn not in self._compiled:
      self._compiled[score_fn] = jax.jit(self._rank_all(score_fn))
    ranks = np.asarray(self._compiled[score_fn](params, self.arrays)).reshape(-1)
    return ranks[:self.num_rows]

  def __call__(self, score_fn: ScoreFn, params: Any) -> dict[str, float]:
    return metrics_from_ranks(self.ranks(score_fn, params), self.ks)

  def _rank_all(self, score_fn: ScoreFn) -> Callable:
    vocab = self.data.vocab_sizes[0]

    def rank_batch(params, batch):
      scores = score_fn(params, batch['inputs']).astype(jnp.float32)
      exclude = history_mask(batch['history'], vocab) if 'history' in batch else None
      return ranks_from_scores(scores, batch['targets'], exclude, self.tie_share)

    return lambda params, arrays: jax.lax.map(lambda b: rank_batch(params, b), arrays)
