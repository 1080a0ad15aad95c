r"""SASRec on MovieLens-100K: test NDCG@10 against training wall time, over seeds.

    python -m experiments.time_to_quality --data_path=../shared/data/ml-100k --seeds=0,1,2

The reference protocol: all 100,000 ratings as implicit interactions, no filtering,
leave-one-out by time, the target ranked against every item, history items not masked. The
model is chosen on validation NDCG@10 (evaluated after every epoch); for every seed the
script reports the test metrics of that checkpoint and the training seconds it took to get
there (evaluation excluded), as recorded in the run's `results.json`, then the mean and
standard deviation over seeds. Extra `--config.*` flags override the config, e.g.
`--config.train.num_epochs=30`.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
from absl import app, flags
from ml_collections import config_flags

from pmix_jax import train

_DATA_PATH = flags.DEFINE_string('data_path', None, 'MovieLens-100K directory (u.data).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Parent of the runs (default: a new temp dir).')
_SEEDS = flags.DEFINE_list('seeds', ['0'], 'Seeds, one run each.')
_CONFIG = config_flags.DEFINE_config_file('config', 'configs/sasrec.py', 'Model config.')
flags.mark_flag_as_required('data_path')


def main(argv):
  del argv
  config = _CONFIG.value
  config.data.name, config.data.path = 'ml-100k', _DATA_PATH.value
  config.train.progress_bar = False
  parent = _WORKDIR.value or tempfile.mkdtemp(prefix='time_to_quality_')
  ndcg, seconds = [], []
  for seed in map(int, _SEEDS.value):
    config.seed = seed
    results = train.train_and_evaluate(config, os.path.join(parent, f'seed_{seed}'))
    best = next(h for h in results['valid_history'] if h['step'] == results['best_step'])
    ndcg.append(results['test']['NDCG@10'])
    seconds.append(best['train_seconds'])
    print(f'\nseed {seed}: test NDCG@10 {ndcg[-1]:.4f}, HR@10 {results["test"]["HR@10"]:.4f} '
          f'from the checkpoint of epoch {results["best_epoch"]}, reached after '
          f'{seconds[-1]:.1f} s of training ({results["train_seconds"]:.1f} s for all '
          f'{results["epochs_run"]} epochs)\n')
  print(f'{config.model.name} over seeds {_SEEDS.value}: test NDCG@10 '
        f'{np.mean(ndcg):.4f} ± {np.std(ndcg):.4f} (min {min(ndcg):.4f}), training seconds '
        f'to the chosen checkpoint {np.mean(seconds):.1f} ± {np.std(seconds):.1f} '
        f'(max {max(seconds):.1f}); runs in {parent}')


if __name__ == '__main__':
  app.run(main)
