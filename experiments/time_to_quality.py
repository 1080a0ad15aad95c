r"""SASRec on MovieLens-100K: test NDCG@10 against training wall time.

    python -m experiments.time_to_quality --data_path=../shared/data/ml-100k

The reference protocol: all 100,000 ratings as implicit interactions, no filtering,
leave-one-out by time, the target ranked against every item, history items not masked. The
model is chosen on validation NDCG@10 (evaluated after every epoch); the script reports the
test metrics of that checkpoint and the training seconds it took to get there (evaluation
time excluded), as recorded in the run's `results.json`. Extra `--config.*` flags override
the config, e.g. `--config.train.num_epochs=30`.
"""

from __future__ import annotations

import tempfile

from absl import app, flags
from ml_collections import config_flags

from pmix_jax import train

_DATA_PATH = flags.DEFINE_string('data_path', None, 'MovieLens-100K directory (u.data).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (default: a new temporary one).')
_CONFIG = config_flags.DEFINE_config_file('config', 'configs/sasrec.py', 'Model config.')
flags.mark_flag_as_required('data_path')


def main(argv):
  del argv
  config = _CONFIG.value
  config.data.name, config.data.path = 'ml-100k', _DATA_PATH.value
  config.train.progress_bar = False
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix='time_to_quality_')
  results = train.train_and_evaluate(config, workdir)
  best = next(h for h in results['valid_history'] if h['step'] == results['best_step'])
  print(f'\n{config.model.name}: test NDCG@10 {results["test"]["NDCG@10"]:.4f}, '
        f'HR@10 {results["test"]["HR@10"]:.4f} from the checkpoint of epoch '
        f'{results["best_epoch"]}, reached after {best["train_seconds"]:.1f} s of training '
        f'({results["train_seconds"]:.1f} s for all {results["epochs_run"]} epochs); '
        f'workdir {workdir}')


if __name__ == '__main__':
  app.run(main)
