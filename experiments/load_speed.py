r"""Time to load and preprocess ML-1M from a raw `ratings.dat`, median of repeats.

    python -m experiments.load_speed --shared_data=../shared/data

The raw ML-1M ratings are not in shared/data (see its README), so this writes a
`ratings.dat` in the exact published layout (`UserID::MovieID::Rating::Timestamp`, 1,000,209
lines, 24.6 MB) from `ml-1m_seq_chrono.txt`, with seeded ratings and increasing timestamps,
then times `pmix_jax.data.load` with the `recbole_mlp4rec` preset on it, without the cache
and from it.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time

import numpy as np
from absl import app, flags

from configs import base
from pmix_jax import data

_SHARED = flags.DEFINE_string('shared_data', '../shared/data', 'The shared datasets.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed loads.')


def write_ratings(sequence_path: str, directory: str) -> str:
  rng = np.random.default_rng(0)
  lines = []
  for line in open(sequence_path).read().splitlines():
    user, *items = line.split()
    times = 956_703_932 + np.cumsum(rng.integers(0, 5000, len(items)))
    ratings = rng.integers(1, 6, len(items))
    lines += [f'{user}::{i}::{r}::{t}' for i, r, t in zip(items, ratings, times)]
  path = os.path.join(directory, 'ratings.dat')
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')
  return path


def main(argv):
  del argv
  directory = tempfile.mkdtemp(prefix='ml1m_raw_')
  source = os.path.join(_SHARED.value, 'ml-1m')
  path = write_ratings(os.path.join(source, 'ml-1m_seq_chrono.txt'), directory)
  shutil.copy(os.path.join(source, 'movies.dat'), directory)
  config = base.get_config().data
  config.update(dict(name='ml-1m', path=directory, preset='recbole_mlp4rec', cache_dir=''))

  def median_load_seconds():
    seconds = []
    for _ in range(_REPEATS.value):
      start = time.perf_counter()
      data.load(config)
      seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)

  cold = median_load_seconds()
  config.cache_dir = os.path.join(directory, 'cache')
  stats = data.load(config).stats()  # Fills the cache.
  hit = median_load_seconds()
  print(f'{path} ({os.path.getsize(path) / 1e6:.1f} MB): {stats["users"]:,} users, '
        f'{stats["items"]:,} items, {stats["interactions"]:,} interactions after '
        f'recbole_mlp4rec; load + preprocess median {cold:.2f} s, from the cache '
        f'{hit:.2f} s (medians of {_REPEATS.value} runs)')
  shutil.rmtree(directory)


if __name__ == '__main__':
  app.run(main)
