"""surrogate: surrogate models of physical systems in JAX."""

from ._version import __version__ as __version__
