r"""Training and evaluation speed on this machine, measured with the training loop's own code.

    python -m experiments.benchmark --data_path=../shared/data/ml-100k

For every model config (default: all of configs/) and target mode (the config's own, and
`prefix` for causal models), with the same hidden size, batch, depth and loss: the jitted
train step's median time (warm-up excluded, median over repeats of `--steps` steps),
training targets/s counted one per predicted item
(the way a prefix-per-row framework counts them), sequences/s, the step's FLOPs from XLA's
cost analysis and the FLOP/s they imply, and the share of a real loop iteration (batch
gather, host-to-device transfer, dispatch) spent outside the jitted step. Then the time of
one full-ranking evaluation of every user (test split), after compilation. Without
`--data_path` it runs on the synthetic data. `--max_lens=50,200,800` shows how the cost
grows with the sequence length (same hidden size and batch for every model).

Two exceptions, printed in the table: a model that trains only with its own loss (MGNM's
BCE, SURGE's sampled softmax) keeps its config's loss; a model that runs a network per
(row, item) (`score_candidates`: SURGE, SLi-Rec, A2SVD) is timed under `popularity:100`,
as ranking the whole catalogue takes it minutes to hours.
"""

from __future__ import annotations

import importlib
import itertools
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from pmix_jax import evaluation, models, train
from pmix_jax.errors import ConfigError

_DATA_PATH = flags.DEFINE_string('data_path', '', 'MovieLens-100K directory (u.data).')
_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        'configs')
_MODELS = flags.DEFINE_list(
    'models', sorted(os.path.splitext(f)[0] for f in os.listdir(_CONFIGS)
                     if f.endswith('.py') and f not in ('base.py', '__init__.py')),
    'Config names in configs/ (default: every model config).')
_MAX_LENS = flags.DEFINE_list('max_lens', ['50'], 'Sequence lengths, one table row each.')
_HIDDEN = flags.DEFINE_integer('hidden', 64, 'Embedding / hidden size.')
_BATCH = flags.DEFINE_integer('batch_size', 256, 'Global batch size.')
_STEPS = flags.DEFINE_integer('steps', 20, 'Steps per timed repeat.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed repeats (the median is reported).')


def benchmark_config(name: str, targets: str, max_len: int, loss: str = 'softmax'):
  config = importlib.import_module(f'configs.{name}').get_config()
  if _DATA_PATH.value:
    config.data.name, config.data.path = 'ml-100k', _DATA_PATH.value
  config.data.max_len = max_len
  config.model.hidden = _HIDDEN.value
  config.train.batch_size = config.eval.batch_size = _BATCH.value
  config.train.targets = targets
  if loss:  # The same loss for every model, whatever its default ('': the config's own).
    config.train.loss = loss
  if 'automlp' in config:  # The retrained model, with one short-term length (the paper's
    config.model.short_lengths = (10,)  # search is measured by its own record).
  if 'num_layers' in config.model:
    config.model.num_layers = 2
  elif 'kernel_sizes' in config.model:  # Two pyramid levels.
    config.model.kernel_sizes, config.model.strides = (2,), (2,)
  return config


def median_seconds(run, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def measure(name: str, targets: str, max_len: int, loss: str) -> dict:
  config = benchmark_config(name, targets, max_len, loss)
  setup = train.Setup.create(config)
  sharding = jax.sharding.NamedSharding(setup.mesh, jax.sharding.PartitionSpec('data'))
  host_batches = list(itertools.islice(setup.train_batches.epoch(0), _STEPS.value))
  device_batches = [jax.device_put(b, sharding) for b in host_batches]
  state = setup.state

  def steps_on_device():
    nonlocal state
    for batch in device_batches:
      state, loss = setup.step_fn(state, batch)
    jax.block_until_ready(loss)

  def steps_from_host():  # What the training loop does: gather, transfer, step.
    nonlocal state
    for batch in itertools.islice(setup.train_batches.epoch(1), _STEPS.value):
      state, loss = setup.step_fn(state, jax.device_put(batch, sharding))
    jax.block_until_ready(loss)

  steps_on_device()  # Compile and warm up.
  step_seconds = median_seconds(steps_on_device, _REPEATS.value) / _STEPS.value
  loop_seconds = median_seconds(steps_from_host, _REPEATS.value) / _STEPS.value
  cost = setup.step_fn.lower(state, device_batches[0]).compile().cost_analysis()
  flops = (cost[0] if isinstance(cost, list) else cost)['flops']
  predicted = np.mean([(b['targets'] > 0).sum() for b in host_batches])
  sequences = np.mean([(b['inputs'][:, -1, 0] > 0).sum() for b in host_batches])

  protocol = 'popularity:100' if hasattr(setup.model, 'score_candidates') else 'full'
  negatives = (None if protocol == 'full' else
               evaluation.sample_negatives(setup.data, 'test', protocol, 0))
  evaluator = evaluation.Evaluator(setup.data, 'test', setup.max_len, _BATCH.value, False, 1.0,
                                   (10,), setup.mesh, negatives=negatives)
  evaluator.ranks(setup.score_fn, state.params)  # Compile.
  eval_seconds = median_seconds(lambda: evaluator.ranks(setup.score_fn, state.params),
                                _REPEATS.value)
  return dict(model=name, targets=targets, max_len=max_len, loss=config.train.loss,
              protocol=protocol, step_ms=1e3 * step_seconds,
              targets_per_s=predicted / step_seconds, sequences_per_s=sequences / step_seconds,
              gflop_per_step=flops / 1e9, gflop_per_s=flops / 1e9 / step_seconds,
              outside_step=max(loop_seconds - step_seconds, 0.0) / loop_seconds,
              eval_users=evaluator.num_rows, eval_s=eval_seconds)


def matmul_gflop_per_s(size: int = 2048) -> float:
  """The machine's reference: a large float32 matrix product."""
  x = jnp.ones((size, size), jnp.float32)
  product = jax.jit(lambda a: a @ a)
  product(x).block_until_ready()
  return 2 * size**3 / 1e9 / median_seconds(lambda: product(x).block_until_ready(), 5)


def main(argv):
  del argv
  print(f'devices: {jax.devices()}; data: {_DATA_PATH.value or "synthetic"}; '
        f'hidden {_HIDDEN.value}, batch {_BATCH.value}, 2 layers (or blocks), '
        'full-softmax cross-entropy unless a model trains only with its own loss')
  print(f'reference: a 2048x2048 float32 matmul runs at {matmul_gflop_per_s():.0f} GFLOP/s')
  header = ('| model | targets | max_len | loss | step ms | targets/s | sequences/s | '
            'GFLOP/step | GFLOP/s | outside step | evaluation of all users |')
  print(header)
  print('|---' * (header.count('|') - 1) + '|')
  for name in _MODELS.value:
    config = importlib.import_module(f'configs.{name}').get_config()
    # The config's own mode, and `prefix` for every causal model, to compare with the rest.
    modes = sorted({config.train.targets} |
                   ({'prefix'} if models.MODELS[config.model.name].causal else set()))
    for targets, max_len in itertools.product(modes, map(int, _MAX_LENS.value)):
      try:
        r = measure(name, targets, max_len, 'softmax')
      except ConfigError:  # It trains only with its own loss.
        r = measure(name, targets, max_len, '')
      print(f'| {r["model"]} | {r["targets"]} | {max_len} | {r["loss"]} | {r["step_ms"]:.1f} | '
            f'{r["targets_per_s"]:,.0f} | {r["sequences_per_s"]:,.0f} | '
            f'{r["gflop_per_step"]:.2f} | '
            f'{r["gflop_per_s"]:.1f} | {100 * r["outside_step"]:.1f}% | '
            f'{1e3 * r["eval_s"]:.1f} ms ({r["eval_users"]} users, {r["protocol"]}) |',
            flush=True)


if __name__ == '__main__':
  app.run(main)
