"""Training: state, the generic step, optimisers, checkpoints, metrics."""

from postrain.train._checkpoint import Checkpointer
from postrain.train._checkpoint import restore_params
from postrain.train._metrics import MetricWriter
from postrain.train._metrics import read_metrics
from postrain.train._optim import decay_mask
from postrain.train._optim import make_optimizer
from postrain.train._optim import make_schedule
from postrain.train._optim import OPTIMIZERS
from postrain.train._optim import rex_schedule
from postrain.train._optim import SCHEDULES
from postrain.train._step import init_state
from postrain.train._step import make_train_step
from postrain.train._step import TrainState
