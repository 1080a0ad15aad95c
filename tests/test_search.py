"""Tests of AutoMLP's short-term length search: the bi-level gradients, the alternation, the
choice on data with a known order, the workdir record and the search-then-retrain command."""

import functools
import glob
import json
import os
import signal
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import configs.automlp
from experiments.automlp import search_sanity
from pmix_jax import models, search, train
from pmix_jax.errors import ConfigError
from pmix_jax.models.automlp import ARCH_PARAM
from tests.conftest import run_main, start_main, tiny_config, tiny_flags

VOCAB = (41, 5)
MAX_LEN = 10
BATCH = 16


def tiny_problem(seed=0):
  """A dropout-free relaxed model, its parameters split into (weights, α), its loss and two
  random batches."""
  cfg = configs.automlp.get_config().model
  cfg.update(hidden=8, dropout=0.0, num_layers=1, short_lengths=(2, 4, 8))
  model = models.build(cfg, VOCAB, MAX_LEN)
  rng = np.random.default_rng(seed)
  batch = lambda: dict(inputs=np.stack([rng.integers(1, v, (BATCH, MAX_LEN)) for v in VOCAB],
                                       -1).astype(np.int32),
                       targets=rng.integers(1, VOCAB[0], BATCH).astype(np.int32))
  # Jitted: eager execution compiles every op on its own, several times slower here.
  init = jax.jit(model.init, static_argnames='train')
  params = dict(init(jax.random.key(seed), batch()['inputs'], train=False)['params'])
  arch = {ARCH_PARAM: jnp.asarray(rng.normal(size=3), jnp.float32)}
  del params[ARCH_PARAM]
  loss_fn = functools.partial(train.batch_loss, model=model, loss='softmax', num_negatives=1,
                              sequence_targets=False)
  return params, arch, loss_fn, batch(), batch()


def test_second_order_gradient_goes_through_the_virtual_weight_step():
  """The second-order α gradient matches central differences of
  `L_val(W - ξ ∇_W L_train(W, α), α)` and differs from the first-order one."""
  weights, arch, loss_fn, train_batch, valid_batch = tiny_problem()
  key = jax.random.key(0)
  xi = 1.0  # Large, so that the term through the step is far from negligible.
  gradient = jax.jit(functools.partial(search.architecture_gradient, loss_fn=loss_fn, xi=xi),
                     static_argnames='second_order')
  _, second = gradient(weights, arch, train_batch, valid_batch, key, key, second_order=True)
  _, first = gradient(weights, arch, train_batch, valid_batch, key, key, second_order=False)

  @jax.jit
  def unrolled_valid_loss(alpha):
    grads = jax.grad(lambda w: loss_fn({**w, ARCH_PARAM: alpha}, train_batch, key))(weights)
    stepped = jax.tree.map(lambda w, g: w - xi * g, weights, grads)
    return loss_fn({**stepped, ARCH_PARAM: alpha}, valid_batch, key)

  alpha, eps = np.asarray(arch[ARCH_PARAM], np.float32), 1e-2
  numeric = np.array([(unrolled_valid_loss(alpha + eps * e) - unrolled_valid_loss(alpha - eps * e))
                      / (2 * eps) for e in np.eye(3, dtype=np.float32)])
  np.testing.assert_allclose(second[ARCH_PARAM], numeric, rtol=0.05, atol=1e-4)
  assert not np.allclose(first[ARCH_PARAM], second[ARCH_PARAM], rtol=0.05, atol=1e-4)


def test_alpha_follows_the_validation_batch_and_the_weights_the_training_batch():
  weights, arch, loss_fn, batch_a, batch_b = tiny_problem()
  weights_tx, arch_tx = optax.sgd(0.1), optax.sgd(0.1)
  state = search.SearchState(
      step=jnp.zeros((), jnp.int32), weights=weights, arch=arch,
      weights_opt_state=weights_tx.init(weights), arch_opt_state=arch_tx.init(arch),
      rng=jax.random.key_data(jax.random.key(0)))
  step = jax.jit(functools.partial(search.search_step, loss_fn=loss_fn, weights_tx=weights_tx,
                                   arch_tx=arch_tx, second_order=False, xi=0.0))
  (trained_on_a, _), (trained_on_b, _) = step(state, batch_a, batch_b), step(state, batch_b,
                                                                              batch_b)
  # First order: α's step reads the validation batch only.
  np.testing.assert_array_equal(trained_on_a.arch[ARCH_PARAM], trained_on_b.arch[ARCH_PARAM])
  assert not np.allclose(trained_on_a.arch[ARCH_PARAM], arch[ARCH_PARAM])
  assert not np.allclose(trained_on_a.weights['output']['kernel'],
                         trained_on_b.weights['output']['kernel'])
  (validated_on_a, _) = step(state, batch_b, batch_a)
  assert not np.allclose(validated_on_a.arch[ARCH_PARAM], trained_on_b.arch[ARCH_PARAM])
  # α, and only α, is the architecture: the weights hold no copy of it.
  assert ARCH_PARAM not in trained_on_a.weights


def test_without_a_search_the_given_length_is_trained(tmp_path):
  config = tiny_config('automlp', automlp__search=False, automlp__short_length=4)
  chosen = search.resolve_architecture(config, str(tmp_path))
  assert tuple(chosen.model.short_lengths) == (4,)
  assert tuple(config.model.short_lengths) == (2, 5, 10, 20, 40)  # The input is not changed.
  assert not os.path.exists(tmp_path / 'search')
  plain = tiny_config('sasrec')
  assert search.resolve_architecture(plain, str(tmp_path)) is plain
  with pytest.raises(ConfigError, match='set config.automlp.short_length'):
    search.resolve_architecture(tiny_config('automlp', automlp__search=False), str(tmp_path))


def test_a_finished_search_is_read_back_and_must_match_the_candidates(tmp_path):
  config = tiny_config('automlp', data__name='sequence-file',
                       data__path=str(tmp_path / 'absent.txt'))  # Never read if reused.
  (tmp_path / 'search').mkdir()
  (tmp_path / 'search' / 'result.json').write_text(json.dumps(
      dict(candidates=[2, 5, 10, 20, 40], chosen=10, search_seconds=1.0)))
  assert tuple(search.resolve_architecture(config, str(tmp_path)).model.short_lengths) == (10,)
  config.model.short_lengths = (2, 5)
  with pytest.raises(ConfigError, match='use a new workdir'):
    search.resolve_architecture(config, str(tmp_path))


@pytest.mark.parametrize('overrides, message', [
    (dict(automlp__order='third'), 'order'),
    (dict(automlp__search_epochs=0), 'search_epochs'),
    (dict(model__short_lengths=(4,)), 'at least two candidate'),
])
def test_bad_search_config_is_a_clear_error(overrides, message, tmp_path):
  with pytest.raises(ConfigError, match=message):
    search.resolve_architecture(tiny_config('automlp', **overrides), str(tmp_path))


def test_one_command_searches_then_retrains_on_two_devices(tmp_path):
  """main.py searches (data parallel over 2 devices, the same α path as one device in this
  process), saves the record and its picture, retrains the chosen k from scratch, and a
  second run reads the search back instead of repeating it."""
  overrides = dict(model__short_lengths=(2, 4, 8), model__num_layers=1,
                   automlp__search_epochs=1, train__num_epochs=1, train__log_every_steps=5)
  workdir = tmp_path / 'run'
  run = run_main('automlp', str(workdir), tiny_flags(**overrides), devices=2)
  assert run.returncode == 0, run.stderr[-3000:]
  result = json.loads((workdir / 'search' / 'result.json').read_text())
  assert result['candidates'] == [2, 4, 8] and result['chosen'] in (2, 4, 8)
  assert result['chosen'] == result['candidates'][int(np.argmax(result['alpha']))]
  assert (workdir / 'search' / 'alpha.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert 'short_lengths: !!python/tuple\n  - ' + str(result['chosen']) in (
      workdir / 'config.txt').read_text()
  results = json.loads((workdir / 'results.json').read_text())
  assert results['model'] == 'automlp' and results['epochs_run'] == 1

  in_process = search.run_search(tiny_config('automlp', **overrides))
  assert in_process['chosen'] == result['chosen']
  np.testing.assert_allclose([p['weights'] for p in in_process['trajectory']],
                             [p['weights'] for p in result['trajectory']], rtol=1e-4)

  again = run_main('automlp', str(workdir), tiny_flags(**overrides))
  assert again.returncode == 0, again.stderr[-3000:]
  assert 'search epoch' not in again.stderr
  assert f'chose k = {result["chosen"]}' in again.stderr


@pytest.mark.parametrize('m, expected', [
    (3, 4), pytest.param(6, 8, marks=pytest.mark.slow)])
def test_search_finds_the_shortest_window_holding_the_last_m_behaviors(m, expected, tmp_path):
  """On data of order m, candidates shorter than m cannot see the item that decides the
  next one and lose; among the longer ones, which fit equally well, the length penalty
  picks the shortest: the candidate closest to m at or above it.

  The long-term module is off: it reads the whole window, so with it on, every short-term
  length fits this data equally well (measured: fixed k = 1..16 all reach the same
  validation NDCG@10) and there is nothing for the search to find."""
  path = tmp_path / 'order.txt'
  search_sanity.write_order_m_sequences(path, m)
  config = search_sanity.search_config(str(path), length_penalty=0.2)
  result = search.run_search(config)
  assert result['chosen'] == expected, result['weights']
  assert max(result['weights']) > 0.6, result['weights']  # A clear choice, not a near tie.


@pytest.mark.slow  # Two searches in subprocesses; the training loop's resume test is default.
def test_a_killed_search_resumes_and_chooses_as_an_uninterrupted_one(tmp_path):
  """Killed after its first checkpoint, the search resumes from it and ends with the same α
  trajectory (and so the same k) as a search that was never stopped."""
  overrides = dict(model__short_lengths=(2, 4, 8), model__num_layers=1,
                   automlp__search_epochs=2, train__num_epochs=1, train__log_every_steps=5,
                   train__checkpoint_every_steps=4)
  flags = tiny_flags(**overrides)
  workdir = str(tmp_path / 'killed')
  process = start_main('automlp', workdir, flags, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
  commits = lambda: glob.glob(os.path.join(workdir, 'search', 'checkpoints', '*',
                                           'commit_success.txt'))
  deadline = time.time() + 600  # Startup and compilation on a loaded machine.
  while not commits() and process.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  process.send_signal(signal.SIGKILL)
  assert commits(), 'no search checkpoint was committed before the kill'
  process.wait()
  assert process.returncode == -signal.SIGKILL, 'the run ended before it could be killed'
  assert not os.path.exists(os.path.join(workdir, 'search', 'result.json'))
  resumed = run_main('automlp', workdir, flags)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'Resumed the search from step' in resumed.stderr

  reference = search.run_search(tiny_config('automlp', **overrides))
  result = json.loads(open(os.path.join(workdir, 'search', 'result.json')).read())
  assert result['chosen'] == reference['chosen']
  assert [p['step'] for p in result['trajectory']] == [
      p['step'] for p in reference['trajectory']]
  np.testing.assert_allclose([p['weights'] for p in result['trajectory']],
                             [p['weights'] for p in reference['trajectory']], rtol=1e-6)
