"""The cost report: XLA's counts respond to what the config changes."""

import subprocess
import sys

from pmix_jax.tools import cost
from tests.conftest import REPO, tiny_config


def test_low_rank_costs_less_than_full_rank():
  low = cost.measure(tiny_config('pyramid', data__max_len=32))
  full = cost.measure(tiny_config('pyramid', data__max_len=32, model__low_rank=False))
  assert low['params']['embedding'] == full['params']['embedding']
  assert low['params']['other'] < full['params']['other']
  assert low['train_flops_per_example'] < full['train_flops_per_example']
  assert low['inference_flops_per_example'] < full['inference_flops_per_example']


def test_pyramid_cost_is_linear_in_length_and_attention_is_not():
  def flops(model, max_len):
    config = tiny_config(model, data__max_len=max_len, train__targets='prefix')
    return cost.measure(config, training=False)['inference_flops_per_example']

  pyramid = flops('pyramid', 64) / flops('pyramid', 16)
  sasrec = flops('sasrec', 64) / flops('sasrec', 16)
  assert pyramid < 4.5  # 4x the length; fixed costs (scoring every item) keep it below 4.
  assert sasrec > pyramid


def test_cli_prints_the_report():
  result = subprocess.run(
      [sys.executable, '-m', 'pmix_jax.tools.cost', '--config=configs/sasrec.py',
       '--config.data.synthetic.num_users=100', '--config.data.max_len=8'],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert 'parameters' in result.stdout and 'train MFLOP/example' in result.stdout
