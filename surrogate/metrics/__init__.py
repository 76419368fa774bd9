"""Metrics that judge a surrogate: pure functions of arrays, knowing no problem or model.

Fields `(sample, channels, *grid)`: relative Lp / L2 / H1 per sample, `h1_norm`, RMSE,
max error, R², and `field_metrics` (the default table for operator learning). Closures
and coupled runs: offline MSE / R², Hellinger distance of PDFs, autocorrelation, forecast
RMSE per lead time, time to blow-up.
"""

from ._climate import autocorrelation as autocorrelation
from ._climate import blowup_time as blowup_time
from ._climate import forecast_rmse as forecast_rmse
from ._climate import hellinger as hellinger
from ._climate import hellinger_distance as hellinger_distance
from ._climate import histogram_probabilities as histogram_probabilities
from ._climate import offline_mse as offline_mse
from ._climate import offline_r2 as offline_r2
from ._fields import field_metrics as field_metrics
from ._fields import h1_norm as h1_norm
from ._fields import max_error as max_error
from ._fields import r2_score as r2_score
from ._fields import relative_h1_per_sample as relative_h1_per_sample
from ._fields import relative_l2_per_sample as relative_l2_per_sample
from ._fields import relative_lp_per_sample as relative_lp_per_sample
from ._fields import rmse as rmse
