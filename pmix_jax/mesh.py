"""The device mesh: one axis, `DATA_AXIS`, over which every batch is split.

The training and evaluation steps are traced with it as the context mesh (`on_mesh`), so that
model code that needs per-device work can `jax.shard_map` over the data axis."""

from __future__ import annotations

import functools
from typing import Callable

import jax
import numpy as np
from jax.sharding import Mesh

DATA_AXIS = 'data'


def data_mesh() -> Mesh:
  return Mesh(np.array(jax.devices()), (DATA_AXIS,))


def on_mesh(fn: Callable, mesh: Mesh) -> Callable:
  """`fn`, traced with `mesh` as the context (abstract) mesh."""
  @functools.wraps(fn)
  def traced(*args, **kwargs):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return fn(*args, **kwargs)
  return traced
