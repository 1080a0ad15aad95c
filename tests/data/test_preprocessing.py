"""Presets and their counts: a hand-made k-core case and the published dataset statistics."""

import os
import subprocess
import sys

import numpy as np
import pytest

from configs import base
from pmix_jax import data
from pmix_jax.data import preprocessing
from pmix_jax.data.sequences import InteractionLog
from pmix_jax.errors import ConfigError
from tests.conftest import REPO


def _log(pairs):
  user, item = np.array(pairs).T
  return InteractionLog(user=user, item=item, timestamp=np.arange(len(user)), fields={},
                        source='hand-made')


def test_core_filter_iterates_to_a_fixed_point():
  """Dropping item 9 (one interaction) leaves user 3 with one, which must then go too."""
  pairs = [(1, 5), (1, 6), (2, 5), (2, 6), (3, 5), (3, 9)]
  filtered = preprocessing.core_filter(_log(pairs), min_user=2, min_item=2)
  assert sorted(zip(filtered.user.tolist(), filtered.item.tolist())) == [
      (1, 5), (1, 6), (2, 5), (2, 6)]
  # One pass is not enough: after it, user 3 still has item 5 only.
  once = preprocessing._keep(_log(pairs), preprocessing._counts(_log(pairs).item) >= 2)
  assert 3 in once.user


def test_apply_preset_counts_what_it_removed():
  pairs = [(1, 5), (1, 6), (2, 5), (2, 6), (3, 5), (3, 9)]
  filtered, removed = preprocessing.apply_preset('recbole_mlp4rec', _log(pairs * 3))
  assert removed == dict(removed_interactions=6, removed_users=1, removed_items=1)
  assert len(filtered.user) == 12


def test_unknown_preset_and_empty_result_are_errors():
  with pytest.raises(ConfigError, match="unknown config.data.preset 'kcore'"):
    preprocessing.apply_preset('kcore', _log([(1, 2)]))
  with pytest.raises(ConfigError, match='removes every interaction'):
    preprocessing.apply_preset('recbole_mlp4rec', _log([(1, 2), (1, 3)]))


PUBLISHED = [  # name, path under shared/data, preset, (users, items, interactions)
    ('ml-100k', 'ml-100k', 'none', (943, 1682, 100_000)),
    ('ml-100k', 'ml-100k', 'recbole_mlp4rec', (943, 1349, 99_287)),
    ('recbole', 'ml-100k-recbole/ml-100k.inter', 'recbole_mlp4rec', (943, 1349, 99_287)),
    ('ml-1m-seq', 'ml-1m', 'none', (6040, 3706, 1_000_209)),
    ('ml-1m-seq', 'ml-1m', 'sasrec', (6040, 3416, 999_611)),
    ('sequence-file', 'amazon-beauty/Beauty.txt', 'recbole_mlp4rec', (22_363, 12_101, 198_502)),
    ('sequence-file', 'amazon-toys/Toys_and_Games.txt', 'recbole_mlp4rec',
     (19_412, 11_924, 167_597)),
]


@pytest.mark.parametrize('name, path, preset, expected', PUBLISHED)
def test_statistics_match_the_published_figures(name, path, preset, expected, shared_data):
  config = base.get_config().data
  config.update(dict(name=name, path=os.path.join(shared_data, path), preset=preset,
                     features=('category',)))
  stats = data.load(config).stats()
  assert (stats['users'], stats['items'], stats['interactions']) == expected
  assert stats['interactions'] + stats['removed_interactions'] >= expected[2]


def test_stats_command(shared_data):
  run = subprocess.run(
      [sys.executable, '-m', 'pmix_jax.data', 'stats', '--config.data.name=ml-100k',
       f'--config.data.path={os.path.join(shared_data, "ml-100k")}',
       '--config.data.preset=recbole_mlp4rec'], cwd=REPO, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr
  assert 'items                  1,349' in run.stdout
  assert 'removed_interactions   713' in run.stdout


def test_unknown_split_is_a_config_error():
  config = base.get_config().data
  config.split = 'random'
  with pytest.raises(ConfigError, match="unknown config.data.split 'random'"):
    data.load(config)
