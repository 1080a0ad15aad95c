"""Command line: `python main.py --config=configs/pyramid.py --workdir=/tmp/run`.

Any config value can be overridden, e.g. `--config.train.lr=3e-4 --config.model.rank=8`.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from pmix_jax import search, train
from pmix_jax.errors import PmixError

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Path to a config file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and results.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # Orbax and JAX log every step at INFO.
  try:
    # A config with an architecture search (AutoMLP's) is first resolved to the architecture
    # to train; any other config passes through unchanged.
    config = search.resolve_architecture(_CONFIG.value, _WORKDIR.value)
    train.train_and_evaluate(config, _WORKDIR.value)
  except PmixError as error:
    sys.exit(f'error: {error}')


if __name__ == '__main__':
  app.run(main)
