r"""Runs one experiment.

  python -m experiments.run --config=configs/sft.py:tiny --workdir=runs/sft \
      [--config.optim.lr=1e-3 ...] [--overwrite]

Rerunning with the same workdir resumes from its latest checkpoint.
"""

import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from experiments import builders
from experiments import loop

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, `path.py[:arg]`.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory.',
                               required=True)
_OVERWRITE = flags.DEFINE_bool(
    'overwrite', False, 'Delete a workdir that holds a run with a different '
    'config instead of refusing to start.')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Call jax.distributed.initialize() first '
    '(multi-host TPU pods, multi-node GPU).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  # Library INFO lines (Orbax, TFDS) drown the progress bar; -v 0 brings
  # them back.
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  loop.run(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value)


if __name__ == '__main__':
  builders.check_argv_overrides(sys.argv)
  app.run(main)
