"""The sample → keep → fine-tune recipes (STaR, RFT, ReST-EM, RAFT)."""

import ml_collections

from configs import _rationale

# Spec rationale.md §2–5 and experiments E1, scaled to the tiny size.
RECIPES = {
    # 4 iterations, 1 sample + rationalisation of failures, restart from
    # the base each iteration, +20% steps per iteration.
    'star': dict(iterations=4, samples=1, rationalize=True, step_growth=1.2,
                 restart_from_base=True),
    # 16 samples at temperature 0.7 from the base, keep correct, one per
    # distinct equation list, fine-tune the base.
    'rft': dict(iterations=1, samples=16, temperature=0.7,
                dedup='equation_list', restart_from_base=True),
    # 3 iterations of 8 samples, at most 4 kept per question, M-step from the
    # base.
    'rest_em': dict(iterations=3, samples=8, max_per_question=4,
                    restart_from_base=True),
    # Stages of b prompts × K samples, best of K by reward, fine-tune the
    # current model (no restart).
    'raft': dict(iterations=4, samples=8, keep='best_of_k',
                 restart_from_base=False, questions_per_iteration=128),
}


def config(recipe: str, size: str) -> ml_collections.ConfigDict:
  _rationale.check_size(size)
  if recipe not in RECIPES:
    raise KeyError(f'unknown recipe {recipe!r}; valid: {sorted(RECIPES)}.')
  tiny = size == 'tiny'
  c = _rationale.common(ml_collections.ConfigDict(), size, recipe)
  c.total_steps = 60 if tiny else 1000
  c.log_every = 5
  c.eval_every = 30 if tiny else 250
  c.rs = ml_collections.ConfigDict(dict(
      iterations=1,
      samples=1,  # k paths per question
      temperature=1.0,
      keep='keep_correct',  # or best_of_k (RAFT)
      max_per_question=0,  # cap after dedup (0: none)
      dedup='none',  # none, exact, equation_list (RFT)
      rationalize=False,  # STaR: hinted sample for questions with no hit
      restart_from_base=True,  # fine-tune the base each iteration
      step_growth=1.0,  # steps of iteration i ∝ growth^i (sum total_steps)
      questions_per_iteration=0,  # 0: the whole training set
      generate_batch=128 if tiny else 512,  # questions per sampler call
      batch_size=32,  # SFT rows per update
      max_new_tokens=48,
  ))
  c.rs.update(RECIPES[recipe])
  # The schedule restarts with the optimiser at every restart.
  c.optim = _rationale.optim(3e-4 if tiny else 1e-4, schedule='constant')
  c.lock()
  return c
