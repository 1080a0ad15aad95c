r"""The paper's efficiency table, ours: quality, parameters and FLOPs, low rank vs full rank.

    python -m experiments.pyramid_mixer.efficiency --root=ROOT --dataset=ml-100k

For Pyramid Mixer with low-rank mixers, the same model with full-rank MLP-Mixer mixers
(`pyramid:without_low_rank`, the paper's efficiency baseline) and SASRec for reference:
parameters and per-example FLOPs from XLA's cost analysis (`pmix_jax.tools.cost`) on the
dataset's Table 1 config, and the test metrics (mean over seeds) of the runs that
`table1.py` made in ROOT for that dataset; changes are relative to the full-rank baseline.
"""

from __future__ import annotations

import os

import numpy as np
from absl import app, flags, logging

from experiments.pyramid_mixer import table1
from pmix_jax.tools import cost

_DATASET = flags.DEFINE_string('dataset', 'ml-100k', 'A dataset of table1.py.')
BASELINE = 'pyramid:without_low_rank'
MODELS = (BASELINE, 'pyramid', 'sasrec')


def efficiency_table(root: str, dataset: str) -> list[str]:
  """Markdown rows for the models of MODELS that have runs in `root` for `dataset`."""
  rows = {}
  for model in MODELS:
    cell = table1.load_cell(os.path.join(root, dataset, model.replace(':', '-')))
    if not cell or not cell[1]:
      continue
    chosen, runs = cell
    measured = cost.measure(table1.run_config(dataset, model, chosen['lr'], chosen['dropout'],
                                              chosen['hidden'], 0))
    rows[model] = dict(
        sampled=np.mean([r['test']['NDCG@10'] for r in runs]),
        full=np.mean([r['also_protocols']['full']['test']['NDCG@10'] for r in runs]),
        seeds=len(runs), params=measured['params']['total'],
        train=measured['train_flops_per_example'],
        inference=measured['inference_flops_per_example'])
  base = rows.get(BASELINE)

  def change(model: str, key: str) -> str:
    return f' ({100 * (rows[model][key] / base[key] - 1):+.1f}%)' if base else ''

  lines = ['| model | seeds | NDCG@10 popularity:100 | NDCG@10 full | parameters | '
           'train MFLOP/example | inference MFLOP/example |', '|---|---|---|---|---|---|---|']
  for model, row in rows.items():
    lines.append(f'| {model} | {row["seeds"]} | {row["sampled"]:.4f} | {row["full"]:.4f} | '
                 f'{row["params"]:,}{change(model, "params")} | '
                 f'{row["train"] / 1e6:.2f}{change(model, "train")} | '
                 f'{row["inference"] / 1e6:.2f}{change(model, "inference")} |')
  return lines if rows else []


def main(argv: list[str]) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)
  lines = efficiency_table(table1.ROOT.value, _DATASET.value)
  print('\n'.join(lines) or f'no runs on {_DATASET.value}')


if __name__ == '__main__':
  app.run(main)
