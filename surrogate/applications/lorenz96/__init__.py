"""Sub-grid closures of the one-level Lorenz '96 model.

Closures (all `surrogate.coupling` parameterizations, `eqx.Module`s savable with
`surrogate.save`): the cubic polynomial of Arnold et al. (2013), a local MLP, a ring FNO,
and a deterministic closure plus AR(1) noise. Offline training on (X, U) pairs and coupled
ensemble rollouts; the metrics (offline, forecast, climate) are `surrogate.metrics`'.
"""

from ...metrics import autocorrelation as autocorrelation
from ...metrics import blowup_time as blowup_time
from ...metrics import forecast_rmse as forecast_rmse
from ...metrics import hellinger as hellinger
from ...metrics import hellinger_distance as hellinger_distance
from ...metrics import histogram_probabilities as histogram_probabilities
from ...metrics import offline_mse as offline_mse
from ...metrics import offline_r2 as offline_r2
from ._neural import FNOClosure as FNOClosure
from ._neural import LocalMLPClosure as LocalMLPClosure
from ._polynomial import PolynomialClosure as PolynomialClosure
from ._polynomial import check_ring_state as check_ring_state
from ._polynomial import fit_polynomial as fit_polynomial
from ._rollout import coupled_rollout as coupled_rollout
from ._rollout import ensemble_forecast as ensemble_forecast
from ._rollout import stochastic_step as stochastic_step
from ._stochastic import AR1Closure as AR1Closure
from ._stochastic import fit_ar1 as fit_ar1
from ._stochastic import fit_ar1_closure as fit_ar1_closure
from ._train import fit_closure as fit_closure
from ._train import with_normalizers as with_normalizers
