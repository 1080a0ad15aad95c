"""The Table 1 pipeline end to end on the synthetic data: tune, seeds, report."""

import json
import os
import subprocess
import sys

import pytest

from experiments.pyramid_mixer import report, table1
from tests.conftest import REPO


def _run(module, *args):
  result = subprocess.run([sys.executable, '-m', module, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def test_table1_tunes_on_validation_then_runs_seeds_and_reports(tmp_path):
  """Also: the archive keeps the records of finished runs only, and the report regenerated
  from it is the report of the runs themselves."""
  root = str(tmp_path / 'runs')
  # FPMC trains in seconds: what is tested is the runner, not a model.
  archived = str(tmp_path / 'archive')
  flags = [f'--root={root}', f'--archive={archived}', '--datasets=synthetic', '--models=fpmc',
           '--seeds=0,1', '--lrs=1e-3,1e-2', '--num_epochs=1']
  _run('experiments.pyramid_mixer.table1', *flags)
  cell = os.path.join(root, 'synthetic', 'fpmc')
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
  # Unless they ran another config: the runner stops, and says what differs.
  refused = subprocess.run([sys.executable, '-m', 'experiments.pyramid_mixer.table1', *flags,
                            '--num_epochs=2'], cwd=REPO, capture_output=True, text=True,
                           timeout=600)
  assert refused.returncode != 0 and 'train.num_epochs: 1 -> 2' in refused.stderr
  assert os.path.getmtime(os.path.join(cell, best, 'seed=1', 'results.json')) == mtime

  out = str(tmp_path / 'RESULTS.md')
  _run('experiments.pyramid_mixer.report', f'--root={root}', f'--out={out}')
  with open(out) as f:
    text = f.read()
  assert 'No runs yet: ml-100k, ml-1m, beauty.' in text
  ndcg = [json.load(open(os.path.join(cell, best, f'seed={s}', 'results.json')))['test']
          ['NDCG@10'] for s in (0, 1)]
  assert '| synthetic | fpmc | 2 |' in text
  host = runs[best]['host']  # Where the three runs computed, as their results.json say.
  assert (f'- {host["processor"]}, {host["cpu_cores"]} CPU cores, JAX {host["jax"]} on '
          f'{host["backend"]}: 3 runs') in text
  assert f'{sum(ndcg) / 2:.4f} ±' in text  # The mean over seeds, read from the runs.
  stats = runs[best]['data_stats']
  assert (f'| synthetic | {stats["users"]:,} | {stats["items"]:,} | '
          f'{stats["interactions"]:,} |') in text.split('## Data')[1]
  assert f'{stats["test_cold_targets"]:.3f} |' in text.split('## Data')[1]

  # The runner archived every finished run; the archive command copies no unfinished one.
  kept = lambda: {os.path.relpath(os.path.join(d, f), archived)
                  for d, _, files in os.walk(archived) for f in files}
  expected = {os.path.join('synthetic', 'fpmc', 'chosen.json')} | {
      os.path.join('synthetic', 'fpmc', point, f'seed={seed}', name)
      for point, seed in ((best, 0), (best, 1), (other, 0))
      for name in ('results.json', 'config.txt')}
  assert kept() == expected
  unfinished = os.path.join(root, 'synthetic', 'sasrec', best, 'seed=0')
  os.makedirs(os.path.join(unfinished, 'search'))
  open(os.path.join(unfinished, 'search', 'result.json'), 'w').write('{}')
  _run('experiments.archive', f'--root={root}', f'--to={archived}')
  assert kept() == expected
  from_archive = str(tmp_path / 'from_archive.md')
  _run('experiments.pyramid_mixer.report', f'--root={archived}', f'--out={from_archive}')
  below_the_root = lambda text: text.split('\n', 3)[3]
  assert below_the_root(open(from_archive).read()) == below_the_root(text)


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


def test_an_ablation_trains_at_its_full_models_point_and_is_set_beside_it(tmp_path):
  root = str(tmp_path)
  grid = [(1e-3, 0.2, 64), (3e-3, 0.2, 64)]
  assert table1.grid_points(root, 'ml-100k', 'pyramid:sum_fusion', grid) == grid
  cell = os.path.join(root, 'ml-100k', 'pyramid')
  os.makedirs(cell)
  with open(os.path.join(cell, 'chosen.json'), 'w') as f:
    json.dump(dict(lr=3e-3, dropout=0.2, hidden=64, seeds=[0], grid=grid), f)
  assert table1.grid_points(root, 'ml-100k', 'pyramid:sum_fusion', grid) == [(3e-3, 0.2, 64)]
  assert table1.grid_points(root, 'ml-100k', 'pyramid', grid) == grid  # Tuned.

  def run(ndcg, full_ndcg):
    return dict(test={'NDCG@10': ndcg, 'HR@10': 2 * ndcg},
                also_protocols={'full': {'test': {'NDCG@10': full_ndcg, 'HR@10': 0.5}}})
  cells = {('ml-1m', 'pyramid'): ({}, [run(0.40, 0.10), run(0.42, 0.10)]),
           ('ml-1m', 'pyramid-sum_fusion'): ({}, [run(0.3690, 0.12)]),
           ('ml-1m', 'sasrec'): ({}, [run(0.30, 0.09)])}
  lines = report.ablations(cells)
  assert lines[2] == '| ml-1m | pyramid | 2 | 0.4100 | 0.8200 | 0.1000 | 0.5000 |', lines
  assert lines[3] == ('| ml-1m | pyramid-sum_fusion | 1 | 0.3690 (-10.0%) | 0.7380 (-10.0%) '
                      '| 0.1200 (+20.0%) | 0.5000 (+0.0%) |'), lines
  assert len(lines) == 4, lines  # SASRec is no ablation.
  assert report.ablations({('ml-1m', 'pyramid'): cells[('ml-1m', 'pyramid')]}) == [
      'No ablation runs yet.']


def test_epoch_seconds_are_the_median_epoch_so_a_paused_one_does_not_count():
  # Evaluated after epochs 1, 2, 4 and 5 (cumulative training seconds); epoch 5 was paused.
  history = [dict(epoch=1, train_seconds=3.0), dict(epoch=2, train_seconds=5.0),
             dict(epoch=4, train_seconds=9.0), dict(epoch=5, train_seconds=900.0)]
  assert report.median_epoch_seconds(dict(valid_history=history)) == 2.5


def test_the_external_check_reads_a_run_record_and_judges_it_by_the_bar(tmp_path):
  assert 'No finished run yet' in '\n'.join(report.sasrec_ml1m(str(tmp_path)))
  run = dict(protocol='full', mask_history=True, model='sasrec',
             data_stats=dict(users=6040, items=3706), valid={'NDCG@10': 0.17},
             test={'HR@10': 0.30, 'NDCG@10': 0.149, 'HR@20': 0.42}, best_epoch=5,
             epochs_run=9, train_seconds=100.0)
  (tmp_path / 'results.json').write_text(json.dumps(run))
  row = report.sasrec_ml1m(str(tmp_path))[6]
  assert row == ('| sasrec | 6040 | 3706 | 0.3000 | 0.1490 | 0.4200 | 0.1700 | 5 / 9 | 100 | '
                 'not met |')
  run['test']['NDCG@10'] = 0.15
  (tmp_path / 'results.json').write_text(json.dumps(run))
  assert report.sasrec_ml1m(str(tmp_path))[6].endswith('| met |')
  run['mask_history'] = False  # Another protocol than the literature's is refused.
  (tmp_path / 'results.json').write_text(json.dumps(run))
  with pytest.raises(ValueError, match='seen items filtered'):
    report.sasrec_ml1m(str(tmp_path))
