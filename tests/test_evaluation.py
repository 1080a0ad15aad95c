"""Tests of `pmix_jax.evaluation` against ranks and metrics computed by hand."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pmix_jax.data import batches, synthetic
from pmix_jax.data.sequences import InteractionLog, build_sequences
from pmix_jax.errors import ConfigError
from pmix_jax.evaluation import (Evaluator, grouped_auc, metrics_from_ranks,
                                 parse_protocol, ranks_among_candidates, ranks_from_scores,
                                 sample_negatives, select)

NAN = float('nan')
_ranks_jit = jax.jit(ranks_from_scores)


def ranks(scores, targets, exclude=None, tie_share=1.0):
  exclude = None if exclude is None else jnp.asarray(exclude, bool)
  out = _ranks_jit(jnp.asarray(scores, jnp.float32), jnp.asarray(targets), exclude, tie_share)
  return np.asarray(out)


def test_counts_strictly_higher_and_ignores_padding():
  """Rank = candidates scoring strictly higher; item 0 never counts, even scoring highest."""
  scores = [[9.0, 0.5, 0.1, 0.9, 0.3, 0.7],
            [9.0, 0.5, 0.1, 0.9, 0.3, 0.7],
            [9.0, 0.5, 0.1, 0.9, 0.3, 0.7]]
  # Target 4 (0.3): items 1 (0.5), 3 (0.9), 5 (0.7) are higher -> 3.
  # Target 3 (0.9): nothing but padding is higher -> 0.  Target 2 (0.1): all 4 others -> 4.
  for tie_share in (0.0, 0.5, 1.0):
    np.testing.assert_array_equal(ranks(scores, [4, 3, 2], tie_share=tie_share), [3, 0, 4])


def test_ties_are_shared_by_tie_share():
  """A target tied with 2 other candidates gets #higher + tie_share * 2."""
  # Target 2 (0.5): item 3 higher, items 1 and 4 tied; item 0 also 0.5 but is padding.
  scores = [[0.5, 0.5, 0.5, 0.9, 0.5, 0.1]]
  assert ranks(scores, [2], tie_share=0.0)[0] == 1.0
  assert ranks(scores, [2], tie_share=0.5)[0] == 2.0
  assert ranks(scores, [2], tie_share=1.0)[0] == 3.0


def test_exclude_removes_items_but_never_the_target():
  """Excluded items are not candidates; the target stays one even if it is excluded."""
  scores = [[0.0, 0.9, 0.8, 0.7, 0.6, 0.5],
            [0.0, 0.6, 0.6, 0.9, 0.6, 0.6]]
  targets = [4, 2]
  exclude = [[False, True, False, True, True, False],  # Items 1, 3 and the target 4.
             [False, True, False, False, False, True]]  # Tied items 1 and 5.
  # Row 0 without exclusion: items 1, 2, 3 higher -> 3; with it only item 2 -> 1.
  # Row 1 without exclusion: item 3 higher, items 1, 4, 5 tied -> 1 + 3 = 4; with it the
  # ties are item 4 only -> 1 + 1 = 2.
  np.testing.assert_array_equal(ranks(scores, targets), [3, 4])
  np.testing.assert_array_equal(ranks(scores, targets, exclude), [1, 2])
  # The target excluded on its own changes nothing.
  only_target = [[False, False, False, False, True, False],
                 [False, False, True, False, False, False]]
  np.testing.assert_array_equal(ranks(scores, targets, only_target), [3, 4])


def test_nan_target_ranks_last():
  """A NaN target score ranks last: number of candidates - 1."""
  scores = [[0.0, NAN, 0.3, 0.2, 0.1, 0.4]]
  # 5 candidates (items 1..5) -> 4; with item 2 excluded, 4 candidates -> 3.
  assert ranks(scores, [1])[0] == 4.0
  assert ranks(scores, [1], tie_share=0.0)[0] == 4.0
  exclude = [[False, False, True, False, False, False]]
  assert ranks(scores, [1], exclude)[0] == 3.0


def test_nan_on_other_item_is_ignored():
  """A NaN score on a non-target is neither higher nor tied."""
  scores = [[0.0, NAN, 0.3, 0.2, 0.1, 0.4]]
  # Target 3 (0.2): items 2 (0.3) and 5 (0.4) higher -> 2.
  assert ranks(scores, [3])[0] == 2.0
  assert ranks(scores, [3], tie_share=0.0)[0] == 2.0


def test_constant_scores_rank_last_under_pessimistic_ties():
  """A model scoring everything equal gets the worst rank under tie_share = 1."""
  scores = np.ones((3, 6))
  # 5 candidates -> rank 4 for any target.
  np.testing.assert_array_equal(ranks(scores, [1, 3, 5]), [4, 4, 4])
  # 2 non-target items excluded -> 3 candidates -> rank 2.
  exclude = np.zeros((3, 6), bool)
  exclude[:, [2, 4]] = True
  np.testing.assert_array_equal(ranks(scores, [1, 3, 5], exclude), [2, 2, 2])
  # Optimistic ties: rank 0.
  np.testing.assert_array_equal(ranks(scores, [1, 3, 5], tie_share=0.0), [0, 0, 0])


def test_metrics_from_integer_ranks():
  """HR/NDCG/MRR@K of ranks [0, 1, 4, 12], computed by hand."""
  metrics = metrics_from_ranks(np.array([0, 1, 4, 12]), (1, 5, 20))
  assert metrics['HR@1'] == pytest.approx(0.25)
  assert metrics['NDCG@1'] == pytest.approx(0.25)
  assert metrics['MRR@1'] == pytest.approx(0.25)
  assert metrics['HR@5'] == pytest.approx(0.75)
  assert metrics['NDCG@5'] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 4)
  assert metrics['MRR@5'] == pytest.approx((1 + 1 / 2 + 1 / 5) / 4)
  assert metrics['HR@20'] == pytest.approx(1.0)
  assert metrics['NDCG@20'] == pytest.approx(
      (1 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(14)) / 4)
  assert metrics['MRR@20'] == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 13) / 4)
  assert set(metrics) == {f'{m}@{k}' for m in ('HR', 'NDCG', 'MRR') for k in (1, 5, 20)}


def test_metrics_from_fractional_ranks():
  """A fractional rank (ties shared) is used as is, including at the K boundary."""
  metrics = metrics_from_ranks([0.5, 1.0], (1,))
  assert metrics['HR@1'] == pytest.approx(0.5)
  assert metrics['NDCG@1'] == pytest.approx((1 / math.log2(2.5)) / 2)
  assert metrics['MRR@1'] == pytest.approx((1 / 1.5) / 2)


# Evaluator on a hand-written dataset: raw item ids 1..5 map to the same indices, and the
# fixed scores rank item i at i - 1 (item 1 best); padding item 0 scores highest of all, so a
# padding row (target 0) would rank 0 if it were counted.
SCORES = jnp.array([10.0, 5.0, 4.0, 3.0, 2.0, 1.0])
V = 6
USER_ITEMS = {
    1: [3, 1, 2, 5],  # train [3, 1], valid 2, test 5
    2: [4, 2, 4],  # train [4], valid 2, test 4 (test target also in its history)
    3: [1, 2, 3, 4, 5],  # train [1, 2, 3], valid 4, test 5
    4: [5, 3],  # train only
}


def fixed_scores(params, inputs, candidates=None):
  return select(jnp.broadcast_to(params, (inputs.shape[0], V)), candidates)


@pytest.fixture(name='data', scope='module')
def fixture_data():
  user = np.concatenate([[u] * len(items) for u, items in USER_ITEMS.items()])
  item = np.concatenate(list(USER_ITEMS.values()))
  log = InteractionLog(user=user, item=item, timestamp=np.arange(len(user)),
                       fields=dict(action=np.full(len(user), 3)), source='hand-written')
  data = build_sequences(log, ('action',))
  np.testing.assert_array_equal(data.item_ids, [1, 2, 3, 4, 5])
  return data


def make_evaluator(data, split, mask_history):
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ('data',))
  return Evaluator(data=data, split=split, max_len=3, batch_size=2, mask_history=mask_history,
                   tie_share=1.0, ks=(1, 5), mesh=mesh)


@pytest.mark.parametrize('split, mask_history, expected', [
    # Valid targets 2, 2, 4 -> ranks 1, 1, 3.
    ('valid', False, [1, 1, 3]),
    # Masking training items: user 1 loses item 1 above 2 -> 0; user 2's history {4} is
    # below 2 -> 1; user 3 loses 1, 2, 3 above 4 -> 0.
    ('valid', True, [0, 1, 0]),
    # Test targets 5, 4, 5 -> ranks 4, 3, 4.
    ('test', False, [4, 3, 4]),
    # History now includes the validation item: user 1 {3, 1, 2} leaves only 4 above 5 -> 1;
    # user 2 {4, 2} leaves 1, 3 above 4 (4 itself stays a candidate) -> 2; user 3 -> 0.
    ('test', True, [1, 2, 0]),
])
def test_evaluator_ranks(data, split, mask_history, expected):
  """Ranks of the 3 evaluated users; the padded last batch adds no rank."""
  evaluator = make_evaluator(data, split, mask_history)
  assert evaluator.num_rows == 3
  out = evaluator.ranks(fixed_scores, SCORES)
  assert out.shape == (3,)
  np.testing.assert_array_equal(out, expected)


def test_evaluator_metrics_ignore_padding_rows(data):
  """Metrics average over the 3 evaluated users only (a padding row would have rank 0)."""
  metrics = make_evaluator(data, 'valid', False)(fixed_scores, SCORES)
  # Ranks [1, 1, 3]: no hit at 1; all hits at 5.
  assert metrics['HR@1'] == 0.0
  assert metrics['HR@5'] == pytest.approx(1.0)
  assert metrics['NDCG@5'] == pytest.approx((2 / math.log2(3) + 1 / math.log2(5)) / 3)
  assert metrics['MRR@5'] == pytest.approx((1 / 2 + 1 / 2 + 1 / 4) / 3)


def test_evaluator_reuses_compiled_function_across_params(data):
  """The same score_fn with new params gives the ranks of the new scores."""
  evaluator = make_evaluator(data, 'valid', False)
  evaluator.ranks(fixed_scores, SCORES)
  reversed_scores = jnp.array([10.0, 1.0, 2.0, 3.0, 4.0, 5.0])  # Item 5 best, rank = 5 - i.
  np.testing.assert_array_equal(evaluator.ranks(fixed_scores, reversed_scores), [3, 3, 1])


def test_ranks_among_candidates_by_hand():
  """Only the sampled negatives compete; ties follow tie_share; NaN ranks last."""
  scores = jnp.asarray([[0.0, 0.9, 0.5, 0.5, 0.1, 0.7],
                        [0.0, NAN, 0.5, 0.5, 0.1, 0.7]], jnp.float32)
  candidates = jnp.asarray([[2, 3, 4, 5], [1, 3, 4, 5]])  # The target, then its negatives.
  candidate_scores = select(scores, candidates)
  # Row 0: item 5 (0.7) higher, item 3 tied, item 4 lower; item 1 (0.9) is not sampled.
  np.testing.assert_array_equal(ranks_among_candidates(candidate_scores, 0.0)[:1], [1])
  np.testing.assert_array_equal(ranks_among_candidates(candidate_scores, 1.0), [2, 3])


def test_sampled_protocol_scores_only_the_target_and_its_negatives(data):
  """Under a sampled protocol the score function is asked for `[target, negatives...]` of
  each row, never for the whole catalogue (a target-aware model scores 1 + N items, not V);
  the ranks and GAUC come from those scores."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ('data',))
  negatives = np.array([[1, 3], [5, 1], [3, 1]])  # Valid targets are 2, 2, 4.
  evaluator = Evaluator(data=data, split='valid', max_len=3, batch_size=2, mask_history=False,
                        tie_share=1.0, ks=(1, 5), mesh=mesh, negatives=negatives)

  def candidates_only(params, inputs, candidates=None):
    assert candidates is not None, 'a sampled protocol asked for every item'
    return params[candidates]  # Item i scores params[i].

  outputs = evaluator.outputs(candidates_only, SCORES)
  np.testing.assert_array_equal(outputs['candidate_scores'],
                                np.asarray(SCORES)[[[2, 1, 3], [2, 5, 1], [4, 3, 1]]])
  np.testing.assert_array_equal(outputs['ranks'], evaluator.ranks(fixed_scores, SCORES))


def _synthetic(num_users=40):
  return build_sequences(synthetic.generate(num_users, 60, 4, 12, seed=1), ())


@pytest.mark.parametrize('protocol', ['uniform:20', 'popularity:20'])
def test_sampled_negatives_are_distinct_never_the_target_and_seeded(protocol):
  data = _synthetic()
  negatives = sample_negatives(data, 'test', protocol, seed=3)
  targets = batches.gather_targets(data, batches.eval_rows(data, 'test'), 1, False)
  assert negatives.shape == (len(targets), 20)
  assert all(len(set(row)) == 20 for row in negatives.tolist())
  assert not (negatives == targets[:, None]).any() and (negatives > 0).all()
  np.testing.assert_array_equal(negatives, sample_negatives(data, 'test', protocol, 3))
  assert not np.array_equal(negatives, sample_negatives(data, 'test', protocol, 4))


def test_popularity_negatives_follow_item_counts():
  """Popular items are drawn far more often than rare ones; uniform draws are flat."""
  data = _synthetic(400)
  counts = np.bincount(data.behaviors[1:, 0], minlength=data.vocab_sizes[0])[1:]
  popular, rare = np.argsort(-counts)[:10] + 1, np.argsort(counts)[:10] + 1
  for protocol, more in [('popularity:5', True), ('uniform:5', False)]:
    drawn = np.bincount(sample_negatives(data, 'test', protocol, 0).ravel(),
                        minlength=data.vocab_sizes[0])
    ratio = drawn[popular].sum() / max(drawn[rare].sum(), 1)
    assert (ratio > 3) if more else (ratio < 2), (protocol, ratio)


def test_negatives_can_avoid_history():
  data = _synthetic()
  rows = batches.eval_rows(data, 'test')
  history = batches.gather_history(data, rows)
  for protocol in ('uniform:5:unseen', 'popularity:5:unseen', 'grouped:5'):
    negatives = sample_negatives(data, 'test', protocol, 0)
    for row, seen in zip(negatives, history):
      assert not set(row.tolist()) & set(seen.tolist())
  negatives = sample_negatives(data, 'test', 'uniform:5', 0)  # The target only.
  assert any(set(row.tolist()) & set(seen.tolist()) for row, seen in zip(negatives, history))


def test_unknown_protocol_is_a_config_error():
  assert parse_protocol('popularity:100') == ('popularity', 100)
  assert parse_protocol('popularity:100:unseen') == ('popularity', 100)
  for bad in ('sampled', 'uniform:', 'uniform:0', 'pop:100', 'full:unseen', 'uniform:5:seen'):
    with pytest.raises(ConfigError, match='unknown config.eval.protocol'):
      parse_protocol(bad)


def test_grouped_auc_by_hand_and_against_all_pairs():
  """One user, target 0.9 vs negatives 0.5 and 0.9: (1 + 1/2) / 2. Then random data with
  ties against an explicit count over every (target, negative) pair of each user."""
  assert grouped_auc(np.array([7]), np.array([[0.9, 0.5, 0.9]])) == 0.75
  rng = np.random.default_rng(0)
  users = rng.integers(0, 5, 40)
  scores = rng.integers(0, 4, (40, 6)).astype(float)
  weighted, weights = 0.0, 0.0
  for user in np.unique(users):
    targets, negatives = scores[users == user, 0], scores[users == user, 1:].ravel()
    wins = (targets[:, None] > negatives).sum() + 0.5 * (targets[:, None] == negatives).sum()
    weight = len(targets) + len(negatives)
    weighted += weight * wins / (len(targets) * len(negatives))
    weights += weight
  assert grouped_auc(users, scores) == pytest.approx(weighted / weights)


@pytest.mark.parametrize('split, negatives', [
    ('test', None), ('valid', np.array([[1, 3], [5, 1], [3, 1]]))])
def test_length_buckets_change_no_rank(data, split, negatives):
  """Rows grouped by the bucket of their length, each group at its own width, get the ranks
  and candidate scores of one max_len-wide pass, in the split's order, for a model that
  ignores left padding (here: a bag of its input items)."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ('data',))
  weights = jnp.asarray(np.random.default_rng(0).normal(size=(V - 1, V)), jnp.float32)

  def bag_of_items(params, inputs, candidates=None):  # Item 0, padding, counts for nothing.
    return select(jax.nn.one_hot(inputs[..., 0], V)[..., 1:].sum(1) @ params, candidates)

  make = lambda buckets: Evaluator(data=data, split=split, max_len=3, batch_size=2,
                                   mask_history=False, tie_share=1.0, ks=(1, 5), mesh=mesh,
                                   negatives=negatives, length_buckets=buckets)
  whole, grouped = make(()), make((1, 2))
  assert len(whole.groups) == 1 and len(grouped.groups) > 1
  expected, found = whole.outputs(bag_of_items, weights), grouped.outputs(bag_of_items, weights)
  assert set(found) == set(expected)
  for name in expected:
    np.testing.assert_allclose(found[name], expected[name], rtol=1e-6)
