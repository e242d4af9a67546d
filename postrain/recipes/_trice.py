"""TRICE: MCMC-EM over rationales with the leave-one-out control variate.

Phan et al., *Training Chain-of-Thought via Latent-Variable Inference*
(arXiv:2312.02179), spec `rationale.md` §1. One step, for a minibatch of M
examples with chain states z (the rationale memory, `recipes.memory`):

  z̃_m ~ π_θ(·|x_m)  (temperature 1, no truncation)     c̃_m = verify(z̃_m)
  z'_m = z̃_m if c̃_m else z_m,  mask_m = c̃_m ∨ c_m     (memory.update)
  loss = Σ_i weighted_seq_logprob(logπ_θ(cand_i|x), w_i, s_i, n)

over the 2M candidates `[z'_1..z'_M, z̃_1..z̃_M]` with the weights of
`losses.trice_weights` (control variate or basic) and, optionally, L of them
drawn by `losses.trice_subsample`. Candidate rows are built on the host by
`candidate_rows` in the SFT layout of `recipes.assemble` (plain prompt +
rationale, loss on the rationale); rows 0..M−1 are z', rows M..2M−1 are z̃.
"""

import collections
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from postrain import losses
from postrain.recipes import _rl
from postrain.recipes import _rollout

ROW_KEYS = ('inputs', 'targets', 'positions', 'segment_ids', 'loss_mask')


def candidate_rows(prompts: np.ndarray, prompt_lengths: np.ndarray,
                   memory_tokens: np.ndarray, memory_length: np.ndarray,
                   proposal: _rollout.Rollout, *, pad_id: int
                   ) -> dict[str, np.ndarray]:
  """The 2M candidate rows `[z'; z̃]` under the plain prompts, [2M, P+T−1].

  Args:
    prompts, prompt_lengths: [M, P], [M] plain prompts (`proposal.prompts`).
    memory_tokens, memory_length: [M, T], [M] the updated memory rows z'.
    proposal: the rollout that drew z̃ (one sample per prompt).
    pad_id: padding id.
  """
  two = lambda a, b: np.concatenate([a, b])
  rows = _rollout.Rollout(
      prompts=two(prompts, prompts),
      prompt_lengths=two(prompt_lengths, prompt_lengths),
      completions=two(memory_tokens, proposal.completions),
      completion_lengths=two(memory_length, proposal.completion_lengths),
      logprobs=np.zeros((2 * len(prompts),) + memory_tokens.shape[1:],
                        np.float32),
      done=two(np.ones(len(prompts), bool), proposal.done), texts=[],
      records=[])
  out = _rollout.assemble(rows, pad_id=pad_id)
  return {k: out[k] for k in ROW_KEYS}


def _weights(batch, control_variate):
  return losses.trice_weights(batch['proposal_correct'], batch['mask'],
                              control_variate=control_variate)


def make_objective(graphdef, *, control_variate: bool = True,
                   num_samples: int = 0, chunk_size: int = 128):
  """`objective(params, batch, rng) -> (loss, metrics)` of one TRICE step.

  Args:
    graphdef: the LM's `nnx.GraphDef`.
    control_variate: False gives the basic estimator (β ≡ 0).
    num_samples: L > 0 scores only L candidates drawn by systematic
      resampling (spec §1.4 step 6b; static shape); 0 scores all 2M.
    chunk_size: positions per chunk of the log-softmax.

  Returns:
    The objective over a batch with the `ROW_KEYS` rows [2M, T] and
    `proposal_correct`, `mask` [M]. Its loss may be negative (mixed signs);
    only its gradient means something.
  """
  def objective(params, batch, rng):
    tw = _weights(batch, control_variate)
    rows = {k: batch[k] for k in ROW_KEYS}
    w, s, n = tw['weights'], tw['signs'], tw['normalizer']
    if num_samples:
      sub = losses.trice_subsample(rng, w, s, tw['n_valid'],
                                   num_samples=num_samples)
      rows = jax.tree.map(lambda x: x[sub['indices']], rows)
      w, s, n = sub['weights'], sub['signs'], sub['normalizer']
    logp = _rl.forward(graphdef, params, rows, chunk_size=chunk_size)['logp']
    loss = losses.weighted_seq_logprob(logp, rows['loss_mask'], w, signs=s,
                                       normalizer=n).sum()
    metrics = dict(
        beta_mean=tw['beta'].sum() / jnp.maximum(tw['n_valid'], 1),
        n_valid=tw['n_valid'].astype(jnp.float32),
        tokens=jnp.sum(rows['segment_ids'] > 0).astype(jnp.float32))
    return loss, metrics

  return objective


def make_gradient_variance(graphdef, *, num_groups: int,
                           chunk_size: int = 128):
  """`fn(params, batch) -> {'cv', 'basic', 'ratio'}`: estimator variances.

  Splits the M examples into `num_groups` contiguous groups, computes the
  full (unsubsampled) TRICE gradient of each group with both the control
  variate and the basic weights (β from the whole batch, normaliser the
  group's own n_V) from one forward per group, and returns
  `losses.gradient_variance` across groups for each (spec §1.8
  `cv_variance_ratio`, experiments E1 H3). Both estimators see the same
  samples, so their ratio isolates the control variate.
  """
  def fn(params, batch):
    m = batch['mask'].shape[0]
    if m % num_groups:
      raise ValueError(f'{m} examples do not split into {num_groups} groups.')
    coef = {}
    for name, cv in (('cv', True), ('basic', False)):
      tw = _weights(batch, cv)
      coef[name] = (tw['weights'] * tw['signs']).reshape(2, num_groups, -1)
    valid = batch['mask'].astype(jnp.float32).reshape(num_groups, -1)
    n_group = jnp.maximum(valid.sum(-1), 1)
    grouped = jax.tree.map(
        lambda x: jnp.swapaxes(x.reshape((2, num_groups, -1) + x.shape[1:]),
                               0, 1).reshape((num_groups, -1) + x.shape[1:]),
        {k: batch[k] for k in ROW_KEYS})

    def one(args):
      rows, c_cv, c_basic, n = args
      def seq_logp(p):
        logp = _rl.forward(graphdef, p, rows, chunk_size=chunk_size)['logp']
        return losses.weighted_seq_logprob(
            logp, rows['loss_mask'], jnp.ones(logp.shape[:1]))
      out, vjp = jax.vjp(seq_logp, params)
      # weighted_seq_logprob with unit weight is −logπ; the estimator is
      # Σ w s ∇logπ / n, i.e. the vjp of −(w s / n).
      return tuple(vjp(-c.astype(out.dtype) / n)[0] for c in (c_cv, c_basic))

    flat = lambda c: jnp.swapaxes(c, 0, 1).reshape(num_groups, -1)
    g_cv, g_basic = jax.lax.map(
        one, (grouped, flat(coef['cv']), flat(coef['basic']), n_group))
    cv = losses.gradient_variance(g_cv)
    basic = losses.gradient_variance(g_basic)
    return dict(cv=cv, basic=basic, ratio=cv / jnp.maximum(basic, 1e-30))

  return fn


def majority_vote(answers: Sequence[str | None]) -> str | None:
  """The most frequent non-None answer (self-consistency); ties: first seen.

  Wang et al., *Self-Consistency Improves Chain of Thought Reasoning in
  Language Models* (arXiv:2203.11171): marginalising over rationales at test
  time.

  >>> majority_vote(['3', None, '4', '4', '3'])
  '3'
  """
  counts = collections.Counter(a for a in answers if a is not None)
  if not counts:
    return None
  best = max(counts.values())
  return next(a for a in answers if a is not None and counts[a] == best)
