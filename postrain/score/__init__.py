"""Score-based models: analytic scores, samplers, toy data, metrics, nets.

Registries: `ANALYTIC_SCORES` (gaussian, gmm, delta_mixture), `SAMPLERS`
(euler_maruyama, pf_euler, heun, predictor_corrector), `TOY_DATASETS`.
The DSM kernels themselves are in `postrain.losses`.
"""

# pylint: disable=g-importing-member
from postrain.score._analytic import ANALYTIC_SCORES
from postrain.score._analytic import delta_mixture_log_density
from postrain.score._analytic import delta_mixture_score
from postrain.score._analytic import gaussian_denoiser
from postrain.score._analytic import gaussian_log_density
from postrain.score._analytic import gaussian_score
from postrain.score._analytic import gmm_log_density
from postrain.score._analytic import gmm_score
from postrain.score._analytic import process_score
from postrain.score._data import checkerboard
from postrain.score._data import digits
from postrain.score._data import gmm_ring
from postrain.score._data import sample_gmm
from postrain.score._data import swiss_roll
from postrain.score._data import TOY_DATASETS
from postrain.score._data import two_moons
from postrain.score._metrics import median_bandwidth
from postrain.score._metrics import mmd2
from postrain.score._metrics import score_r2
from postrain.score._metrics import sliced_wasserstein
from postrain.score._nets import noise_embedding
from postrain.score._nets import ScoreConvNet
from postrain.score._nets import ScoreMLP
from postrain.score._samplers import euler_maruyama
from postrain.score._samplers import heun
from postrain.score._samplers import pf_euler
from postrain.score._samplers import predictor_corrector
from postrain.score._samplers import prior_sample
from postrain.score._samplers import SAMPLERS
from postrain.score._samplers import time_grid
from postrain.score._trajectory import gaussian_pf_trajectory
from postrain.score._trajectory import teleport
from postrain.score._trajectory import teleport_index
