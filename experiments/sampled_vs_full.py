r"""How much a sampled protocol inflates metrics: the most-popular ranker under each protocol.

    python -m experiments.sampled_vs_full --data_path=../shared/data/ml-100k

On ML-100K with the `recbole_mlp4rec` preset (Pyramid Mixer's protocol), ranks the test
targets by training popularity under `full`, `uniform:100` and `popularity:100` with the
evaluation code every model uses, and prints HR@10, NDCG@10 and the sampled/full ratios.
Sampled protocols are scored twice: negatives excluding only the target (RecBole's
repeatable sampler for sequential data) and excluding the user's whole history too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from configs import base
from pmix_jax import data, evaluation, train

_DATA_PATH = flags.DEFINE_string('data_path', None, 'MovieLens-100K directory (u.data).')
_PROTOCOLS = flags.DEFINE_list('protocols', ['full', 'uniform:100', 'popularity:100'],
                               'Protocols to compare; the first is the reference.')
flags.mark_flag_as_required('data_path')


def main(argv):
  del argv
  config = base.get_config().data
  config.update(dict(name='ml-100k', path=_DATA_PATH.value, preset='recbole_mlp4rec',
                     features=()))
  sequences = data.load(config)
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ('data',))
  counts = jnp.asarray(sequences.train_item_counts(), jnp.float32)
  print(f'most popular on {sequences.source}, preset recbole_mlp4rec, test split '
        f'({sequences.num_items} items)')
  print('| protocol | negatives exclude | HR@10 | NDCG@10 | HR@10 / reference | '
        'NDCG@10 / reference |')
  print('|---|---|---|---|---|---|')
  reference = None
  for protocol in _PROTOCOLS.value:
    for exclude_history in ([False] if protocol == 'full' else [False, True]):
      negatives = (None if protocol == 'full' else evaluation.sample_negatives(
          sequences, 'test', protocol + ':unseen' * exclude_history, 0))
      metrics = evaluation.Evaluator(sequences, 'test', config.max_len, 256, False, 1.0, (10,),
                                     mesh, negatives=negatives)(train.popularity_score, counts)
      reference = reference or metrics
      excluded = '-' if protocol == 'full' else 'history' if exclude_history else 'target'
      print(f'| {protocol} | {excluded} | {metrics["HR@10"]:.4f} | {metrics["NDCG@10"]:.4f} | '
            f'{metrics["HR@10"] / reference["HR@10"]:.1f}x | '
            f'{metrics["NDCG@10"] / reference["NDCG@10"]:.1f}x |')


if __name__ == '__main__':
  app.run(main)
