"""The script that re-derives the length-aware BiLSTM's grouping constant."""

import json
import subprocess
import sys

import pytest

from experiments import lstm_grouping
from pmix_jax.models import lstm
from tests.conftest import REPO


@pytest.mark.parametrize('cost', [0.0, 100.0, 450.0])
def test_iteration_cost_inverts_the_cost_model(cost):
  a, rows, length, groups = 1e-3, 1024, 100, 8
  one = a * length * (cost + rows)
  many = a * length * (groups * cost + rows)
  assert lstm_grouping.iteration_cost(one, many, groups, rows) == pytest.approx(cost)


def test_script_prints_both_timings_and_the_constant():
  result = subprocess.run(
      [sys.executable, '-m', 'experiments.lstm_grouping', '--rows=16', '--length=4',
       '--inputs=8', '--hidden=4', '--repeats=1'],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report['ms_1_group'] > 0 and report['ms_8_groups'] > 0
  assert report['module_iteration_cost'] == lstm.ITERATION_COST and 'iteration_cost' in report
