r"""Writes experiments/automlp/RESULTS.md from the runs of `table2.py`.

    python -m experiments.automlp.report --root=/tmp/table2

Every number in the tables is read from the runs' files (results.json, and search/result.json
for AutoMLP's search); the paper's numbers are its Table 2 as transcribed in
shared/papers/NOTES.md section 3 and automlp.txt.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np
from absl import app, flags, logging

from experiments.pyramid_mixer import report as table1_report
from experiments.pyramid_mixer import table1

METRICS = table1_report.METRICS
# Table 2 of the paper (MRR@10, NDCG@10, HR@10) and its parameter column.
PAPER = {
    'ml-1m': {'fpmc': (.2453, .3088, .5156), 'gru4rec': (.3893, .4553, .6666),
              'bert4rec': (.3535, .4289, .6695), 'nextitnet': (.2085, .2642, .4455),
              'gru4rec_plus': (.3736, .4412, .6578), 'fdsa': (.3725, .4409, .6594),
              'automlp': (.3912, .4593, .6767)},
    'beauty': {'fpmc': (.0991, .1251, .2098), 'gru4rec': (.1162, .1435, .2324),
               'bert4rec': (.0907, .1198, .2154), 'nextitnet': (.1087, .1393, .2385),
               'gru4rec_plus': (.1325, .1638, .2657), 'fdsa': (.1305, .1595, .2536),
               'automlp': (.1438, .1754, .2779)},
}
PAPER_PARAMS = {'fpmc': '100 M', 'gru4rec': '33.5 M', 'bert4rec': '17 M',
                'nextitnet': '16.8 M', 'gru4rec_plus': '34.1 M', 'fdsa': '34.3 M',
                'automlp': '16.8 M'}

COMMANDS = """```bash
python -m experiments.automlp.table2 --root=ROOT --datasets=ml-1m,beauty --seeds=0,1,2
python -m experiments.automlp.report --root=ROOT
```"""

DIFFERENCES = """## Where we differ from the paper, and why

- **Data.** The paper's Beauty is the raw review crawl (1,210,271 users, 249,274 items);
  ours is S3-Rec's 5-core file, and the `automlp` preset (users with at least 10
  interactions) leaves 2,089 users, 1,991 items and 41,433 interactions of it: a far
  smaller and denser cut, so its numbers are not comparable with the paper's. ML-1M is the
  same data as the paper's (6,040 users; 3,416 items after the preset).
- **Features.** The shared ML-1M copy is the chronological sequence file (no ratings or
  timestamps): behaviors carry the item id, the first genre and the release year; Beauty,
  the item id and its first category. Feature-aware models (AutoMLP, GRU4Rec+, FDSA) read
  them, the others the item id only.
- **Loss.** Every model trains with the full softmax cross-entropy, except where the model
  owns its training signal (BERT4Rec's masking, FPMC's BPR). The paper writes AutoMLP's
  loss as binary cross-entropy against sampled negatives (`--config.train.loss=bce`).
- **The search.** DARTS' alternation, first order, for `config.automlp.search_epochs`
  epochs, with α's Adam at a larger step than DARTS' (the search is far shorter); the
  chosen k is argmax α, as in the paper, and the model is retrained from scratch.
- **Negatives.** 100 distinct negatives per target drawn once by whole-dataset popularity,
  excluding the target (NOTES.md's protocol), shared by every model; RecBole's sampler also
  excludes the user's history, which is the `popularity:100:unseen` table. Ranks count ties
  pessimistically.
- **Tuning budget.** Identical for every model (the grid in the tuning table, chosen on
  validation MRR@10); the paper tuned baselines by grid search too, without giving grids.
- **Parameters.** Ours are counted from each trained model's parameter tree; the paper's
  column is its own, for its embedding sizes.
- **Missing cells** are runs not done yet on this 2-core CPU machine; the commands above
  produce them."""


def search_record(results_path: str) -> dict | None:
  path = os.path.join(os.path.dirname(results_path), 'search', 'result.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def main(argv: list[str]) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)
  root = table1.ROOT.value
  cells = table1_report.load_cells(root)
  lines = [
      *table1_report.header('AutoMLP, Table 2 on public data', 'experiments.automlp.report',
                            'experiments.automlp.table2', root),
      '## Protocol: `popularity:100` (the paper\'s), test split, mean ± std over seeds',
      '',
      *table1_report.table(cells, lambda run: run['test']),
      '',
      'The paper (Table 2) beside ours (mean over seeds); parameters: the paper\'s column and '
      'ours (trained model):',
      '',
      '| dataset | model | paper MRR@10 | ours | paper NDCG@10 | ours | paper HR@10 | ours | '
      'paper params | ours |',
      '|---|---|---|---|---|---|---|---|---|---|',
  ]
  for (dataset, model), (_, runs) in cells.items():
    paper = PAPER.get(dataset, {}).get(model)
    if paper:
      ours = [np.mean([run['test'][m] for run in runs]) for m in METRICS]
      lines.append(f'| {dataset} | {model} | ' + ' | '.join(
          f'{p:.4f} | {o:.4f}' for p, o in zip(paper, ours)) +
          f' | {PAPER_PARAMS[model]} | {runs[0]["num_params"] / 1e6:.2f} M |')
  missing = [d for d in PAPER if not any(d == dataset for dataset, _ in cells)]
  lines += [
      '',
      f'No runs yet: {", ".join(missing)}.' if missing else 'Every paper dataset has runs.',
      '',
      '## The same checkpoints under `popularity:100:unseen` (RecBole\'s sampler)',
      '',
      'Negatives drawn among the items the user has not interacted with, as RecBole\'s '
      'sampler does (see the Pyramid Mixer report for why both are shown).',
      '',
      *table1_report.table(
          cells, lambda run: table1_report.unseen(run) and table1_report.unseen(run)['test']),
      '',
      '## The same checkpoints under `full` ranking (every item a candidate)',
      '',
      *table1_report.table(cells, table1_report.full_ranking),
      '',
      '## AutoMLP\'s search: the chosen short-term length and its cost',
      '',
      'Per run: the candidates, softmax(α) at the end of the search, the chosen k, and the '
      'wall time of the search against that of the retraining (training time without '
      'evaluation).',
      '',
      '| dataset | run | candidates | softmax(α) | chosen k | search s | retrain s |',
      '|---|---|---|---|---|---|---|',
  ]
  for path in sorted(glob.glob(os.path.join(root, '*', 'automlp*', '*', 'seed=*',
                                            'results.json'))):
    record = search_record(path)
    if record is None:
      continue
    *_, dataset, model, point, seed, _ = path.split(os.sep)
    with open(path) as f:
      run = json.load(f)
    lines.append(
        f'| {dataset} | {model} {point} {seed} | {record["candidates"]} | '
        + ', '.join(f'{w:.3f}' for w in record['weights']) +
        f' | {record["chosen"]} | {record["search_seconds"]:.0f} | '
        f'{run["train_seconds"]:.0f} |')
  lines += ['', *table1_report.data_table(cells), '## Every run so far', '',
            *table1_report.every_run(root)]
  lines += ['', '## Commands', '', COMMANDS, '', DIFFERENCES]
  with open(table1_report.OUT.value + '.tmp', 'w') as f:
    f.write('\n'.join(lines) + '\n')
  os.replace(table1_report.OUT.value + '.tmp', table1_report.OUT.value)
  print('\n'.join(lines))


if __name__ == '__main__':
  flags.FLAGS.set_default('out', os.path.join(os.path.dirname(__file__), 'RESULTS.md'))
  app.run(main)
