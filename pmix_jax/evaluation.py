"""Evaluation: explicit ranks with a stated tie policy, batched and jitted.

Protocols: `full` (default) ranks the target against every item; `uniform:N` and
`popularity:N` rank it against N sampled negatives only, as many papers do, never the
target, and with the suffix `:unseen` never an item of the user's history either (RecBole's
sampler: `popularity:100:unseen`); `grouped:N` (SURGE, MGNM) samples N uniform negatives
outside the user's history. Sampled protocols also report GAUC (`grouped_auc`). Sampled metrics are
much higher than full-ranking ones and do not order models reliably; they exist to compare
with papers, and every result names its protocol.

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
from pmix_jax.errors import ConfigError
from pmix_jax.mesh import DATA_AXIS

# (params, inputs [B, L, F]) -> [B, V] scores of every item; with a third argument, item ids
# `candidates` [B, C], -> [B, C] the scores of those items only (what sampled protocols ask).
ScoreFn = Callable[..., jax.Array]


def select(scores: jax.Array, candidates: jax.Array | None) -> jax.Array:
  """`scores` `[B, V]` of the items `candidates` `[B, C]` (all of them when None): how a
  ScoreFn that scores the whole catalogue anyway answers a candidates call."""
  return scores if candidates is None else jnp.take_along_axis(scores, candidates, axis=1)


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


def ranks_among_candidates(candidate_scores: jax.Array, tie_share: float) -> jax.Array:
  """`[B]` ranks of the targets among their sampled negatives, from `candidate_scores`
  `[B, 1 + N]`: the target's score first, then its N negatives'.

  The same tie policy as `ranks_from_scores`; a NaN target score ranks last (N).
  """
  target_score, negative_scores = candidate_scores[:, :1], candidate_scores[:, 1:]
  rank = (jnp.sum(negative_scores > target_score, axis=1)
          + tie_share * jnp.sum(negative_scores == target_score, axis=1))
  return jnp.where(jnp.isnan(target_score[:, 0]), negative_scores.shape[1],
                   rank).astype(jnp.float32)


def parse_protocol(protocol: str) -> tuple[str, int]:
  """'full' -> ('full', 0); 'uniform:100' -> ('uniform', 100); also 'popularity:N',
  'grouped:N', and any sampled one with the suffix ':unseen' (`avoids_history`)."""
  kind, _, count = protocol.removesuffix(':unseen').partition(':')
  if protocol == 'full':
    return 'full', 0
  if kind in ('uniform', 'popularity', 'grouped') and count.isdigit() and int(count) > 0:
    return kind, int(count)
  raise ConfigError(f"unknown config.eval.protocol {protocol!r}; known: 'full', "
                    "'uniform:N', 'popularity:N', 'grouped:N' (N > 0 sampled negatives), "
                    "the sampled ones also as e.g. 'popularity:N:unseen'")


def avoids_history(protocol: str) -> bool:
  """Whether a sampled protocol's negatives avoid the user's earlier items, not only the
  target: ':unseen' (RecBole's sampler), and 'grouped' always."""
  return protocol.endswith(':unseen') or parse_protocol(protocol)[0] == 'grouped'


def sample_negatives(data: SequenceData, split: str, protocol: str, seed: int,
                     chunk: int = 512) -> np.ndarray:
  """`[num_rows, N]` distinct negatives per target of `split`, never the target itself.

  'uniform' draws items uniformly; 'popularity' in proportion to their count in the whole
  dataset (all splits, as RecBole does). Without replacement, by the Gumbel-top-k trick.
  When the protocol `avoids_history` (':unseen'; 'grouped', SURGE's and MGNM's, which is
  uniform), the user's earlier items are not drawn either.
  """
  kind, count = parse_protocol(protocol)
  exclude_history = avoids_history(protocol)
  rows = batches_lib.eval_rows(data, split)
  targets = batches_lib.gather_targets(data, rows, 1, False)
  vocab = data.vocab_sizes[0]
  weights = (np.bincount(data.behaviors[1:, 0], minlength=vocab).astype(np.float64)
             if kind == 'popularity' else np.ones(vocab))
  weights[0] = 0.0
  log_weights = np.log(weights, out=np.full(vocab, -np.inf), where=weights > 0)
  rng = np.random.default_rng([seed, {'valid': 0, 'test': 1}[split]])
  negatives = np.empty((len(rows), count), np.int32)
  for begin in range(0, len(rows), chunk):
    part = slice(begin, begin + chunk)
    keys = log_weights + rng.gumbel(size=(len(targets[part]), vocab))
    keys[np.arange(len(keys)), targets[part]] = -np.inf
    if exclude_history:
      history = batches_lib.gather_history(data, rows.take(np.arange(len(rows))[part]))
      keys[np.arange(len(keys))[:, None], history] = -np.inf
    available = np.isfinite(keys).sum(axis=1).min()
    if available < count:
      raise ConfigError(f'protocol {protocol!r} needs {count} negatives per target, but a '
                        f'user of {data.source} has only {available} items to draw from')
    negatives[part] = np.argpartition(-keys, count - 1, axis=1)[:, :count]
  return negatives


def grouped_auc(users: np.ndarray, candidate_scores: np.ndarray) -> float:
  """GAUC (SURGE, MGNM): each user's AUC over all pairs of their targets and their pooled
  negatives, ties counting one half, averaged with weights = the user's rows (targets and
  negatives). `candidate_scores` `[R, 1 + N]`: row r's target score, then its negatives'.

  Vectorised: Mann-Whitney from ranks within each user, ties given their mean rank.
  """
  rows, width = candidate_scores.shape
  user = np.repeat(users, width)
  score = candidate_scores.reshape(-1).astype(np.float64)
  positive = np.zeros((rows, width), bool)
  positive[:, 0] = True
  positive = positive.reshape(-1)
  order = np.lexsort((score, user))
  user, score, positive = user[order], score[order], positive[order]
  # Mean 1-based rank within the user of each run of equal (user, score).
  new_group = np.concatenate([[True], (user[1:] != user[:-1]) | (score[1:] != score[:-1])])
  group = np.cumsum(new_group) - 1
  user_first = np.concatenate([[True], user[1:] != user[:-1]])
  user_offset = np.maximum.accumulate(np.where(user_first, np.arange(len(user)), 0))
  position = np.arange(len(user)) - user_offset + 1.0
  group_mean = np.bincount(group, position) / np.bincount(group)
  rank = group_mean[group]
  ids, user_index = np.unique(user, return_inverse=True)
  n_pos = np.bincount(user_index, positive).astype(np.float64)
  n_neg = np.bincount(user_index, ~positive).astype(np.float64)
  rank_sum = np.bincount(user_index, np.where(positive, rank, 0.0))
  auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
  weight = n_pos + n_neg
  return float((auc * weight).sum() / weight.sum())


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
  """Evaluates one split (all users that have a target in it) in a single jitted call per
  batch width.

  The split's inputs live on the devices, laid out `[num_batches, batch, ...]` with the batch
  axis sharded over the mesh; `lax.map` walks the batches inside the jit. Padding rows have
  target 0 and are dropped from the metrics, never from the split. With `length_buckets`
  (`batches.TrainBatches`), the rows are grouped by the bucket of their length, each group
  laid out at its own width; a row's rank does not depend on its group.
  """
  data: SequenceData
  split: str
  max_len: int
  batch_size: int
  mask_history: bool
  tie_share: float
  ks: tuple[int, ...]
  mesh: Mesh
  negatives: np.ndarray | None = None  # [rows of the split, N]: a sampled protocol.
  length_buckets: tuple[int, ...] = ()

  def __post_init__(self):
    rows = batches_lib.eval_rows(self.data, self.split)
    self.num_rows = len(rows)
    self.users = self.data.owner[rows.end - 1]  # [num_rows] user index of each target.
    if self.negatives is not None and self.negatives.shape[0] != self.num_rows:
      raise ConfigError(f'{len(self.negatives)} rows of negatives for {self.num_rows} '
                        f'{self.split} targets')
    widths = np.array([batches_lib.batch_width(n, self.max_len, self.length_buckets)
                       for n in range(self.max_len + 1)])[
                           batches_lib.row_lengths(rows, self.max_len)]
    # (the split's row index of each laid-out row, its arrays), one group per width.
    self.groups = [self._lay_out(rows, np.flatnonzero(widths == width), int(width))
                   for width in np.unique(widths)]
    self._compiled: dict[ScoreFn, Callable] = {}

  def _lay_out(self, rows: batches_lib.Rows, index: np.ndarray,
               width: int) -> tuple[np.ndarray, dict[str, jax.Array]]:
    """The rows `index` of the split, `width` wide, padded to whole batches, on the mesh."""
    group = batches_lib.pad_rows(rows.take(index), self.batch_size)
    num_batches = len(group) // self.batch_size

    def lay_out(array: np.ndarray) -> jax.Array:
      array = array.reshape(num_batches, self.batch_size, *array.shape[1:])
      return jax.device_put(array, NamedSharding(self.mesh, P(None, DATA_AXIS)))

    arrays = dict(inputs=lay_out(batches_lib.gather_inputs(self.data, group, width)),
                  targets=lay_out(batches_lib.gather_targets(self.data, group, width, False)))
    if self.negatives is not None:
      negatives = self.negatives[index]
      arrays['negatives'] = lay_out(np.concatenate(
          [negatives, np.ones((len(group) - len(index), negatives.shape[1]),
                              negatives.dtype)]))
    elif self.mask_history:
      arrays['history'] = lay_out(batches_lib.gather_history(self.data, group))
    return index, arrays

  def outputs(self, score_fn: ScoreFn, params: Any) -> dict[str, np.ndarray]:
    """This split's `ranks` `[num_rows]` and, under a sampled protocol, the
    `candidate_scores` `[num_rows, 1 + N]` (the target's score first)."""
    if score_fn not in self._compiled:
      self._compiled[score_fn] = jax.jit(self._rank_all(score_fn))
    found = {}
    for index, arrays in self.groups:
      outputs = self._compiled[score_fn](params, arrays)
      for name, value in outputs.items():
        value = np.asarray(value).reshape(-1, *value.shape[2:])
        if name not in found:
          found[name] = np.empty((self.num_rows, *value.shape[1:]), value.dtype)
        found[name][index] = value[:len(index)]
    return found

  def ranks(self, score_fn: ScoreFn, params: Any) -> np.ndarray:
    """`[num_rows]` ranks of this split's targets."""
    return self.outputs(score_fn, params)['ranks']

  def __call__(self, score_fn: ScoreFn, params: Any) -> dict[str, float]:
    outputs = self.outputs(score_fn, params)
    metrics = metrics_from_ranks(outputs['ranks'], self.ks)
    if 'candidate_scores' in outputs:
      metrics['GAUC'] = grouped_auc(self.users, outputs['candidate_scores'])
    return metrics

  def _rank_all(self, score_fn: ScoreFn) -> Callable:
    vocab = self.data.vocab_sizes[0]

    def rank_batch(params, batch):
      if 'negatives' in batch:  # Only the target and its negatives are scored.
        candidates = jnp.concatenate([batch['targets'][:, None], batch['negatives']], axis=1)
        scores = score_fn(params, batch['inputs'], candidates).astype(jnp.float32)
        return dict(ranks=ranks_among_candidates(scores, self.tie_share),
                    candidate_scores=scores)
      scores = score_fn(params, batch['inputs']).astype(jnp.float32)
      exclude = history_mask(batch['history'], vocab) if 'history' in batch else None
      return dict(ranks=ranks_from_scores(scores, batch['targets'], exclude, self.tie_share))

    return lambda params, arrays: jax.lax.map(lambda b: rank_batch(params, b), arrays)
