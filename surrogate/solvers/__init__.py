"""Reference numerical solvers in JAX, one module per physics.

- `burgers`: 1-D viscous Burgers, pseudo-spectral + ETDRK4
- `darcy`: 2-D Darcy flow, five-point FD + preconditioned CG (lineax)
- `navier_stokes`: 2-D vorticity on the torus, pseudo-spectral CN/Heun
- `lorenz96`: two-scale and one-level Lorenz '96, RK4
- `acoustics`: linear acoustics in rooms, staggered-grid FDTD with impedance walls and PML
- `reactor`: 0-D ideal-gas reactor with detailed kinetics (Cantera YAML mechanisms)
- `column`: moist single column, simplified Betts-Miller convection, radiation, surface fluxes
- `gravity_waves`: spectral non-orographic gravity-wave drag (Alexander & Dunkerton 1999),
  single columns and oblique rays on a ring of columns
- `qbo`: 1-D quasi-biennial oscillation model (Holton-Lindzen / Plumb), IMEX time stepping
- `spectral`: shared pseudo-spectral helpers

Import the module you need, e.g. `from surrogate.solvers.darcy import DarcySolver`; the
solvers are not imported with the package so that `import surrogate` stays light.
"""
