"""Emulators of the column convection scheme (`surrogate.solvers.column`): a bidirectional
SSM over levels and an MLP of the flattened column, with the scheme's precipitation >= 0
and column-enthalpy constraints built in, and their training recipe."""

from ._emulators import ConvectionMLP as ConvectionMLP
from ._emulators import ConvectionSSM as ConvectionSSM
from ._emulators import constrain_tendencies as constrain_tendencies
from ._emulators import fit_emulator as fit_emulator
from ._emulators import precipitation_mm_day as precipitation_mm_day
