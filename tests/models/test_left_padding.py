"""Left padding carries no information: every model scores a batch the same whether it is
`max_len` wide or cut to its longest row, which is what `config.data.length_buckets` relies on
(the cut drops only columns that are padding in every row).

In float64: the two widths round differently (sums over other numbers of zeros), and in
float32 that can flip a discrete choice at a near-tie (SURGE's top nodes of Eq. 9 did, for a
few of 200 scores, with these parameters), as running on another number of devices can. The
property tested is that the computations are the same up to rounding."""

import importlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pmix_jax import models, train
from tests.models.common import numpy_fan_in_init, random_inputs

CONFIGS = sorted(os.path.splitext(name)[0] for name in os.listdir(
    os.path.join(os.path.dirname(__file__), '..', '..', 'configs'))
                 if name.endswith('.py') and name not in ('__init__.py', 'base.py'))
MAX_LEN, CUT = 50, 8  # automlp.py's longest short-term length is 40.
PADS = (CUT, 12, 40, CUT)  # Every row has at least CUT columns of padding.


@pytest.mark.parametrize('name', CONFIGS)
def test_scores_do_not_depend_on_the_width_of_the_left_padding(name):
  config = importlib.import_module(f'configs.{name}').get_config()
  vocab = (51,) + (7,) * len(config.data.features)
  model = models.build(config.model, vocab, MAX_LEN)
  inputs = random_inputs(vocab, batch=len(PADS), length=MAX_LEN, pads=PADS, dtype=np.int32)
  if 'user' in config.data.features:  # One user a row, as the data derives that field.
    field = 1 + config.data.features.index('user')
    inputs[..., field] = np.where(inputs[..., 0] > 0, np.arange(1, len(PADS) + 1)[:, None], 0)
  params = numpy_fan_in_init(model, np.zeros((1, MAX_LEN, len(vocab)), np.int32))['params']
  candidates = np.random.default_rng(1).integers(1, vocab[0], (len(PADS), 6))
  # Candidates take a path of their own only in a model that scores them itself.
  cases = [(), (candidates,)] if hasattr(model, 'score_candidates') else [()]
  with jax.enable_x64(True):
    params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), params)
    score = jax.jit(train.make_score_fn(model))
    for args in cases:
      full = np.asarray(score(params, jnp.asarray(inputs), *args))
      cut = np.asarray(score(params, jnp.asarray(inputs[:, CUT:]), *args))
      assert full.dtype == np.float64, full.dtype
      np.testing.assert_allclose(cut, full, rtol=1e-9, atol=1e-9, err_msg=f'{name} {args}')
