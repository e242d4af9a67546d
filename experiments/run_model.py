"""A run's language model: architecture, first parameters, LoRA, export.

Three sources of first parameters, in the loop's order: the run's own
checkpoint (resume), `config.init_from` (another run's parameters) or
`config.model.hf_path` (a local Hugging Face directory), else a random init.

With `config.lora.rank > 0` the trained parameters are the adapters alone;
the frozen base sits in `TrainState.extra['base']` (checkpointed, never in
the optimiser state), the step combines the two, and phases see the full
parameters through `view(state)`. A phase's reference policy (`extra['ref']`)
is then the base itself with zero adapters — never a second copy.
"""

from flax import nnx
import jax

from experiments import builders
from postrain import models
from postrain import sharding
from postrain import train


class RunModel:
  """Builds, splits and views the parameters of one run's LM."""

  def __init__(self, config, model_cfg):
    self.config, self.cfg = config, model_cfg
    self.lora = builders.lora(config)
    self.graphdef, _ = nnx.split(nnx.eval_shape(lambda: self._make(0)))
    self._base_graphdef, self._base_abstract = nnx.split(nnx.eval_shape(
        lambda: models.Transformer(model_cfg, rngs=nnx.Rngs(0))))
    self.wants_ref = False

  def _make(self, rng):
    model = models.Transformer(self.cfg, rngs=nnx.Rngs(rng))
    if self.lora:
      models.apply_lora(model, **self.lora)
    return model

  def random_lm(self, rng):
    return nnx.state(self._make(rng))

  def train_state_fn(self, phase, optimizer, rng):
    """`lm_state -> TrainState` for this phase (jit it with shardings)."""
    if self.lora:
      abstract_lm = nnx.state(nnx.eval_shape(lambda: self._make(0)))
      self.wants_ref = 'ref' in jax.eval_shape(phase.init_extra, abstract_lm)

    def build(lm):
      params = phase.init_params(lm, rng)
      if not self.lora:
        return train.init_state(params, optimizer, phase.init_extra(params))
      if params is not lm:
        raise ValueError(f'config.lora is not supported by recipe '
                         f'{self.config.recipe!r} with its extra trained '
                         'parameters (e.g. a PPO value head); set lora.rank=0.')
      adapters, base = models.split_lora(lm)
      extra = phase.init_extra(adapters)  # like `params` without LoRA
      extra.pop('ref', None)  # the base with zero adapters is the reference
      return train.init_state(adapters, optimizer, dict(extra, base=base))

    return build

  def first_lm(self, mesh):
    """The LM state from `init_from` or `model.hf_path` (None: random)."""
    c = self.config
    if c.init_from:
      shardings = sharding.tree_shardings(mesh, self._base_abstract)
      abstract = jax.tree.map(
          lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
          self._base_abstract, shardings)
      lm = train.restore_params(c.init_from, abstract)
    elif c.model.get('hf_path'):
      model, _ = models.load_hf(c.model.hf_path, dtype=self.cfg.param_dtype,
                                compute_dtype=self.cfg.dtype, mesh=mesh)
      lm = nnx.state(model)
    else:
      return None
    if self.lora:  # fresh adapters (B = 0) on the loaded base
      model = nnx.merge(self._base_graphdef, lm)
      models.apply_lora(model, **self.lora)
      lm = nnx.state(model)
    return lm

  def step_kwargs(self) -> dict:
    return (dict(frozen_key='base', combine=models.combine_lora)
            if self.lora else {})

  def view(self, state):
    """`state` with full LM parameters (and `extra['ref']`) under LoRA."""
    if not self.lora:
      return state
    base = state.extra['base']
    extra = dict(state.extra)
    if self.wants_ref:
      extra['ref'] = models.combine_lora(models.zero_adapters(state.params),
                                         base)
    return state.replace(params=models.combine_lora(state.params, base),
                         extra=extra)

  def export_hf(self, lm_params, tokenizer, path: str):
    """Writes the LM (adapters merged) as a Hugging Face directory."""
    model = nnx.merge(self.graphdef, lm_params)
    if self.lora:
      model = models.merge_lora(model)
    models.save_hf(model, tokenizer, path)
    return path
