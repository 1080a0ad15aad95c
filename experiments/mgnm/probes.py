r"""Short MGNM runs that change one thing at a time, to find where MGNM falls behind.

    python -m experiments.mgnm.probes --root=/tmp/mgnm_probes --num_epochs=4 \
        --probes="mgnm,model.use_bilstm=False,model.routing_iterations=1"
    python -m experiments.mgnm.probes --root=experiments/mgnm/probes --report_only

A probe is the MGNM table's run (Toys, seed 0, `experiments/mgnm/table2.py`'s settings:
`surge` preset, per-user 70/10/20 split, history 100, `grouped:100`, d = 16, lr 1e-3) with
some config values changed: `mgnm` changes none, `variant:NAME` is `configs/mgnm.py:NAME`,
and `a.b=V+c.d=W` sets config values (V read as a Python literal, else as a string). Each trains
`--num_epochs` epochs without early stopping, in ROOT/<probe>, and is archived (its JSON
records and config.txt) under `--archive` as soon as it finishes; a finished probe is not
rerun.

With graph levels, each probe's best checkpoint is also scored on validation with the levels
pooled differently (`levels.json`): Eq. 15's max over all levels, their sum, and the max over
the first n levels only (n = 1 is H^(0), the raw embeddings, alone).

The report (`PROBES.md` beside this file) gives every probe's validation GAUC per epoch.
Probes are diagnostics on validation, not results: the table's runs are table2.py's.
"""

from __future__ import annotations

import ast
import json
import os

from absl import app, flags, logging

from experiments import archive
from experiments.pyramid_mixer import table1
from pmix_jax import train

_PROBES = flags.DEFINE_list('probes', ['mgnm'], 'Probes: mgnm | variant:NAME | a.b=V+c.d=W.')
_REPORT = flags.DEFINE_string('report', 'experiments/mgnm/PROBES.md', 'The report written.')
_REPORT_ONLY = flags.DEFINE_bool('report_only', False, 'Only write the report from --root.')

# The MGNM table's settings (experiments/mgnm/table2.py), as defaults of the runner's flags.
TABLE_SETTINGS = [('preset', 'surge'), ('split', 'per_user_temporal'), ('max_len', 100),
                  ('protocol', 'grouped:100'), ('selection_metric', 'GAUC'),
                  ('also_protocols', []), ('datasets', ['toys']), ('num_epochs', 4),
                  ('archive', 'experiments/mgnm/probes')]


def probe_config(probe: str, dataset: str, epochs: int):
  """The table's seed-0 MGNM config on `dataset` with `probe`'s changes."""
  variant = probe.partition(':')[2] if probe.startswith('variant:') else ''
  config = table1.run_config(dataset, f'mgnm:{variant}' if variant else 'mgnm', 1e-3, 0.0, 16,
                             0)
  if probe not in ('mgnm',) and not variant:
    for change in probe.split('+'):
      path, _, value = change.partition('=')
      *parents, key = path.split('.')
      node = config
      for parent in parents:
        node = node[parent]
      if key not in node:  # A mistyped key would otherwise be a silent no-op.
        raise app.UsageError(f'probe {probe!r}: the config has no {path!r}')
      try:
        node[key] = ast.literal_eval(value)
      except (ValueError, SyntaxError):  # A bare word: a string value.
        node[key] = value
  config.train.num_epochs = epochs
  config.eval.patience = 0
  return config


def score_levels(config, workdir: str) -> dict[str, float]:
  """Validation GAUC of the best checkpoint under other level poolings."""
  setup = train.Setup.create(config)
  checkpoints = train.Checkpoints(os.path.join(os.path.abspath(workdir), 'checkpoints'), 1)
  params = train.Checkpoints.restore(checkpoints.best, setup.state)[0].params
  checkpoints.close()
  pooled = {}
  levels = config.model.num_levels
  for name, changes in ([('max', {}), ('sum', dict(pooling='sum'))]
                        + [(f'max over levels 0-{n - 1}', dict(num_levels=n))
                           for n in range(1, levels)]):
    changed = config.copy_and_resolve_references()
    changed.model.update(changes)
    changed_setup = train.Setup.create(changed)
    valid = train._evaluator(changed, changed_setup, workdir, 'valid')  # pylint: disable=protected-access
    pooled[name] = float(valid(changed_setup.score_fn, params)['GAUC'])
  return pooled


def run_probe(root: str, probe: str, dataset: str, epochs: int) -> None:
  workdir = os.path.join(root, probe.replace(':', '-'))
  config = probe_config(probe, dataset, epochs)
  if not os.path.exists(os.path.join(workdir, 'results.json')):
    print(f'--- probe {probe}, {epochs} epochs', flush=True)
    train.train_and_evaluate(config, workdir)
  levels_path = os.path.join(workdir, 'levels.json')
  if config.model.use_graph and config.model.num_levels > 1 and not os.path.exists(levels_path):
    with open(levels_path + '.tmp', 'w') as f:
      json.dump(score_levels(config, workdir), f, indent=1)
    os.replace(levels_path + '.tmp', levels_path)


def report(root: str) -> str:
  rows, level_rows = [], []
  for name in sorted(os.listdir(root)):
    path = os.path.join(root, name, 'results.json')
    if not os.path.exists(path):
      continue
    with open(path) as f:
      results = json.load(f)
    history = results['valid_history']
    per_epoch = sum(h['train_seconds'] - g['train_seconds']
                    for g, h in zip([{'train_seconds': 0.0}] + history, history)) / len(history)
    gaucs = ' / '.join(f'{h["GAUC"]:.4f}' for h in history)
    rows.append(f'| `{name}` | {gaucs} | {results["best_epoch"]} | '
                f'{results["valid"]["GAUC"]:.4f} | {per_epoch:.0f} |')
    levels_path = os.path.join(root, name, 'levels.json')
    if os.path.exists(levels_path):
      with open(levels_path) as f:
        levels = json.load(f)
      level_rows.append(f'| `{name}` | ' + ' | '.join(f'{k}: {v:.4f}' for k, v in levels.items())
                        + ' |')
  lines = [
      '# MGNM probes (validation, seed 0)', '',
      f'Written by `python -m experiments.mgnm.probes --root={root} --report_only` from the '
      'probes\' results.json (see that module for what a probe is and the command that ran '
      'each). A probe\'s name is what it changes in the table\'s MGNM config; `mgnm` is that '
      'config. Validation only: nothing here is a test result.', '',
      '| probe | valid GAUC, epoch 1 / 2 / ... | best epoch | best valid GAUC | train s / epoch |',
      '|---|---|---|---|---|', *rows, '',
      '## The levels of the best checkpoint, pooled differently (valid GAUC)', '',
      'Eq. 15 pools the levels\' scores by their max; `sum` is Figure 7\'s alternative; '
      '"max over levels 0-n" drops the levels above n (levels 0-0: H^(0) alone).', '',
      '| probe | poolings |', '|---|---|', *level_rows, '',
      'train s / epoch: the probes shared the 2 cores with other jobs; compare them with care.']
  return '\n'.join(lines) + '\n'


def main(argv: list[str]) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)
  root, kept, epochs = table1.ROOT.value, flags.FLAGS.archive, flags.FLAGS.num_epochs
  dataset = flags.FLAGS.datasets[0]
  if not _REPORT_ONLY.value:
    for probe in _PROBES.value:
      probe_config(probe, dataset, epochs)  # Every probe parses before the first trains.
    for probe in _PROBES.value:
      run_probe(root, probe, dataset, epochs)
      if kept:
        archive.archive(root, kept)
  with open(_REPORT.value, 'w') as f:
    f.write(report(kept if kept and not _REPORT_ONLY.value else root))


if __name__ == '__main__':
  for flag, default in TABLE_SETTINGS:
    flags.FLAGS.set_default(flag, default)
  app.run(main)
