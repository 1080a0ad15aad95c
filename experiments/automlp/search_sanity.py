r"""What AutoMLP's search finds on data whose next item depends on the last m items only.

    python -m experiments.automlp.search_sanity --orders=3,4,6 --seeds=0,1,2 \
        --length_penalties=0,0.2

For each order m, seed and length penalty λ: writes the order-m sequence file, runs the
search (short-term module only: with the long-term module on, every k fits this data
equally well), and prints the chosen k and softmax(α) against the candidate closest to m at
or above it.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

import ml_collections
import numpy as np
from absl import app, flags, logging

import configs.automlp
from pmix_jax import search

CANDIDATES = (1, 2, 4, 8, 16)


def write_order_m_sequences(path: pathlib.Path, m: int, *, num_users: int = 600,
                            num_items: int = 60, length: int = 30, noise: float = 0.5,
                            seed: int = 0) -> None:
  """A sequence file whose next item depends on the last m items only: it is the item m
  behaviors back shifted by 7 (mod the catalogue), or, with probability `noise`, a uniform
  draw. Given the last m behaviors, earlier ones tell nothing more."""
  rng = np.random.default_rng(seed)
  lines = []
  for user in range(num_users):
    items = list(rng.integers(1, num_items + 1, m))
    while len(items) < length:
      items.append(int(rng.integers(1, num_items + 1)) if rng.random() < noise
                   else (items[-m] - 1 + 7) % num_items + 1)
    lines.append(' '.join(map(str, [user + 1, *items])))
  path.write_text('\n'.join(lines) + '\n')


def search_config(path: str, *, length_penalty: float, seed: int = 0
                  ) -> ml_collections.ConfigDict:
  """A small short-term-only AutoMLP searching k in CANDIDATES on the file at `path`."""
  config = configs.automlp.get_config()
  config.seed = seed
  config.data.update(name='sequence-file', path=path, features=(), cache_dir='', max_len=20)
  config.model.update(hidden=32, num_layers=1, short_lengths=CANDIDATES, long_term=False)
  config.train.update(batch_size=128, progress_bar=False)
  config.automlp.update(search_epochs=2, length_penalty=length_penalty)
  return config


def main(argv: list[str]) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)
  print('| m | expected k | λ | seed | chosen k | softmax(α) over k = '
        f'{", ".join(map(str, CANDIDATES))} |\n|---|---|---|---|---|---|')
  with tempfile.TemporaryDirectory() as directory:
    for m in map(int, _ORDERS.value):
      path = pathlib.Path(directory) / f'order{m}.txt'
      write_order_m_sequences(path, m)
      expected = min(k for k in CANDIDATES if k >= m)
      for penalty in map(float, _PENALTIES.value):
        for seed in map(int, _SEEDS.value):
          result = search.run_search(search_config(os.fspath(path), length_penalty=penalty,
                                                   seed=seed))
          print(f'| {m} | {expected} | {penalty:g} | {seed} | {result["chosen"]} | '
                + ', '.join(f'{w:.3f}' for w in result['weights']) + ' |', flush=True)


if __name__ == '__main__':
  # Defined only when run: tests import this module into processes where the table runners
  # have defined a --seeds of their own, and absl flags are process-wide.
  _ORDERS = flags.DEFINE_list('orders', ['3', '4', '6'], 'Orders m of the data.')
  _SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Search seeds.')
  _PENALTIES = flags.DEFINE_list('length_penalties', ['0', '0.2'], 'Values of λ.')
  app.run(main)
