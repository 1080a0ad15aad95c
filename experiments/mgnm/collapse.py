"""Measures of MGNM's interests for `probes.diagnose`: plain numpy, no flags, so that tests
can import them beside any runner."""

from __future__ import annotations

import numpy as np


def _unit(vectors: np.ndarray) -> np.ndarray:
  return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def cosine_to_mean(vectors: np.ndarray) -> float:
  """Mean cosine of each row's vector `[N, K, E]` with the mean direction of its interest k
  over the rows (1: the same for every user), averaged over k."""
  unit = _unit(vectors)
  mean = _unit(unit.mean(axis=0))
  return float(np.einsum('nke,ke->nk', unit, mean).mean())


def pairwise_cosine(vectors: np.ndarray) -> float:
  """Mean cosine between the K interests of a row `[N, K, E]` (1: one interest K times)."""
  unit = _unit(vectors)
  k = unit.shape[1]
  return float(np.einsum('nke,nje->nkj', unit, unit)[:, ~np.eye(k, dtype=bool)].mean())


def bilstm_share(sown: tuple[np.ndarray, np.ndarray], batch_levels: tuple[int, int],
                 valid: np.ndarray) -> dict:
  """Of level 0, whether Eq. 10's BiLSTM term drowns Z: its norm over Z's at each real
  behavior (median), and its sum over the behaviors' cosine to the mean over users."""
  z, added = (np.asarray(a).reshape(*batch_levels, *a.shape[1:])[:, 0] for a in sown)
  valid = np.pad(valid, [(0, 0), (z.shape[2] - valid.shape[1], 0)])  # Left-padded.
  ratio = np.linalg.norm(added, axis=-1) / np.maximum(np.linalg.norm(z, axis=-1), 1e-12)
  summed = (added * valid[:, None, :, None]).sum(axis=2)
  return dict(bilstm_to_z_norm_ratio=float(np.median(ratio.transpose(0, 2, 1)[valid])),
              bilstm_cosine_to_mean_over_users=cosine_to_mean(summed))
