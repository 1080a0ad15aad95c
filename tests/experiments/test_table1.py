"""The Table 1 pipeline end to end on the synthetic data: tune, seeds, report."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _run(module, *args):
  result = subprocess.run([sys.executable, '-m', module, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def test_table1_tunes_on_validation_then_runs_seeds_and_reports(tmp_path):
  root = str(tmp_path / 'runs')
  flags = [f'--root={root}', '--datasets=synthetic', '--models=sasrec', '--seeds=0,1',
           '--lrs=1e-3,1e-2', '--num_epochs=1']
  _run('experiments.pyramid_mixer.table1', *flags)
  cell = os.path.join(root, 'synthetic', 'sasrec')
  with open(os.path.join(cell, 'chosen.json')) as f:
    chosen = json.load(f)
  runs = {}
  for point in ('lr=0.001,dropout=0.2,hidden=64', 'lr=0.01,dropout=0.2,hidden=64'):
    with open(os.path.join(cell, point, 'seed=0', 'results.json')) as f:
      runs[point] = json.load(f)
  best = max(runs, key=lambda p: runs[p]['valid']['MRR@10'])
  assert best == f'lr={chosen["lr"]:g},dropout=0.2,hidden=64'  # Chosen on validation.
  assert os.path.exists(os.path.join(cell, best, 'seed=1', 'results.json'))
  other = next(p for p in runs if p != best)
  assert not os.path.exists(os.path.join(cell, other, 'seed=1'))
  assert runs[best]['protocol'] == 'popularity:100'
  assert 'full' in runs[best]['also_protocols']
  # Runs that exist are not repeated.
  mtime = os.path.getmtime(os.path.join(cell, best, 'seed=1', 'results.json'))
  _run('experiments.pyramid_mixer.table1', *flags)
  assert os.path.getmtime(os.path.join(cell, best, 'seed=1', 'results.json')) == mtime

  out = str(tmp_path / 'RESULTS.md')
  _run('experiments.pyramid_mixer.report', f'--root={root}', f'--out={out}')
  with open(out) as f:
    text = f.read()
  assert 'No runs yet: ml-100k, ml-1m, beauty.' in text
  ndcg = [json.load(open(os.path.join(cell, best, f'seed={s}', 'results.json')))['test']
          ['NDCG@10'] for s in (0, 1)]
  assert '| synthetic | sasrec | 2 |' in text
  assert f'{sum(ndcg) / 2:.4f} ±' in text  # The mean over seeds, read from the runs.


@pytest.mark.slow
def test_automlp_table2_searches_retrains_and_reports_the_chosen_k(tmp_path):
  root = str(tmp_path / 'runs')
  _run('experiments.automlp.table2', f'--root={root}', '--datasets=synthetic',
       '--models=automlp', '--seeds=0', '--num_epochs=1')
  run = os.path.join(root, 'synthetic', 'automlp', 'lr=0.001,dropout=0.2,hidden=64', 'seed=0')
  with open(os.path.join(run, 'search', 'result.json')) as f:
    record = json.load(f)
  out = str(tmp_path / 'RESULTS.md')
  _run('experiments.automlp.report', f'--root={root}', f'--out={out}')
  with open(out) as f:
    text = f.read()
  assert f'| {record["chosen"]} | {record["search_seconds"]:.0f} |' in text
  assert 'No runs yet: ml-1m, beauty.' in text


def test_ablations_train_at_the_full_models_point_and_are_reported_apart(tmp_path):
  root = str(tmp_path / 'runs')
  _run('experiments.pyramid_mixer.table1', f'--root={root}', '--datasets=synthetic',
       '--models=pyramid,pyramid:sum_fusion', '--seeds=0', '--lrs=1e-3,1e-2',
       '--num_epochs=1')
  cells = {model: os.path.join(root, 'synthetic', model)
           for model in ('pyramid', 'pyramid-sum_fusion')}
  chosen = {}
  for model, cell in cells.items():
    with open(os.path.join(cell, 'chosen.json')) as f:
      chosen[model] = json.load(f)
  assert len(chosen['pyramid']['grid']) == 2
  assert chosen['pyramid-sum_fusion']['grid'] == [
      [chosen['pyramid'][key] for key in ('lr', 'dropout', 'hidden')]]
  assert len(os.listdir(cells['pyramid-sum_fusion'])) == 2  # chosen.json and one point.

  out = str(tmp_path / 'RESULTS.md')
  _run('experiments.pyramid_mixer.report', f'--root={root}', f'--out={out}')
  with open(out) as f:
    main_tables, ablations = f.read().split('## Ablations')
  assert '| synthetic | pyramid | 1 |' in main_tables
  assert 'pyramid-sum_fusion' not in main_tables.split('## Tuning and cost')[0]
  assert '| synthetic | pyramid | 1 |' in ablations
  assert '| synthetic | pyramid-sum_fusion | 1 |' in ablations
