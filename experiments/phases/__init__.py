"""Per-recipe phases of the loop, chosen by `config.recipe`."""

from experiments.phases._common import Context
from experiments.phases._common import Phase
from experiments.phases.dpo import Dpo
from experiments.phases.rejection import Rejection
from experiments.phases.rl import Rl
from experiments.phases.rm import RewardModel
from experiments.phases.sft import Sft
from experiments.phases.trice import Trice

PHASES = {'sft': Sft, 'rl': Rl}
PHASES.update(dpo=Dpo, reward_model=RewardModel)
PHASES.update(trice=Trice, star=Rejection, rft=Rejection, rest_em=Rejection,
              raft=Rejection)


def build(ctx: Context) -> Phase:
  recipe = ctx.config.recipe
  if recipe not in PHASES:
    raise ValueError(f'config.recipe={recipe!r}; valid: {sorted(PHASES)}.')
  return PHASES[recipe](ctx)
