r"""A picture of a trained MGNM's multi-level interests (the paper's Figures 5 and 6).

    python -m experiments.mgnm.interests --workdir=W --users=4 --out=W/interests.png

Loads the best checkpoint of the run in `--workdir`, under the config it was trained with
(its config.txt), computes the K interest capsules of every level for the first `--users`
users with a test target (their input: everything before it), projects all of them with one
PCA to two dimensions, and draws one panel per level: a marker per user, one point per
interest, and the user's test item as a star. Interests that spread apart within a level
and move between levels are what the paper's figures show.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import app, flags, logging

from pmix_jax import train
from pmix_jax.data import batches as batches_lib

_WORKDIR = flags.DEFINE_string('workdir', None, 'The trained run\'s workdir.')
_USERS = flags.DEFINE_integer('users', 4, 'How many users to draw.')
_OUT = flags.DEFINE_string('out', '', 'PNG path (default: WORKDIR/interests.png).')
flags.mark_flag_as_required('workdir')


def main(argv: list[str]) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  config = train.load_config(_WORKDIR.value)
  setup = train.Setup.create(config)
  checkpoints = train.Checkpoints(os.path.join(os.path.abspath(_WORKDIR.value), 'checkpoints'),
                                  config.checkpoint.keep_latest)
  restored = train.Checkpoints.restore(checkpoints.best, setup.state)
  checkpoints.close()
  if restored is None:
    raise app.UsageError(f'no best checkpoint in {_WORKDIR.value}/checkpoints: train first')
  params = restored[0].params
  rows = batches_lib.eval_rows(setup.data, 'test')
  rows = rows.take(np.arange(min(_USERS.value, len(rows))))
  inputs = batches_lib.gather_inputs(setup.data, rows, setup.max_len)
  targets = batches_lib.gather_targets(setup.data, rows, setup.max_len, False)
  interests, _, table = jax.jit(lambda p, x: setup.model.apply(
      {'params': p}, x, train=False, method='interests'))(params, inputs)
  interests, table = np.asarray(interests), np.asarray(table)  # [U, levels, K, D], [V, D]
  users, levels, num_interests, dim = interests.shape
  points = np.concatenate([interests.reshape(-1, dim), table[targets]])
  mean = points.mean(0)
  _, _, axes = np.linalg.svd(points - mean, full_matrices=False)
  project = lambda x: (x - mean) @ axes[:2].T
  flat = project(interests.reshape(-1, dim)).reshape(users, levels, num_interests, 2)
  target_points = project(table[targets])
  figure, panels = plt.subplots(1, levels, figsize=(3.2 * levels, 3.2), squeeze=False,
                                sharex=True, sharey=True)
  markers, colors = 'osD^v<>p', plt.get_cmap('tab10')
  for level, panel in enumerate(panels[0]):
    for user in range(users):
      panel.scatter(*flat[user, level].T, marker=markers[user % len(markers)],
                    color=colors(user), label=f'user {user}', alpha=0.8)
      panel.scatter(*target_points[user], marker='*', s=140, color=colors(user),
                    edgecolor='black')
    panel.set_title(f'level {level}' + (' (raw embeddings)' if level == 0 else ''))
  panels[0][0].legend(fontsize='x-small')
  figure.suptitle(f'MGNM interests (K = {num_interests}) per level, PCA of all points; '
                  '★ = the test item', fontsize='small')
  figure.tight_layout()
  out = _OUT.value or os.path.join(_WORKDIR.value, 'interests.png')
  figure.savefig(out, dpi=120)
  print(f'wrote {out}')


if __name__ == '__main__':
  app.run(main)
