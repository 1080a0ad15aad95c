r"""Wall time of one training epoch with the MGNM table's settings (issue 7's bar: MGNM's).

    python -m experiments.mgnm.epoch_time --workdir=/tmp/mgnm_epoch [--model=gru4rec]

Trains MGNM (or `--model`, a config of the table) for one epoch on Toys and Games 5-core
(`surge` preset, each user's records split 70/10/20 by position, history 100, the config's
batch), in a fresh workdir, and prints the training seconds of the epoch (without
evaluation), its number of steps and the validation metrics after it. Run it on a quiet
machine: other jobs on the same cores slow it several times.
"""

import json
import os
import shutil

from absl import app, flags

from experiments.mgnm import table2
from experiments.pyramid_mixer import table1
from pmix_jax import train

_WORKDIR = flags.DEFINE_string('workdir', '/tmp/mgnm_epoch', 'Scratch workdir (emptied).')
_DATASET = flags.DEFINE_string('dataset', 'toys', 'A dataset of the table runner.')
_MODEL = flags.DEFINE_string('model', 'mgnm', 'A config of the table runner.')


def main(argv: list[str]) -> None:
  del argv
  config = table1.run_config(_DATASET.value, _MODEL.value, 1e-3, 0.0, 16, 0)
  config.train.num_epochs = 1
  shutil.rmtree(_WORKDIR.value, ignore_errors=True)
  results = train.train_and_evaluate(config, os.path.join(_WORKDIR.value, 'run'))
  print(json.dumps(dict(dataset=_DATASET.value, model=_MODEL.value,
                        train_seconds=round(results['train_seconds'], 1),
                        steps=results['best_step'], batch_size=config.train.batch_size,
                        valid=results['valid'])))


if __name__ == '__main__':
  for flag, default in {**table2.DEFAULTS, 'also_protocols': []}.items():
    flags.FLAGS.set_default(flag, default)
  flags.FLAGS.set_default('root', '/tmp/mgnm_epoch')
  app.run(main)
