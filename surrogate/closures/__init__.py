"""Sub-grid closures of the one-level Lorenz '96 model and their metrics.

Closures (all `surrogate.coupling` parameterizations, `eqx.Module`s savable with
`surrogate.save`): the cubic polynomial of Arnold et al. (2013), a local MLP, a ring FNO,
and a deterministic closure plus AR(1) noise. Offline training on (X, U) pairs,
coupled ensemble rollouts, and offline / forecast / climate metrics.
"""

from ._convection import ConvectionMLP as ConvectionMLP
from ._convection import ConvectionSSM as ConvectionSSM
from ._convection import constrain_tendencies as constrain_tendencies
from ._convection import fit_emulator as fit_emulator
from ._convection import precipitation_mm_day as precipitation_mm_day
from ._lorenz96 import coupled_rollout as coupled_rollout
from ._lorenz96 import ensemble_forecast as ensemble_forecast
from ._lorenz96 import stochastic_step as stochastic_step
from ._metrics import autocorrelation as autocorrelation
from ._metrics import blowup_time as blowup_time
from ._metrics import forecast_rmse as forecast_rmse
from ._metrics import hellinger as hellinger
from ._metrics import hellinger_distance as hellinger_distance
from ._metrics import histogram_probabilities as histogram_probabilities
from ._metrics import offline_mse as offline_mse
from ._metrics import offline_r2 as offline_r2
from ._neural import FNOClosure as FNOClosure
from ._neural import LocalMLPClosure as LocalMLPClosure
from ._polynomial import PolynomialClosure as PolynomialClosure
from ._polynomial import fit_polynomial as fit_polynomial
from ._stochastic import AR1Closure as AR1Closure
from ._stochastic import fit_ar1 as fit_ar1
from ._stochastic import fit_ar1_closure as fit_ar1_closure
from ._train import fit_closure as fit_closure
from ._train import with_normalizers as with_normalizers
