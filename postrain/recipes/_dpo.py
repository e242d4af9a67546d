"""DPO-family preference optimisation: pair log-probs and one objective.

A batch holds R rows per pair, `[B, R, T]` in the SFT row layout: row 0 is
the chosen response, row 1 the rejected one and, for `kto`, row 2 the
mismatched completion (`KTO_MISMATCH`). The objective runs the model once on
the `B·R` rows and sums token log-probs over each row's `loss_mask`, giving
the sequence log-probs `logp_w, logp_l` [B] and lengths `len_w, len_l` [B]
that every kernel of `postrain.losses.PREFERENCE_LOSSES` takes, plus

  ref_logp   [B, R] reference sequence log-probs (absent for `simpo`,
             `orpo`: reference-free variants need none), precomputed once or
             computed live by `make_sequence_logps` before the step;
  prev_logp  [B, R] log-probs under the iterate π_t that generated the
             pairs (`inpo`; offline pairs come from π_ref, so it defaults to
             `ref_logp`).

Rafailov et al., *Direct Preference Optimization: Your Language Model is
Secretly a Reward Model* (arXiv:2305.18290); the variants are documented on
their kernels.
"""

import inspect

import jax.numpy as jnp
import numpy as np

from postrain import losses
from postrain.recipes import _rl

REFERENCE_FREE = ('simpo', 'orpo')
# Rows per pair: chosen, rejected (and KTO's mismatched completion).
KTO_MISMATCH = 2
# d2o scores J self-samples per prompt drawn inside the step; no pair data.
UNSUPPORTED = {'d2o': 'd2o needs J on-policy samples per prompt'}


def rows_per_pair(loss_type: str) -> int:
  return 3 if loss_type == 'kto' else 2


def sequence_logps(graphdef, params, batch, *, chunk_size: int = 128):
  """Sequence log-probs, lengths and token-entropy sums, each [B, R].

  One forward over the `B·R` rows (chosen and rejected stacked), so the
  model and its compiled step see a single batch.
  """
  b, r, t = batch['inputs'].shape
  flat = {k: batch[k].reshape(b * r, t) for k in
          ('inputs', 'targets', 'positions', 'segment_ids', 'loss_mask')}
  fwd = _rl.forward(graphdef, params, flat, chunk_size=chunk_size)
  mask = flat['loss_mask']
  out = {'logp': jnp.sum(fwd['logp'] * mask, -1),
         'length': jnp.sum(mask, -1),
         'entropy': jnp.sum(fwd['entropy'] * mask, -1)}
  return {k: v.reshape(b, r) for k, v in out.items()}


def make_sequence_logps(graphdef, *, chunk_size: int = 128):
  """`fn(params, batch) -> [B, R]` sequence log-probs (reference passes)."""
  def fn(params, batch):
    return sequence_logps(graphdef, params, batch,
                          chunk_size=chunk_size)['logp']
  return fn


def _kernel_inputs(loss_type, seq, batch):
  """The named inputs of `PREFERENCE_LOSSES[loss_type]` from one forward."""
  logp, length = seq['logp'], seq['length']
  inputs = {'logp_w': logp[:, 0], 'logp_l': logp[:, 1],
            'len_w': length[:, 0], 'len_l': length[:, 1]}
  if 'ref_logp' in batch:
    ref = batch['ref_logp']
    prev = batch.get('prev_logp', ref)
    inputs.update(ref_w=ref[:, 0], ref_l=ref[:, 1], prev_w=prev[:, 0],
                  prev_l=prev[:, 1])
  if loss_type == 'kto':  # pairs split into unpaired rows
    b = logp.shape[0]
    inputs.update(
        logp=logp[:, :2].T.reshape(-1), ref=batch['ref_logp'][:, :2].T.reshape(
            -1), logp_mismatch=logp[:, KTO_MISMATCH],
        ref_mismatch=batch['ref_logp'][:, KTO_MISMATCH],
        desirable=jnp.concatenate([jnp.ones(b), jnp.zeros(b)]))
  return inputs


def make_objective(graphdef, *, loss_type: str = 'sigmoid',
                   beta: float = 0.1, loss_kwargs: dict | None = None,
                   chunk_size: int = 128):
  """`objective(params, batch, rng) -> (loss, metrics)` for any variant.

  Args:
    graphdef: the LM's `nnx.GraphDef`.
    loss_type: a key of `PREFERENCE_LOSSES` (not `d2o`).
    beta: β, passed to kernels that take it and used for the implicit
      rewards `β·h` of the metrics (its meaning per variant: the kernel's
      docstring; τ for `ipo`, 1/η for `sppo_hard`).
    loss_kwargs: the kernel's other hyperparameters (e.g. `epsilon`,
      `alpha`, `gamma`, `lam`).
    chunk_size: positions per chunk of the log-softmax.

  Returns:
    The objective: mean per-pair loss (for `kto`, the mean over the 2B
    unpaired rows), with the metrics of `specs/preference.md` §2 averaged
    over pairs (`rewards/*`, `logps/*`, `ranking_accuracy*`,
    `entropy/chosen`), `loss_tokens` and `tokens`.
  """
  if loss_type not in losses.PREFERENCE_LOSSES or loss_type in UNSUPPORTED:
    raise ValueError(
        f'loss_type={loss_type!r}: ' + UNSUPPORTED.get(loss_type, 'unknown') +
        f'; valid: {sorted(set(losses.PREFERENCE_LOSSES) - set(UNSUPPORTED))}.')
  kernel = losses.PREFERENCE_LOSSES[loss_type]
  sig = inspect.signature(kernel).parameters
  arrays = [n for n, p in sig.items() if p.kind == p.POSITIONAL_OR_KEYWORD]
  required = [n for n in arrays if sig[n].default is sig[n].empty]
  knobs = [n for n, p in sig.items() if p.kind == p.KEYWORD_ONLY]
  kwargs = dict(loss_kwargs or {})
  if set(kwargs) - set(knobs) or 'beta' in kwargs:
    raise ValueError(f'loss_kwargs {sorted(kwargs)}: {loss_type} takes '
                     f'{knobs}; beta is a key of its own.')
  if 'beta' in sig:
    kwargs['beta'] = beta
  reference_free = loss_type in REFERENCE_FREE

  def objective(params, batch, rng):
    del rng
    seq = sequence_logps(graphdef, params, batch, chunk_size=chunk_size)
    inputs = _kernel_inputs(loss_type, seq, batch)
    missing = [n for n in required if n not in inputs]
    if missing:
      raise KeyError(f'{loss_type} needs {missing}: give the batch ref_logp '
                     '(a reference) or use a reference-free variant.')
    per_pair = kernel(**{n: inputs[n] for n in arrays if n in inputs},
                      **kwargs)
    if loss_type == 'kto':
      per_pair = per_pair.reshape(2, -1).mean(0)
    ref = {} if reference_free else {'ref_w': inputs.get('ref_w'),
                                     'ref_l': inputs.get('ref_l')}
    diag = losses.preference_diagnostics(
        inputs['logp_w'], inputs['logp_l'], len_w=inputs['len_w'],
        len_l=inputs['len_l'], beta=beta, **ref)
    metrics = {k: jnp.mean(v) for k, v in diag.items() if k != 'beta'}
    metrics['entropy/chosen'] = jnp.sum(seq['entropy'][:, 0]) / jnp.maximum(
        jnp.sum(seq['length'][:, 0]), 1.0)
    metrics['loss_tokens'] = jnp.sum(seq['length'])
    metrics['tokens'] = jnp.sum(batch['segment_ids'] > 0).astype(jnp.float32)
    return jnp.mean(per_pair), metrics

  return objective


def best_vs_worst(rewards, *, min_gap: float = 0.0):
  """Online-DPO pairs: per prompt the best and the worst of K samples.

  Dong et al., *RLHF Workflow: From Reward Modeling to Online RLHF*
  (arXiv:2405.07863). Ties are broken deterministically by the lowest sample
  index (`argmax`/`argmin`); a prompt whose gap `max − min` is 0 (all
  samples tie) or below `min_gap` is dropped.

  >>> best_vs_worst(np.array([[0., 2., 2.], [1., 1., 1.]]))
  (array([1, 0]), array([0, 0]), array([ True, False]))

  Args:
    rewards: [P, K] scores of K samples for each of P prompts.
    min_gap: δ_min.

  Returns:
    `(best [P], worst [P], keep [P] bool)`.
  """
  r = np.asarray(rewards)
  if r.ndim != 2 or r.shape[1] < 2:
    raise ValueError(f'best_vs_worst needs rewards [P, K>=2], got {r.shape}.')
  gap = r.max(-1) - r.min(-1)
  return r.argmax(-1), r.argmin(-1), (gap > 0) & (gap >= min_gap)


def pair_rows(rows: dict, best, worst, keep, k: int) -> dict:
  """Stacks the chosen/rejected rows of `assemble`d samples into [n, 2, T].

  `rows` are `recipes.assemble` outputs in group layout (`[P·K, T]`);
  `behaviour_logp` becomes `prev_logp` [n, 2], the sampler's sequence
  log-probs (the iterate π_t that generated the pair, untempered).
  """
  p = np.flatnonzero(keep)
  idx = np.stack([p * k + np.asarray(best)[p], p * k + np.asarray(worst)[p]],
                 axis=1)
  out = {key: rows[key][idx] for key in
         ('inputs', 'targets', 'positions', 'segment_ids', 'loss_mask')}
  out['prev_logp'] = rows['behaviour_logp'][idx].sum(-1)
  return out
