r"""The base model of the rationale experiments, and answer-only SFT.

`base`: a tiny LM pretrained on a noisy-rationale corpus (1–4 steps; 20% of
rationales carry one arithmetic slip, so the model is competent but
imperfect; 20% of prompts show the answer as a hint `H <answer>`, so it
can rationalise — STaR and TRICE's hinted initialisation need that):

  python -m experiments.run --config=configs/rationale_base.py:tiny \
      --workdir=runs/rationale/base

`direct`: answer-only fine-tuning (`Q: … A: #### <answer>`, no rationale)
of that base on the fine-tuning questions, E1's `sft_direct` arm:

  python -m experiments.run --config=configs/rationale_base.py:direct \
      --workdir=runs/rationale/direct --config.init_from=runs/rationale/base

Add `,size=base` for the accelerator size. The whole comparison runs with
`python -m experiments.rationale_repro --size=tiny`.
"""

import ml_collections

from configs import _rationale
from configs import common


def get_config(arg=None):
  """`arg`: `tiny` / `base` (size) and/or `direct`; default the base run."""
  words = [w for w in (arg or '').split(',') if w]
  direct = 'direct' in words
  words = [w for w in words if w != 'direct']
  size = common.parse_arg(','.join(words), size='tiny').size
  _rationale.check_size(size)
  tiny = size == 'tiny'
  c = _rationale.common(ml_collections.ConfigDict(), size, 'sft')
  c.data.update(rationale=True, noise=0.2, hint_rate=0.2, max_len=96,
                batch_size=32, packing=False, overflow='truncate',
                prompt_field='prompt', response_field='response')
  c.loss = ml_collections.ConfigDict(dict(
      label_smoothing=0.0, z_loss=0.0, chunk_size=128))
  c.eval.update(temperature=0.0)
  if direct:  # answer-only targets on the fine-tuning questions
    c.data.update(rationale=False, noise=0.0, hint_rate=0.0)
    c.total_steps = 100 if tiny else 1000
    c.optim = _rationale.optim(3e-4)
  else:  # the pretraining corpus: 1–4 steps, many questions
    c.data.update(min_steps=1, max_steps=4,
                  num_train=20000 if tiny else 200000, num_test=200)
    # 300 tiny steps leave the base imperfect on 3–4 steps (measured 0.93
    # greedy accuracy after 800 steps left no headroom for E1).
    c.total_steps = 300 if tiny else 6000
    c.optim = _rationale.optim(3e-3)
    c.optim.update(warmup_steps=30, weight_decay=0.01)
  c.log_every = 20
  c.eval_every = c.total_steps // 2
  c.ckpt.every = c.total_steps // 4
  c.lock()
  return c
