r"""Pyramid Mixer's Table 1 on the public data: tune on validation, then several seeds.

    python -m experiments.pyramid_mixer.table1 --root=/tmp/table1 \
        --datasets=ml-100k,ml-1m,beauty --models=pyramid,sasrec --seeds=0,1,2
    python -m experiments.pyramid_mixer.report --root=/tmp/table1

The paper's protocol (NOTES.md section 1): `recbole_mlp4rec` preprocessing (iterative
5-core, leave-one-out by time, max length 50), 100 negatives sampled by whole-dataset
popularity (excluding only the target), MRR/NDCG/HR@10, early stopping on validation MRR@10.
Every chosen checkpoint is also scored under full ranking and under RecBole's own sampler,
`popularity:100:unseen`, whose negatives avoid the user's history (`--also_protocols`).

Tuning is the same for every model: each point of the grid (`--lrs` x `--dropouts` x
`--hiddens`) trains once with the first seed and the point with the best validation MRR@10
is kept (the test split is never looked at); the remaining seeds then train with it. Runs
go to `ROOT/DATASET/MODEL/lr=..,dropout=..,hidden=../seed=S/` (a config variant such as
`pyramid:without_cross_feature`, the ablations, in `pyramid-without_cross_feature/`, not
tuned: once the full model's cell has chosen its point, the variant trains at that point); a
run whose results.json exists is not repeated, so the command can be stopped and started
again (a stored run of another config, an earlier schedule's say, is an error naming the
fields that differ), and several processes can share one root when given disjoint datasets
or models.
With `--archive=experiments/<table>/runs` each finished run's records are also copied into
the repository at once (`experiments/archive.py`); to go on with a table on a new machine,
copy that archive into ROOT first and the runs it holds are not repeated.

A config with an architecture search (AutoMLP's) searches first, in each run's workdir, then
retrains; `experiments/automlp/table2.py` is this runner with AutoMLP's preset and models.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os

import ml_collections
from absl import app, flags, logging

from experiments import archive
from pmix_jax import search, train

# Public: report.py and efficiency.py read the runs under the same --root.
ROOT = flags.DEFINE_string('root', None, 'Parent directory of all runs.')
_SHARED = flags.DEFINE_string('shared_data', '../shared/data', 'The shared datasets.')
_DATASETS = flags.DEFINE_list('datasets', ['ml-100k', 'ml-1m', 'beauty'], 'Datasets.')
_MODELS = flags.DEFINE_list(
    'models', ['pyramid', 'sasrec'],
    'Config names in configs/, optionally with a variant: pyramid:without_cross_feature.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds; the first one tunes.')
_LRS = flags.DEFINE_list('lrs', ['1e-3', '3e-3'], 'Learning rates of the grid.')
_DROPOUTS = flags.DEFINE_list('dropouts', ['0.2'], 'Dropout rates of the grid.')
_HIDDENS = flags.DEFINE_list('hiddens', ['64'], 'Hidden sizes of the grid.')
_EPOCHS = flags.DEFINE_integer('num_epochs', 40, 'Most epochs of a run.')
_PATIENCE = flags.DEFINE_integer('patience', 5, 'Evaluations without improvement to stop.')
PRESET = flags.DEFINE_string('preset', 'recbole_mlp4rec', 'config.data.preset of every run.')
_MAX_LEN = flags.DEFINE_integer('max_len', 50, 'config.data.max_len of every run.')
_SPLIT = flags.DEFINE_string('split', '', "config.data.split of every run ('': the preset's).")
_BUCKETS = flags.DEFINE_list('length_buckets', [],
                             'config.data.length_buckets of every run (none: max_len wide).')
_GROUP = flags.DEFINE_integer('group_by_length', 0, 'config.train.group_by_length of every run.')
_PROTOCOL = flags.DEFINE_string('protocol', 'popularity:100', 'config.eval.protocol.')
_SELECTION = flags.DEFINE_string('selection_metric', 'MRR@10',
                                 'Validation metric for early stopping and tuning.')
_ALSO = flags.DEFINE_list(
    'also_protocols', ['full', 'popularity:100:unseen'],
    "Protocols every chosen checkpoint is also scored under; a finished run that lacks one "
    "is rescored (`train.rescore`), not retrained. 'popularity:100:unseen' is RecBole's "
    'sampler, which draws no item of the user\'s history.')
_SKIP_FULL = flags.DEFINE_list(
    'skip_full_ranking', [],
    'Models (config names) not also scored under full ranking: those that run a network per '
    '(row, item), like SURGE, take hours to rank a whole catalogue on a CPU.')
_ARCHIVE = flags.DEFINE_string(
    'archive', '',
    'If set (experiments/<table>/runs), the records of every run are copied there as soon as '
    'it finishes (experiments/archive.py), so that a queue cut short loses no finished run.')
flags.mark_flag_as_required('root')

# Dataset -> config.data values (paths relative to --shared_data) and side fields.
DATASETS = {
    'ml-100k': dict(name='ml-100k', path='ml-100k', features=('action', 'category', 'year')),
    # The shared ML-1M copy is the chronological sequence file: no ratings or timestamps.
    'ml-1m': dict(name='ml-1m-seq', path='ml-1m', features=('category', 'year')),
    'beauty': dict(name='sequence-file', path='amazon-beauty/Beauty.txt',
                   features=('category',)),
    # Positions only, no timestamps: MGNM's table splits it per user (--split).
    'toys': dict(name='sequence-file', path='amazon-toys/Toys_and_Games.txt',
                 features=('category',)),
    # The embedded generator: a smoke test of the pipeline, not a row of the paper's table.
    'synthetic': dict(name='synthetic', path='', features=('action', 'category')),
}


def run_config(dataset: str, model: str, lr: float, dropout: float, hidden: int,
               seed: int) -> ml_collections.ConfigDict:
  name, _, variant = model.partition(':')
  module = importlib.import_module(f'configs.{name}')
  config = module.get_config(variant) if variant else module.get_config()
  data = DATASETS[dataset]
  path = data['path'] and os.path.join(_SHARED.value, data['path'])
  # A model reading the user keeps that field, first (field 1), before the dataset's.
  user = ('user',) if 'user' in config.data.features else ()
  config.data.update(dict(name=data['name'], path=path, features=user + data['features'],
                          preset=PRESET.value, split=_SPLIT.value, max_len=_MAX_LEN.value,
                          length_buckets=tuple(map(int, _BUCKETS.value))))
  if user:
    config.model.user_field = 1
  config.model.update(dict(hidden=hidden, dropout=dropout))
  config.train.update(dict(lr=lr, num_epochs=_EPOCHS.value, progress_bar=False,
                           group_by_length=_GROUP.value))
  also = tuple(p for p in _ALSO.value if not (p == 'full' and name in _SKIP_FULL.value))
  config.eval.update(dict(protocol=_PROTOCOL.value, also_protocols=also, ks=(5, 10, 20),
                          early_stopping_metric=_SELECTION.value, patience=_PATIENCE.value))
  config.seed = seed
  return config


def load_cell(directory: str) -> tuple[dict, list[dict]] | None:
  """The chosen grid point of one dataset/model and its runs (one per seed)."""
  chosen_path = os.path.join(directory, 'chosen.json')
  if not os.path.exists(chosen_path):
    return None
  with open(chosen_path) as f:
    chosen = json.load(f)
  point = f'lr={chosen["lr"]:g},dropout={chosen["dropout"]:g},hidden={chosen["hidden"]}'
  runs = []
  for seed in chosen['seeds']:
    path = os.path.join(directory, point, f'seed={seed}', 'results.json')
    if os.path.exists(path):
      with open(path) as f:
        runs.append(json.load(f))
  return chosen, runs


def grid_points(root: str, dataset: str, model: str,
                grid: list[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
  """The grid points `model` trains at: an ablation (`pyramid:VARIANT`) is not tuned once
  its full model's cell has chosen a point; it trains at that point."""
  name, _, variant = model.partition(':')
  base = variant and load_cell(os.path.join(root, dataset, name))
  if not base:
    return grid
  return [(base[0]['lr'], base[0]['dropout'], base[0]['hidden'])]


def keep_records() -> None:
  if _ARCHIVE.value:
    archive.archive(ROOT.value, _ARCHIVE.value)


def run(dataset: str, model: str, point: tuple[float, float, int], seed: int) -> dict:
  lr, dropout, hidden = point
  workdir = os.path.join(ROOT.value, dataset, model.replace(':', '-'),
                         f'lr={lr:g},dropout={dropout:g},hidden={hidden}', f'seed={seed}')
  path = os.path.join(workdir, 'results.json')
  config = run_config(dataset, model, lr, dropout, hidden, seed)
  if not os.path.exists(path):
    print(f'--- {dataset} {model} lr={lr:g} dropout={dropout:g} hidden={hidden} seed={seed}',
          flush=True)
    results = train.train_and_evaluate(search.resolve_architecture(config, workdir), workdir)
  else:
    # Reused only if it ran this very config: an earlier schedule's run (or an archive's,
    # copied in) is an error to resolve, not a row of the table.
    config = search.resolve_architecture(config, workdir)
    train.check_same_run(config, workdir)
    with open(path) as f:
      results = json.load(f)
    if set(config.eval.also_protocols) - set(results['also_protocols']):
      results = train.rescore(config, workdir, tuple(config.eval.also_protocols))
  keep_records()
  return results


def main(argv: list[str]) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)
  seeds = [int(s) for s in _SEEDS.value]
  grid = list(itertools.product(map(float, _LRS.value), map(float, _DROPOUTS.value),
                                map(int, _HIDDENS.value)))
  for dataset, model in itertools.product(_DATASETS.value, _MODELS.value):
    if dataset not in DATASETS:
      raise app.UsageError(f'unknown dataset {dataset!r}; known: {sorted(DATASETS)}')
    points = grid_points(ROOT.value, dataset, model, grid)
    tuned = {point: run(dataset, model, point, seeds[0]) for point in points}
    best = max(points, key=lambda p: tuned[p]['valid'][_SELECTION.value])
    with open(os.path.join(ROOT.value, dataset, model.replace(':', '-'), 'chosen.json'),
              'w') as f:
      json.dump(dict(lr=best[0], dropout=best[1], hidden=best[2], seeds=seeds,
                     grid=[list(p) for p in points], selection=f'valid {_SELECTION.value}'), f)
    keep_records()
    for seed in seeds[1:]:
      run(dataset, model, best, seed)


if __name__ == '__main__':
  app.run(main)
