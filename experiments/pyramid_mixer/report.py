r"""Writes experiments/pyramid_mixer/RESULTS.md from the runs of `table1.py`.

    python -m experiments.pyramid_mixer.report --root=/tmp/table1

Every number in the tables is read from the runs' results.json files; the paper's numbers
are its Table 1 as transcribed in shared/papers/NOTES.md section 1.
"""

from __future__ import annotations

import collections
import datetime
import glob
import json
import os

import numpy as np
from absl import app, flags, logging

from experiments.pyramid_mixer import efficiency, table1

OUT = flags.DEFINE_string('out', os.path.join(os.path.dirname(__file__), 'RESULTS.md'),
                           'Where to write the report.')
# Its records are archived like the table's runs (experiments/archive.py), here by default.
_SASREC_ML1M = flags.DEFINE_string(
    'sasrec_ml1m', os.path.join(os.path.dirname(__file__), 'external', 'sasrec_ml1m'),
    'Workdir, or archived records, of the SASRec ML-1M literature check '
    '(SASREC_ML1M_COMMAND).')

METRICS = ('MRR@10', 'NDCG@10', 'HR@10')
# Table 1 of the paper (MRR@10, NDCG@10, HR@10), 100 popularity-sampled negatives, as
# NOTES.md transcribes it, under our config names ('popularity': PopRec).
PAPER = {
    'ml-100k': {
        'popularity': (.1496, .0783, .4044), 'bpr_mf': (.1479, .1905, .3474),
        'fpmc': (.1220, .1813, .3810), 'gru4rec': (.1860, .2550, .4758),
        'sasrec': (.1901, .2612, .4920), 'bert4rec': (.1819, .2568, .5061),
        'fmlp_rec': (.1809, .2574, .5070), 'mlp_mixer': (.1987, .2671, .4920),
        'mlp4rec': (.2027, .2747, .5118), 'pyramid': (.2043, .2768, .5197)},
    'ml-1m': {
        'popularity': (.3904, .4547, .6599), 'bpr_mf': (.3684, .4425, .6781),
        'fpmc': (.3413, .4165, .6568), 'gru4rec': (.4015, .4658, .6709),
        'sasrec': (.4100, .4720, .6697), 'bert4rec': (.3938, .4572, .6593),
        'fmlp_rec': (.3932, .4570, .6606), 'mlp_mixer': (.4110, .4770, .6871),
        'mlp4rec': (.4312, .4938, .6919), 'pyramid': (.4432, .4968, .6993)},
    'beauty': {
        'popularity': (.0305, .0443, .0954), 'bpr_mf': (.1310, .1725, .3055),
        'fpmc': (.1431, .1838, .3165), 'gru4rec': (.1632, .2050, .3417),
        'sasrec': (.2009, .2447, .3874), 'bert4rec': (.1313, .1738, .3135),
        'fmlp_rec': (.1449, .1891, .3336), 'mlp_mixer': (.2089, .2556, .4065),
        'mlp4rec': (.2139, .2654, .4326), 'pyramid': (.2293, .2668, .4412)},
}
DATASETS = tuple(table1.DATASETS)

COMMANDS = """```bash
python -m experiments.pyramid_mixer.table1 --root=ROOT --datasets=ml-100k,ml-1m,beauty \\
    --models=pyramid,sasrec --seeds=0,1,2
# The ablations (ML-1M in the paper's spirit; any dataset works), each at the chosen grid
# point of the full model:
python -m experiments.pyramid_mixer.table1 --root=ROOT --datasets=ml-1m --models=pyramid,\\
pyramid:without_cross_behavior,pyramid:without_cross_feature,pyramid:without_cross_period,\\
pyramid:without_low_rank,pyramid:sum_fusion
python -m experiments.pyramid_mixer.report --root=ROOT
```"""

# The setting of Klenitskiy & Vasilev's SASRec+ (RecSys 2023, their public configs): length
# 200, 64 wide, 2 blocks, 1 head, dropout 0.1, batch 128, Adam 1e-3, full-softmax
# cross-entropy on every position, at most 100 epochs with patience 10 on validation NDCG@10,
# full ranking with the user's seen items filtered out.
SASREC_ML1M_COMMAND = """```bash
python main.py --config=configs/sasrec.py --workdir=EXTERNAL/sasrec_ml1m \\
    --config.data.name=ml-1m-seq --config.data.path=../shared/data/ml-1m \\
    "--config.data.features=()" --config.data.max_len=200 --config.train.batch_size=128 \\
    --config.train.num_epochs=100 --config.eval.patience=10 --config.model.dropout=0.1 \\
    --config.eval.mask_history=True
python -m experiments.archive --root=EXTERNAL --to=experiments/pyramid_mixer/external
python -m experiments.pyramid_mixer.report --root=ROOT  # Reads the archived check.
```"""
# The bar, below the published HR@10 of about 0.28-0.31 for this setting.
SASREC_ML1M_BAR = {'HR@10': 0.27, 'NDCG@10': 0.15}


def sasrec_ml1m(workdir: str | None) -> list[str]:
  """The external check: SASRec with full softmax on ML-1M against the literature's figures."""
  lines = ['## External check: SASRec, full-softmax cross-entropy, ML-1M', '',
           'Leave-one-out, length 200, full ranking over every item except the user\'s '
           'earlier ones (as the reference code filters them), the setting of Klenitskiy & '
           'Vasilev (RecSys 2023) and Petrov & Macdonald (RecSys 2023), whose published '
           'HR@10 is about 0.28-0.31. The bar: HR@10 >= 0.27 and NDCG@10 >= 0.15.', '']
  path = workdir and os.path.join(workdir, 'results.json')
  if not path or not os.path.exists(path):
    return lines + ['No finished run yet: the first command below produces it.', '',
                    SASREC_ML1M_COMMAND, '']
  with open(path) as f:
    run = json.load(f)
  if not (run['protocol'] == 'full' and run['mask_history']):
    raise ValueError(f'{path}: not full ranking with seen items filtered')
  test = run['test']
  met = all(test[m] >= bar for m, bar in SASREC_ML1M_BAR.items())
  return lines + [
      '| model | users | items | test HR@10 | test NDCG@10 | test HR@20 | valid NDCG@10 | '
      'best epoch / run | train s | bar |', '|---' * 10 + '|',
      f'| {run["model"]} | {run["data_stats"]["users"]} | {run["data_stats"]["items"]} | '
      f'{test["HR@10"]:.4f} | {test["NDCG@10"]:.4f} | {test["HR@20"]:.4f} | '
      f'{run["valid"]["NDCG@10"]:.4f} | {run["best_epoch"]} / {run["epochs_run"]} | '
      f'{run["train_seconds"]:.0f} | {"met" if met else "not met"} |', '',
      'One seed; made by:', '', SASREC_ML1M_COMMAND, '']


DIFFERENCES = """## Where we differ from the paper, and why

- **Features.** The paper's cross-feature mixer had industrial behavior features (actions,
  play time, authors). The public data offers less: ML-100K behaviors carry the item id,
  the rating (`action`), the first genre and the release year; the shared ML-1M copy is the
  chronological sequence file (no ratings or timestamps), so item id, genre and year;
  Beauty, the item id and its first category. SASRec reads the item id only.
- **Negatives.** 100 distinct negatives per target, drawn once with probability
  proportional to whole-dataset counts, excluding only the target (NOTES.md's reading of
  the protocol), and shared by every model. RecBole's sampler also skips the items the user
  has interacted with: that is the `popularity:100:unseen` table, with the same
  checkpoints. Ranks count ties pessimistically.
- **SASRec's training.** SASRec is trained on every position of each window (its original
  recipe); RecBole trains it on every prefix, which predicts the same targets.
- **Tuning budget.** Identical for every model: the grid in the last table, chosen on
  validation MRR@10 with the first seed, at most `--num_epochs` epochs with early stopping
  after `--patience` evaluations without improvement (the runner's defaults are 40 and 5;
  the paper's patience is 10). The paper does not report its grids.
- **BERT4Rec** is the baseline furthest below the paper's row: under masked-item training
  its validation MRR@10 climbs slowly and noisily, so the shared patience stops some seeds
  early (best epochs in the cost table). BERT4Rec is known to need far longer training
  than SASRec (Petrov & Macdonald, RecSys 2022); we kept the budget every model has.
- **The paper's PopRec row** is internally inconsistent (NDCG@10 below MRR@10, impossible
  for one target), and our most-popular ranker under this protocol is far below it on
  ML-100K: see the README's section on sampled protocols.
- **Missing cells** are runs not done yet on this 2-core CPU machine (an ML-1M Pyramid
  Mixer epoch is about a million training rows); the commands above produce them."""


def mean_std(values: list[float]) -> str:
  return f'{np.mean(values):.4f} ± {np.std(values):.4f}' if values else '-'


def header(title: str, report: str, runner: str, root: str) -> list[str]:
  """A report's title, how it was generated (`report` and `runner` are module names) and
  where its runs computed."""
  return [
      f'# {title}', '',
      f'Generated by `python -m {report} --root={root}` on {datetime.date.today()} from the '
      f'runs of `{runner.replace(".", "/")}.py` (commands below); do not edit the tables by '
      'hand.', '',
      *hosts(root)]


def run_records(root: str) -> list[str]:
  """The results.json of every run under `root` (ROOT/DATASET/MODEL/POINT/seed=S), sorted."""
  return sorted(glob.glob(os.path.join(root, '*', '*', '*', 'seed=*', 'results.json')))


def hosts(root: str) -> list[str]:
  """Where the runs under `root` computed, as each results.json records it (`train.host`):
  on a CPU the numbers depend on the processor and on the cores a run could use."""
  counts = collections.Counter()
  for path in run_records(root):
    with open(path) as f:
      host = json.load(f).get('host')
    counts[f'{host["processor"]}, {host["cpu_cores"]} CPU cores, JAX {host["jax"]} on '
           f'{host["backend"]}' if host else
           'not recorded (written before results.json recorded it, 2026-12-07)'] += 1
  if not counts:
    return []
  return ['Where the runs computed (as their results.json records it):', '',
          *(f'- {where}: {count} run{"s" * (count > 1)}'
            for where, count in sorted(counts.items())), '']


def full_ranking(run: dict) -> dict | None:
  """A run's test metrics under full ranking (None if it was not scored so)."""
  return run['also_protocols'].get('full', {}).get('test')


def median_epoch_seconds(run: dict) -> float:
  """A run's training seconds per epoch (evaluation excluded), the median over its
  evaluations: an epoch slowed by a competing job, or by the run being paused, does not
  count, as it does in `train_seconds / epochs_run`."""
  history = [(0, 0.0)] + [(h['epoch'], h['train_seconds']) for h in run['valid_history']]
  return float(np.median([(seconds - before) / (epoch - epoch_before) for
                          (epoch_before, before), (epoch, seconds) in zip(history, history[1:])]))


def table(cells: dict, scores, metrics: tuple[str, ...] = METRICS) -> list[str]:
  """Rows `| dataset | model | seeds | MRR | NDCG | HR | ...`; `scores(run)` picks metrics
  (None: the run has none, and the seeds column counts only runs that have them)."""
  lines = ['| dataset | model | seeds | ' + ' | '.join(metrics) + ' |',
           '|---|---|---|' + '---|' * len(metrics)]
  for (dataset, model), (_, runs) in cells.items():
    values = [v for v in map(scores, runs) if v is not None]
    lines.append(f'| {dataset} | {model} | {len(values)} | ' + ' | '.join(
        mean_std([v[m] for v in values]) for m in metrics) + ' |')
  return lines


def ablations(cells: dict) -> list[str]:
  """Per dataset, the full Pyramid Mixer beside its variants (`pyramid:VARIANT`, the ablation
  switches of configs/pyramid.py): test NDCG@10 and HR@10 under `popularity:100` and `full`,
  means over seeds, with each variant's change relative to the full model."""
  metrics = [('popularity:100', 'NDCG@10', lambda run: run['test']),
             ('popularity:100', 'HR@10', lambda run: run['test']),
             ('full', 'NDCG@10', full_ranking), ('full', 'HR@10', full_ranking)]
  lines = ['| dataset | model | seeds | ' + ' | '.join(f'{m} {p}' for p, m, _ in metrics)
           + ' |', '|---|---|---|' + '---|' * len(metrics)]
  for dataset in DATASETS:
    full_model = cells.get((dataset, 'pyramid'))
    variants = sorted(m for d, m in cells if d == dataset and m.startswith('pyramid-'))
    if not (full_model and variants):
      continue
    mean = lambda runs, scores, m: np.mean([scores(run)[m] for run in runs])
    base = [mean(full_model[1], scores, m) for _, m, scores in metrics]
    for model in ['pyramid', *variants]:
      runs = cells[(dataset, model)][1]
      ours = [mean(runs, scores, m) for _, m, scores in metrics]
      lines.append(f'| {dataset} | {model} | {len(runs)} | ' + ' | '.join(
          f'{o:.4f}' + ('' if model == 'pyramid' else f' ({100 * (o / b - 1):+.1f}%)')
          for o, b in zip(ours, base)) + ' |')
  return lines if len(lines) > 2 else ['No ablation runs yet.']


def first_runs(cells: dict) -> dict[str, dict]:
  """Dataset -> its first run: what is the same for every run of a dataset (the data, the
  most-popular ranker) is read from it."""
  first = {}
  for (dataset, _), (_, runs) in cells.items():
    first.setdefault(dataset, runs[0])
  return first


DATA_STATS = ('users', 'items', 'interactions', 'valid_targets', 'test_targets',
              'valid_cold_targets', 'test_cold_targets')


def data_table(cells: dict) -> list[str]:
  """The '## Data' section: per dataset, the sequences after the preset and the split, from
  the runs' `data_stats` (the first run that has each; runs made before a statistic existed
  lack it). Cold: the share of targets whose item never occurs in training."""
  stats = {}
  for (dataset, _), (_, runs) in cells.items():
    for run in runs:
      for key, value in run['data_stats'].items():
        stats.setdefault(dataset, {}).setdefault(key, value)
  show = lambda v: '-' if v is None else f'{v:.3f}' if isinstance(v, float) else f'{v:,}'
  return ['## Data', '', '| dataset | ' + ' | '.join(k.replace('_', ' ') for k in DATA_STATS)
          + ' |', '|---|' + '---|' * len(DATA_STATS)] + [
              f'| {dataset} | ' + ' | '.join(show(values.get(k)) for k in DATA_STATS) + ' |'
              for dataset, values in stats.items()] + ['']


def unseen(run: dict) -> dict | None:
  """A run's scores under RecBole's sampler, `popularity:100:unseen` (None if not scored)."""
  return run['also_protocols'].get('popularity:100:unseen')


def beside_paper(cells: dict, scores, popularity) -> list[str]:
  """The paper's Table 1 beside our mean over seeds of `scores(run)`, for every cell whose
  runs all have them, and the most-popular ranker (`popularity(run)`) of each dataset."""
  lines = ['| dataset | model | paper MRR@10 | ours | paper NDCG@10 | ours | paper HR@10 | '
           'ours |', '|---|---|---|---|---|---|---|---|']
  rows = [(dataset, model, runs) for (dataset, model), (_, runs) in cells.items()]
  rows += [(dataset, 'popularity', runs[:1]) for dataset, _, runs in
           {d: (d, m, r) for d, m, r in rows}.values()]
  for dataset, model, runs in rows:
    paper = PAPER.get(dataset, {}).get(model)
    try:
      ours = [np.mean([(popularity if model == 'popularity' else scores)(run)[m]
                       for run in runs]) for m in METRICS]
    except (KeyError, TypeError):  # Not scored under this protocol (yet).
      continue
    if paper:
      name = 'most popular' if model == 'popularity' else model
      lines.append(f'| {dataset} | {name} | ' + ' | '.join(
          f'{p:.4f} | {o:.4f}' for p, o in zip(paper, ours)) + ' |')
  return lines


def load_cells(root: str) -> dict[tuple[str, str], tuple[dict, list[dict]]]:
  """(dataset, model directory) -> the cell's chosen grid point and its runs, for every
  cell with at least one run (a model directory is a config name, maybe with a variant)."""
  cells = {}
  for dataset in DATASETS:
    for directory in sorted(glob.glob(os.path.join(root, dataset, '*'))):
      cell = table1.load_cell(directory)
      if cell and cell[1]:
        cells[(dataset, os.path.basename(directory))] = cell
  return cells


def every_run(root: str, valid_metric: str = 'MRR@10',
              test_metrics: tuple[str, ...] = METRICS,
              full_metrics: tuple[str, ...] = ('NDCG@10', 'HR@10')) -> list[str]:
  """One table row per run under `root`, tuning runs and unfinished cells included: the
  validation metric the table selects on, `test_metrics` and, under full ranking,
  `full_metrics`."""
  header = [f'valid {valid_metric}', *(f'test {m}' for m in test_metrics),
            *(f'full {m}' for m in full_metrics)]
  lines = ['Including tuning runs and cells whose grid or seeds are not complete yet (those '
           'are not in the tables above). `train s` is training time without evaluation; '
           'runs that shared the 2 cores with other jobs took several times longer than on '
           'a quiet machine.', '',
           '| dataset | model | lr, dropout, hidden | seed | ' + ' | '.join(header) +
           ' | best epoch / run | train s |', '|---' * (len(header) + 6) + '|']
  for path in run_records(root):
    *_, dataset, model, point, seed, _ = path.split(os.sep)
    with open(path) as f:
      run = json.load(f)
    full = full_ranking(run)
    values = [run['valid'][valid_metric], *(run['test'][m] for m in test_metrics)]
    cells = [f'{value:.4f}' for value in values]
    cells += [f'{full[m]:.4f}' if full else '-' for m in full_metrics]
    lines.append(
        f'| {dataset} | {model} | {point.replace(",", ", ")} | {seed[5:]} | '
        f'{" | ".join(cells)} | {run["best_epoch"]} / {run["epochs_run"]} | '
        f'{run["train_seconds"]:.0f} |')
  return lines


def main(argv: list[str]) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)
  every_cell = load_cells(table1.ROOT.value)
  # A model directory with a variant (`pyramid-without_low_rank`) is an ablation, not a row
  # of the paper's Table 1.
  cells = {key: cell for key, cell in every_cell.items() if '-' not in key[1]}
  missing = [d for d in PAPER if not any(d == dataset for dataset, _ in cells)]
  lines = [
      *header('Pyramid Mixer, Table 1 on public data', 'experiments.pyramid_mixer.report',
              'experiments.pyramid_mixer.table1', table1.ROOT.value),
      '## Protocol: `popularity:100` (the paper\'s), test split, mean ± std over seeds',
      '',
      *table(cells, lambda run: run['test']),
      '',
      'The paper (Table 1; MRR@10 / NDCG@10 / HR@10) beside ours (mean over seeds):',
      '',
      *beside_paper(cells, lambda run: run['test'],
                    lambda run: run['baselines']['popularity']['test']),
      '',
      '## The same checkpoints under `popularity:100:unseen` (RecBole\'s sampler)',
      '',
      'RecBole draws evaluation negatives among the items the user has not interacted with '
      '(its sampler\'s `used_ids`); NOTES.md, which the headline protocol follows, says '
      '"excluding only the target". The two differ most for a model that scores the user\'s '
      'own past items high, as matrix factorisation does: compare the BPR-MF and '
      'most-popular rows of both tables with the paper\'s. The checkpoints are those chosen '
      'on `popularity:100` validation MRR@10.',
      '',
      *table(cells, lambda run: unseen(run) and unseen(run)['test']),
      '',
      *beside_paper(cells, lambda run: unseen(run)['test'],
                    lambda run: unseen(run)['popularity']['test']),
      '',
      f'No runs yet: {", ".join(missing)}.' if missing else 'Every paper dataset has runs.',
      '',
      '## The same checkpoints under `full` ranking (every item a candidate)',
      '',
      *table(cells, full_ranking),
      '',
      '## Tuning and cost of each cell',
      '',
      '| dataset | model | grid (lr, dropout, hidden) | chosen | best epoch per seed | '
      'train seconds per run (mean) |',
      '|---|---|---|---|---|---|',
  ]
  for (dataset, model), (chosen, runs) in every_cell.items():
    grid = ' '.join(f'({lr:g}, {d:g}, {h})' for lr, d, h in chosen['grid'])
    lines.append(
        f'| {dataset} | {model} | {grid} | ({chosen["lr"]:g}, {chosen["dropout"]:g}, '
        f'{chosen["hidden"]}) | {", ".join(str(r["best_epoch"]) for r in runs)} | '
        f'{np.mean([r["train_seconds"] for r in runs]):.0f} |')
  lines += ['', '## Ablations', '',
            'The paper\'s ablations (without cross-behavior, cross-feature or cross-period '
            'mixing) and its efficiency baseline (full-rank mixers) are on industrial data, '
            'in AUC, so there are no public numbers to set beside these. Each variant trains '
            'at the full model\'s chosen hyperparameters (see the cost table).', '',
            *ablations(every_cell)]
  lines += ['', '## Efficiency: low-rank against full-rank mixers', '',
            'Parameters and FLOPs from XLA\'s cost analysis of each dataset\'s config '
            '(`python -m experiments.pyramid_mixer.efficiency --root=ROOT --dataset=D` prints '
            'one); changes relative to `pyramid:without_low_rank`, the full-rank MLP-Mixer '
            'mixers that the paper compares with.', '']
  for dataset in DATASETS:
    rows = efficiency.efficiency_table(table1.ROOT.value, dataset)
    if rows:
      lines += [f'{dataset}:', '', *rows, '']
  lines += sasrec_ml1m(_SASREC_ML1M.value)
  lines += [*data_table(every_cell), '## Every run so far', '', *every_run(table1.ROOT.value)]
  lines += ['', '## Commands', '', COMMANDS, '', DIFFERENCES]
  with open(OUT.value + '.tmp', 'w') as f:
    f.write('\n'.join(lines) + '\n')
  os.replace(OUT.value + '.tmp', OUT.value)
  print('\n'.join(lines))


if __name__ == '__main__':
  app.run(main)
