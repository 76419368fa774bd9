"""Emulators of the spectral gravity-wave scheme (`surrogate.solvers.gravity_waves`) for the
QBO model (`surrogate.solvers.qbo`): a single-column MLP and bidirectional SSM and a
nonlocal SSM that sees neighbouring columns of a ring, all predicting flux profiles whose
divergence is the drag (momentum conserved for any weights), their training recipe and
the online runs that put them in the QBO model in place of the scheme."""

from ._emulators import GravityWaveMLP as GravityWaveMLP
from ._emulators import GravityWaveSSM as GravityWaveSSM
from ._emulators import NonlocalGravityWaveSSM as NonlocalGravityWaveSSM
from ._emulators import features as features
from ._emulators import fit_emulator as fit_emulator
from ._emulators import flux_profiles as flux_profiles
from ._emulators import launch_fluxes as launch_fluxes
from ._emulators import predict as predict
from ._emulators import training_arrays as training_arrays
from ._online import U_BOUND as U_BOUND
from ._online import online_run as online_run
from ._online import qbo_statistics as qbo_statistics
from ._online import spun_up_state as spun_up_state
