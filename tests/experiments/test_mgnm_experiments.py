"""MGNM's table pipeline and its interest picture, end to end on the synthetic data."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.mgnm import collapse, report
from experiments.pyramid_mixer import report as table1_report
from tests.conftest import REPO


def _run(module, *args):
  result = subprocess.run([sys.executable, '-m', module, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


@pytest.mark.slow
def test_mgnm_table_selects_on_gauc_reports_and_draws_interests(tmp_path):
  root = str(tmp_path / 'runs')
  _run('experiments.mgnm.table2', f'--root={root}', '--datasets=synthetic', '--models=mgnm,mind',
       '--seeds=0', '--num_epochs=1', '--max_len=16')
  cell = os.path.join(root, 'synthetic', 'mgnm')
  with open(os.path.join(cell, 'chosen.json')) as f:
    assert json.load(f)['selection'] == 'valid GAUC'
  run = os.path.join(cell, 'lr=0.001,dropout=0,hidden=16', 'seed=0')
  with open(os.path.join(run, 'results.json')) as f:
    results = json.load(f)
  assert results['protocol'] == 'grouped:100' and 'GAUC' in results['test']
  out = str(tmp_path / 'RESULTS.md')
  text = _run('experiments.mgnm.report', f'--root={root}', f'--out={out}')
  assert f'| synthetic | mgnm | 1 | {results["test"]["GAUC"]:.4f} ± 0.0000 |' in text
  with open(os.path.join(root, 'synthetic', 'mind', 'lr=0.001,dropout=0,hidden=16', 'seed=0',
                         'results.json')) as f:
    mind = json.load(f)['test']['GAUC']
  gap = results['test']['GAUC'] - mind
  assert f'| mind | 1 | {mind:.4f} | {gap:+.4f} |' in text  # MGNM against each baseline.
  assert ('behind 1 of 1' if gap < 0 else 'ahead of all 1') in text
  picture = str(tmp_path / 'interests.png')
  _run('experiments.mgnm.interests', f'--workdir={run}', f'--out={picture}')
  with open(picture, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_a_probe_with_an_unknown_config_key_fails_before_training(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.mgnm.probes', f'--root={tmp_path}/runs',
       '--datasets=synthetic', '--probes=mgnm,model.use_bilstn=False', '--archive=',
       f'--report={tmp_path}/PROBES.md'],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  assert "the config has no 'model.use_bilstn'" in result.stderr
  assert not os.path.exists(tmp_path / 'runs')  # Not even the first, valid probe ran.


@pytest.mark.slow
def test_probes_train_score_the_levels_archive_and_report(tmp_path):
  root, kept, out = tmp_path / 'runs', tmp_path / 'archive', tmp_path / 'PROBES.md'
  _run('experiments.mgnm.probes', f'--root={root}', '--datasets=synthetic', '--max_len=16',
       '--num_epochs=2', '--probes=mgnm,model.use_bilstm=False+model.num_levels=2',
       f'--archive={kept}', f'--report={out}')
  text = out.read_text()
  for name, levels in [('mgnm', 4), ('model.use_bilstm=False+model.num_levels=2', 2)]:
    with open(kept / name / 'results.json') as f:
      results = json.load(f)
    assert results['epochs_run'] == 2
    gaucs = ' / '.join(f'{h["GAUC"]:.4f}' for h in results['valid_history'])
    assert f'| `{name}` | {gaucs} | {results["best_epoch"]} |' in text
    with open(kept / name / 'diagnosis.json') as f:
      found = json.load(f)
    assert -1.0 <= found['interests_cosine_to_mean_over_users'] <= 1.0 + 1e-6
    assert found['level_score_correlation_with_level_0'][0] == pytest.approx(1.0)
    assert len(found['level_score_correlation_with_level_0']) == levels
    pooled = found['valid_gauc_by_level_pooling']
    # Eq. 15's max over every level is the run's own validation score of that checkpoint.
    assert abs(pooled['max'] - results['valid']['GAUC']) < 1e-6
    assert len(pooled) == 2 + (levels - 1)
    assert f'| `{name}` | {found["capsules_cosine_to_mean_over_users"]:.3f} |' in text
    assert ('bilstm_to_z_norm_ratio' in found) == (name == 'mgnm')
  assert 'use_bilstm: false' in (kept / 'model.use_bilstm=False+model.num_levels=2' /
                                 'config.txt').read_text()


def test_the_bilstm_share_is_measured_at_real_behaviors_of_level_0():
  rng = np.random.default_rng(0)
  batch, levels, k, length, dim = 3, 2, 2, 5, 4
  z = rng.normal(size=(batch * levels, k, length, dim))
  added = 3.0 * z
  # Level 1's term and the padding are far larger: neither may count.
  added.reshape(batch, levels, k, length, dim)[:, 1] *= 100.0
  added[..., :2, :] = 1e6 * np.ones(dim)
  valid = np.array([[False, False, True, True, True]] * batch)[:, 1:]  # Shorter, left-padded.
  found = collapse.bilstm_share((z, added), (batch, levels), valid)
  assert found['bilstm_to_z_norm_ratio'] == pytest.approx(3.0)
  assert found['bilstm_cosine_to_mean_over_users'] < 0.99
  same = np.broadcast_to(z[:1], z.shape)
  assert collapse.bilstm_share((same, same), (batch, levels), valid)[
      'bilstm_cosine_to_mean_over_users'] == pytest.approx(1.0)


@pytest.mark.parametrize('sum_gauc, verdict', [
    (0.65, "Best on validation: sum over all levels (Figure 7); Eq. 15's max over all levels "
           'trails it by 0.0500.'),
    (0.55, 'Best on validation: max over all levels (Eq. 15); that is Eq. 15.')])
def test_the_report_states_which_level_pooling_the_table_run_prefers(tmp_path, sum_gauc,
                                                                     verdict):
  pooled = {'max': 0.6, 'sum': sum_gauc, 'max over levels 0-0': 0.58}
  with open(tmp_path / 'diagnosis.json', 'w') as f:
    json.dump(dict(rows=10, capsules_cosine_to_mean_over_users=0.5,
                   valid_gauc_by_level_pooling=pooled), f)
  text = '\n'.join(report.table_run_diagnosis(str(tmp_path)))
  assert verdict in text
  assert '| level 0 alone (H^(0), before any GCN layer) | 0.5800 |' in text
  assert 'BiLSTM' not in text  # This run has none.
  assert report.table_run_diagnosis(str(tmp_path / 'none')) == []


def test_the_batching_check_sets_each_run_beside_its_alike_batch_counterpart(tmp_path):
  """A run under the alike-batch root is paired with the table's run of the same path; one
  without a counterpart is left out; the summary counts the pairs and the lower ones."""
  def write(root, model, seed, valid, test):
    run = tmp_path / root / 'toys' / model / 'lr=0.001,dropout=0,hidden=16' / f'seed={seed}'
    run.mkdir(parents=True)
    history = [dict(epoch=1, train_seconds=3.0), dict(epoch=2, train_seconds=7.0)]
    (run / 'results.json').write_text(json.dumps(
        dict(valid=dict(GAUC=valid), test=dict(GAUC=test), valid_history=history)))

  write('alike', 'mind', 0, 0.70, 0.60)
  write('table', 'mind', 0, 0.72, 0.65)
  write('alike', 'mind', 1, 0.71, 0.66)
  write('table', 'mind', 1, 0.70, 0.61)
  write('alike', 'caser', 0, 0.5, 0.5)  # No table run to pair with.
  text = '\n'.join(report.batching_check(str(tmp_path / 'table'), str(tmp_path / 'alike')))
  assert '| toys | mind | 0 | 0.7000 | 0.7200 | 0.6000 | 0.6500 | -0.0500 | 4 | 4 |' in text
  assert '| toys | mind | 1 | 0.7100 | 0.7000 | 0.6600 | 0.6100 | +0.0500 | 4 | 4 |' in text
  assert 'caser' not in text
  assert 'mean +0.0000 over 2 pairs, 1 of them lower.' in text
  assert report.batching_check(str(tmp_path / 'table'), str(tmp_path / 'none')) == []


def test_every_run_shows_the_tables_metrics(tmp_path):
  """MGNM's report lists its runs by validation GAUC and @5 metrics; a run without full
  ranking shows a dash there."""
  run = dict(valid={'GAUC': 0.75, 'MRR@10': 0.5}, test={'GAUC': 0.7, 'NDCG@5': 0.25},
             also_protocols={}, best_epoch=3, epochs_run=8, train_seconds=12.4)
  directory = tmp_path / 'toys' / 'mgnm' / 'lr=0.001,dropout=0,hidden=16' / 'seed=1'
  directory.mkdir(parents=True)
  (directory / 'results.json').write_text(json.dumps(run))
  text = '\n'.join(table1_report.every_run(str(tmp_path), 'GAUC', ('GAUC', 'NDCG@5'),
                                           ('NDCG@5',)))
  header, rule, row = text.splitlines()[-3:]
  assert header == ('| dataset | model | lr, dropout, hidden | seed | valid GAUC | test GAUC | '
                    'test NDCG@5 | full NDCG@5 | best epoch / run | train s |')
  assert rule == '|---' * 10 + '|'
  assert row == ('| toys | mgnm | lr=0.001, dropout=0, hidden=16 | 1 | 0.7500 | 0.7000 | '
                 '0.2500 | - | 3 / 8 | 12 |')
