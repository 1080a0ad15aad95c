r"""Dataset statistics after preprocessing.

    python -m pmix_jax.data stats --config=configs/pyramid.py \
        --config.data.name=ml-100k --config.data.path=../shared/data/ml-100k \
        --config.data.preset=recbole_mlp4rec
"""

import sys

from absl import app, logging
from ml_collections import config_flags

from pmix_jax import data
from pmix_jax.errors import PmixError

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/base.py', 'Config file.',
                                          lock_config=True)


def main(argv: list[str]) -> None:
  if argv[1:] != ['stats']:
    raise app.UsageError('usage: python -m pmix_jax.data stats --config=...')
  logging.set_verbosity(logging.WARNING)
  try:
    sequences = data.load(_CONFIG.value.data)
  except PmixError as error:
    sys.exit(f'error: {error}')
  print(f'{sequences.source} (preset {_CONFIG.value.data.preset!r})')
  for name, value in sequences.stats().items():
    print(f'  {name:<22} {value:,.4g}' if isinstance(value, float) else
          f'  {name:<22} {value:,}')


if __name__ == '__main__':
  app.run(main)
