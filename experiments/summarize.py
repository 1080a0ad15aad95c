r"""A markdown table of test metrics from the `results.json` of finished runs.

    python -m experiments.summarize /tmp/pyramid /tmp/sasrec

One row per workdir, plus the most-popular ranker of the first run (scored on the same test
targets); every row states its protocol, so tables never mix protocols silently.
"""

from __future__ import annotations

import json
import os
import sys

METRICS = ('HR@10', 'NDCG@10', 'MRR@10', 'HR@20', 'NDCG@20')


def row(name: str, protocol: str, metrics: dict[str, float], extra: str) -> str:
  return (f'| {name} | {protocol} | ' + ' | '.join(f'{metrics[m]:.4f}' for m in METRICS)
          + f' | {extra} |')


def main(workdirs: list[str]) -> None:
  runs = [json.load(open(os.path.join(w, 'results.json'))) for w in workdirs]
  print('| model | protocol | ' + ' | '.join(METRICS) + ' | best epoch / epochs run |')
  print('|---' * (len(METRICS) + 3) + '|')
  for run in runs:
    print(row(run['model'], run['protocol'], run['test'],
              f'{run["best_epoch"]} / {run["epochs_run"]}'))
  print(row('most popular', runs[0]['protocol'], runs[0]['baselines']['popularity']['test'],
            '-'))


if __name__ == '__main__':
  main(sys.argv[1:])
