r"""Dataset statistics after preprocessing, and the official MovieLens archives.

    python -m pmix_jax.data stats --config=configs/pyramid.py \
        --config.data.name=ml-100k --config.data.path=../shared/data/ml-100k \
        --config.data.preset=recbole_mlp4rec

    python -m pmix_jax.data download ml-1m [--dest=DIR] [--archive=PATH/ml-1m.zip]

`download` (ml-100k or ml-1m) fetches the GroupLens archive, checks its size and sha256 and
unpacks it into DIR/NAME (default ~/.cache/pmix_jax/datasets/NAME); offline, download the
archive elsewhere and pass it with --archive.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from pmix_jax import data
from pmix_jax.data import download
from pmix_jax.errors import PmixError

_CONFIG = config_flags.DEFINE_config_file('config', 'configs/base.py', 'Config file.',
                                          lock_config=True)
_DEST = flags.DEFINE_string(
    'dest', None, f'download: directory to unpack into (default {download.DEFAULT_DEST}).')
_ARCHIVE = flags.DEFINE_string(
    'archive', None, 'download: verify and unpack this copy of the official archive instead '
    'of downloading it.')
_TIMEOUT = flags.DEFINE_float(
    'timeout', download.DEFAULT_TIMEOUT,
    'download: seconds without a reply from the server before giving up.', lower_bound=0.1)

_USAGE = ('usage: python -m pmix_jax.data stats --config=...\n'
          '       python -m pmix_jax.data download NAME [--dest=DIR] [--archive=PATH]'
          f'  (NAME: {", ".join(sorted(download.ARCHIVES))})')


def main(argv: list[str]) -> None:
  command = argv[1:2]
  download_flags = [f'--{name}' for name in ('dest', 'archive', 'timeout')
                    if flags.FLAGS[name].present]
  if command == ['download']:
    if len(argv) != 3:
      raise app.UsageError(f'download takes one dataset name\n{_USAGE}')
    if flags.FLAGS['config'].present:
      raise app.UsageError(f'--config applies only to stats\n{_USAGE}')
    run_download(argv[2])
  elif argv[1:] == ['stats']:
    if download_flags:
      raise app.UsageError(f'{", ".join(download_flags)} applies only to download\n{_USAGE}')
    run_stats()
  else:
    raise app.UsageError(_USAGE)


def run_stats() -> None:
  logging.set_verbosity(logging.WARNING)
  try:
    sequences = data.load(_CONFIG.value.data)
  except PmixError as error:
    sys.exit(f'error: {error}')
  print(f'{sequences.source} (preset {_CONFIG.value.data.preset!r})')
  for name, value in sequences.stats().items():
    print(f'  {name:<22} {value:,.4g}' if isinstance(value, float) else
          f'  {name:<22} {value:,}')


def run_download(name: str) -> None:
  try:
    path = download.fetch(name, _DEST.value, _ARCHIVE.value, _TIMEOUT.value)
  except PmixError as error:
    sys.exit(f'error: {error}')
  print(f'use: {download.config_flags(name, path)}')


if __name__ == '__main__':
  app.run(main)
