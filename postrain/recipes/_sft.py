"""Supervised fine-tuning: masked token cross-entropy, one forward per batch.

The objective never builds float32 `[B, T, V]` logits: it takes the final
hidden states and the unembedding matrix to the chunked kernel.
"""

import jax.numpy as jnp
from flax import nnx

from postrain.losses import _reduce
from postrain.losses import _sft


def token_stats(model, batch, *, chunk_size: int = 128):
  """Per-token logit statistics of `batch['targets']` under `model`."""
  hidden, _ = model.features(batch['inputs'], batch['positions'],
                             segment_ids=batch['segment_ids'])
  return _sft.chunked_logit_stats(
      hidden, model.output_kernel(), batch['targets'],
      soft_cap=model.config.final_logit_softcap, chunk_size=chunk_size)


def make_objective(
    graphdef,
    *,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    chunk_size: int = 128,
):
  """`objective(params, batch, rng) -> (loss, metrics)` for SFT.

  Args:
    graphdef: the model's `nnx.GraphDef`; `params` is its `nnx.State`.
    label_smoothing: ε of the cross-entropy.
    z_loss: z-loss coefficient c.
    chunk_size: positions per chunk of the log-softmax.

  Returns:
    The objective. Its loss is the token mean over `batch['loss_mask']`;
    metrics hold the mean NLL, mean log Z, the number of counted tokens
    (`loss_tokens` = 0 flags a batch with nothing to learn) and of non-pad
    input tokens (`tokens`, for throughput).
  """
  def objective(params, batch, rng):
    del rng  # SFT is deterministic.
    model = nnx.merge(graphdef, params)
    stats = token_stats(model, batch, chunk_size=chunk_size)
    mask = batch['loss_mask']
    loss, aux = _sft.cross_entropy(stats, mask,
                                   label_smoothing=label_smoothing,
                                   z_loss=z_loss)
    metrics = dict(
        nll=_reduce.token_mean(aux['nll'], mask),
        log_z=_reduce.token_mean(aux['log_z'], mask),
        loss_tokens=jnp.sum(mask > 0).astype(jnp.float32),
        tokens=jnp.sum(batch['segment_ids'] > 0).astype(jnp.float32))
    return _reduce.token_mean(loss, mask), metrics

  return objective
