r"""Re-derives `pmix_jax.models.lstm.ITERATION_COST` on this machine.

    python -m experiments.lstm_grouping [--rows=1024 --length=100 --inputs=64 --hidden=16]

The length-aware BiLSTM picks, per batch, how many groups of rows to run by a cost model:
time ~ a * (iterations * ITERATION_COST + row-steps). On full-length rows every grouping
does the same row-steps (rows * length) and G groups make G times the iterations, so the
training-step times of 1 and 8 groups (forward and backward, each the median of `--repeats`
after a warm-up) give both unknowns. The default shape is MGNM's BiLSTM (K d' = 64 inputs,
16 states per direction) over a batch of its rows. Run on a quiet machine; the constant
only steers the choice of grouping, never the values.
"""

import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from pmix_jax.models import lstm

_ROWS = flags.DEFINE_integer('rows', 1024, 'Rows per batch.')
_LENGTH = flags.DEFINE_integer('length', 100, 'Behaviors per row (all rows full).')
_INPUTS = flags.DEFINE_integer('inputs', 64, 'Input width E.')
_HIDDEN = flags.DEFINE_integer('hidden', 16, 'States per direction H.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed repeats (median).')
_MANY = 8  # The many-groups branch of `lstm.bidirectional_lstm`'s default groupings.


def step_ms(groups: int, x: jax.Array, valid: jax.Array, weights: tuple) -> float:
  """Median ms of the gradient of a scalar of the BiLSTM's states (forward and backward)."""
  def loss(x, forward, backward):
    states, _ = lstm.bidirectional_lstm(x, valid, forward, backward, groupings=(groups,))
    return jnp.sum(jnp.sin(states))

  grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
  jax.block_until_ready(grad(x, *weights))  # Compilation and warm-up.
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    jax.block_until_ready(grad(x, *weights))
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times)


def iteration_cost(one_ms: float, many_ms: float, groups: int, rows: int) -> float:
  """The cost model's constant c, in row-steps, from full-length step times with 1 group,
  `one = a L (c + N)`, and with `groups` groups, `many = a L (groups c + N)`."""
  per_iteration = (many_ms - one_ms) / (groups - 1)  # a L c
  per_row_steps = one_ms - per_iteration  # a L N
  return rows * per_iteration / per_row_steps if per_row_steps > 0 else float('nan')


def main(argv: list[str]) -> None:
  del argv
  rows, length, inputs, hidden = _ROWS.value, _LENGTH.value, _INPUTS.value, _HIDDEN.value
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(rows, length, inputs)), jnp.float32)
  valid = jnp.ones((rows, length), bool)
  draw = lambda *shape: jnp.asarray(rng.normal(size=shape) / np.sqrt(shape[0]), jnp.float32)
  weights = tuple((draw(inputs, 4 * hidden), draw(hidden, 4 * hidden),
                   jnp.zeros((4 * hidden,), jnp.float32)) for _ in range(2))
  one, many = step_ms(1, x, valid, weights), step_ms(_MANY, x, valid, weights)
  derived = iteration_cost(one, many, _MANY, rows)
  print(json.dumps(dict(rows=rows, length=length, inputs=inputs, hidden=hidden,
                        ms_1_group=round(one, 1), ms_8_groups=round(many, 1),
                        iteration_cost=round(derived, 1),
                        module_iteration_cost=lstm.ITERATION_COST,
                        backend=jax.default_backend(), devices=jax.device_count())))


if __name__ == '__main__':
  app.run(main)
