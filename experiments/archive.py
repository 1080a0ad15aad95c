r"""Keeps the record of finished runs in the repository, so reports outlive the machine.

    python -m experiments.archive --root=/tmp/table1 --to=experiments/pyramid_mixer/runs
    python -m experiments.pyramid_mixer.report --root=experiments/pyramid_mixer/runs

A run's workdir holds checkpoints, event files and saved negatives (megabytes, rebuilt by
training again) and a few small records: results.json, the cell's chosen.json, an
architecture search's search/result.json, and config.txt, the run's whole configuration. The
reports read only the JSON files, so copying the records, in the same layout, is enough to
regenerate every table from the archive, and config.txt says how each number was made. A run
still in progress (no results.json yet) is not copied; a record already archived is replaced
by the newer one.
"""

from __future__ import annotations

import os
import shutil

from absl import app, flags


def records(root: str) -> list[str]:
  """Paths, relative to `root`, of the records of every finished run under it: its JSON files
  and config.txt, its search's JSON files (search/), and each cell's chosen.json."""
  found = []
  for directory, subdirectories, files in os.walk(root):
    subdirectories.sort()
    if 'results.json' in files:
      search = os.path.join(directory, 'search')
      own = [os.path.join(directory, name) for name in files
             if name.endswith('.json') or name == 'config.txt']
      if os.path.isdir(search):
        own += [os.path.join(search, name) for name in os.listdir(search)
                if name.endswith('.json')]
      found += sorted(own)
    elif 'chosen.json' in files:
      found.append(os.path.join(directory, 'chosen.json'))
  return [os.path.relpath(path, root) for path in found]


def archive(root: str, to: str) -> list[str]:
  if not os.path.isdir(root):  # A mistyped root would otherwise archive nothing, silently.
    raise FileNotFoundError(f'{root}: no such directory of runs')
  copied = []
  for relative in records(root):
    target = os.path.join(to, relative)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(os.path.join(root, relative), target + '.tmp')
    os.replace(target + '.tmp', target)
    copied.append(relative)
  return copied


def main(argv: list[str]) -> None:
  del argv
  root, to = flags.FLAGS.root, flags.FLAGS.to
  if not os.path.isdir(root):
    raise app.UsageError(f'--root={root}: no such directory of runs')
  print(f'{len(archive(root, to))} records copied from {root} to {to}')


if __name__ == '__main__':
  # Defined here, not on import: the table runners import archive() and have a --root too.
  flags.DEFINE_string('root', None, "Parent directory of the runs (a runner's --root).")
  flags.DEFINE_string('to', None, 'The archive: experiments/<table>/runs.')
  flags.mark_flags_as_required(['root', 'to'])
  app.run(main)
