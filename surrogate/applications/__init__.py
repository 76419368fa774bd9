"""What belongs to one study, above the generic core and the problems.

- `lorenz96`: sub-grid closures of the one-level Lorenz '96 model (polynomial, local MLP,
  ring FNO, AR(1)), their training and coupled ensemble rollouts (Arnold et al. 2013);
- `convection`: emulators of a column convection scheme (bidirectional SSM, MLP) with
  precipitation and enthalpy constraints;
- `ignition`: the laser-ignition PNODE and its kernel-ridge and MLP baselines;
- `room_acoustics`: the source-position DeepONet with image-source trunk features.

Import the study you need (`from surrogate.applications.lorenz96 import ...`); nothing
here is imported by `import surrogate`.
"""
