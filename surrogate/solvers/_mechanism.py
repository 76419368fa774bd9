"""Gas-phase chemistry from a Cantera YAML mechanism: NASA-7 thermodynamics and mass-action
kinetics (Arrhenius, three-body, Lindemann and Troe fall-off, reverse rates from equilibrium).

Units are SI with kmol, as in Cantera: concentrations kmol/m^3, rates kmol/(m^3 s), molar
enthalpies J/kmol, R = 8314.46 J/(kmol K). Reading the YAML file is numpy at the edge
(`Mechanism.from_yaml`); the chemistry is pure `jnp` functions of (mechanism, T, C), jittable
and differentiable with respect to the state and to the rate parameters.

References: Kee, Coltrin & Glarborg, *Chemically Reacting Flow* (2003), ch. 9-10; the Cantera
YAML format and rate definitions, https://cantera.org/stable/reference/.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import yaml
from jaxtyping import Array, ArrayLike, Float, Int

GAS_CONSTANT = 8314.46261815324  # J/(kmol K), exact since the 2019 SI
ONE_ATM = 101325.0  # Pa
# A rate coefficient that is exactly zero would make log10 of the reduced pressure -inf.
_SMALL = 1e-300


class Mechanism(eqx.Module):
    """Species, NASA-7 thermodynamics and reactions of an ideal-gas mechanism, as arrays.

    Build with `Mechanism.from_yaml(path)` or `load_mechanism("h2o2")`. Array fields are
    numpy float64 at construction; they become `jnp` arrays of the active precision inside
    the kinetics functions, so a mechanism can be closed over or passed through `jit`, and
    a rate parameter can be replaced by a traced array with `eqx.tree_at` to differentiate.

    Rate coefficients are per reaction j: `k = A T^b exp(-Ta / T)` with `A` in kmol, m^3, s
    units of the reaction's order and `Ta = Ea / R` in K.
    """

    species: tuple[str, ...] = eqx.field(static=True)
    elements: tuple[str, ...] = eqx.field(static=True)
    equations: tuple[str, ...] = eqx.field(static=True)
    reference_pressure: float = eqx.field(static=True)
    molecular_weights: Float[Array, " species"]  # kg/kmol
    composition: Float[Array, "species elements"]  # atoms per molecule
    nasa_low: Float[Array, "species 7"]
    nasa_high: Float[Array, "species 7"]
    t_mid: Float[Array, " species"]
    nu_reactants: Float[Array, "reactions species"]
    nu_products: Float[Array, "reactions species"]
    # Mass-action products as gathers: slot i of reaction j names one species (repeated for
    # a coefficient of 2), padding slots name an extra entry of value 1. Integer powers by
    # repetition keep exact zeros and finite gradients at zero concentration.
    reactant_slots: Int[Array, "reactions slots"]
    product_slots: Int[Array, "reactions slots2"]
    A: Float[Array, " reactions"]
    b: Float[Array, " reactions"]
    Ta: Float[Array, " reactions"]
    reversible: Float[Array, " reactions"]  # 1 or 0
    three_body: Float[Array, " reactions"]  # 1: the rate is multiplied by [M]
    efficiencies: Float[Array, "reactions species"]  # [M]_j = sum_k eff_jk C_k
    falloff_index: Int[Array, " falloff"]  # reactions whose (A, b, Ta) is the high-p limit
    A_low: Float[Array, " falloff"]
    b_low: Float[Array, " falloff"]
    Ta_low: Float[Array, " falloff"]
    # Troe (a, 1/T3, 1/T1, T2, w2): F_cent = (1-a) e^{-T/T3} + a e^{-T/T1} + w2 e^{-T2/T};
    # Lindemann is a=0, 1/T3=0, w2=0, i.e. F_cent = 1.
    troe: Float[Array, "falloff 5"]

    @classmethod
    def from_yaml(cls, path: str | Path, phase: str | None = None) -> Mechanism:
        """Read an ideal-gas phase of a Cantera YAML file (first phase unless `phase`)."""
        return cls(**_read_mechanism(Path(path), phase))

    @property
    def n_species(self) -> int:
        return len(self.species)

    @property
    def n_reactions(self) -> int:
        return len(self.equations)

    def species_index(self, name: str) -> int:
        if name not in self.species:
            raise ValueError(f"unknown species {name!r}; the mechanism has {list(self.species)}")
        return self.species.index(name)


def load_mechanism(name: str | Path) -> Mechanism:
    """A mechanism shipped with the package by name ("h2o2": GRI-Mech 3.0 H2/O2 subset,
    10 species), or a Cantera-format YAML file by path (".yaml"/".yml"). Each file is
    parsed once (cached by path and modification time), so models that keep only the
    name, like PNODE, can ask for it at every call."""
    if str(name).endswith((".yaml", ".yml")):
        path = Path(name).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no such mechanism file: {name}")
        return _parsed(str(path), path.stat().st_mtime_ns)
    files = importlib.resources.files("surrogate.solvers") / "mechanisms"
    available = sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".yaml"))
    if name not in available:
        raise ValueError(f"unknown mechanism {name!r}; packaged mechanisms are {available}")
    with importlib.resources.as_file(files / f"{name}.yaml") as path:
        return _parsed(str(path), Path(path).stat().st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _parsed(path: str, mtime_ns: int) -> Mechanism:
    del mtime_ns  # part of the cache key only: an edited file is read again
    return Mechanism.from_yaml(path)


# ---- thermodynamics (NASA-7; McBride, Gordon & Reno, NASA TM-4513, 1993) -----------------
def _nasa(mech: Mechanism, T: ArrayLike) -> Float[Array, "species 7"]:
    # Cantera uses the low range up to and including T_mid.
    low = jnp.asarray(T) <= jnp.asarray(mech.t_mid)
    return jnp.where(low[:, None], jnp.asarray(mech.nasa_low), jnp.asarray(mech.nasa_high))


def species_cp(mech: Mechanism, T: ArrayLike) -> Float[Array, " species"]:
    """Molar heat capacities, J/(kmol K): cp/R = a0 + a1 T + a2 T^2 + a3 T^3 + a4 T^4."""
    a = _nasa(mech, T)
    return GAS_CONSTANT * (a[:, 0] + T * (a[:, 1] + T * (a[:, 2] + T * (a[:, 3] + T * a[:, 4]))))


def species_enthalpy(mech: Mechanism, T: ArrayLike) -> Float[Array, " species"]:
    """Molar enthalpies, J/kmol: h/RT = a0 + a1 T/2 + a2 T^2/3 + a3 T^3/4 + a4 T^4/5 + a5/T."""
    a = _nasa(mech, T)
    poly = a[:, 0] + T * (a[:, 1] / 2 + T * (a[:, 2] / 3 + T * (a[:, 3] / 4 + T * a[:, 4] / 5)))
    return GAS_CONSTANT * (T * poly + a[:, 5])


def species_entropy(mech: Mechanism, T: ArrayLike) -> Float[Array, " species"]:
    """Standard-state molar entropies at the reference pressure, J/(kmol K):
    s/R = a0 ln T + a1 T + a2 T^2/2 + a3 T^3/3 + a4 T^4/4 + a6."""
    a = _nasa(mech, T)
    poly = T * (a[:, 1] + T * (a[:, 2] / 2 + T * (a[:, 3] / 3 + T * a[:, 4] / 4)))
    return GAS_CONSTANT * (a[:, 0] * jnp.log(T) + poly + a[:, 6])


# ---- kinetics (T is a scalar, C the vector of concentrations) ------------------------------
def _arrhenius(A, b, Ta, T):
    return jnp.asarray(A) * jnp.exp(jnp.asarray(b) * jnp.log(T) - jnp.asarray(Ta) / T)


def equilibrium_constants(mech: Mechanism, T: ArrayLike) -> Float[Array, " reactions"]:
    """Concentration equilibrium constants K_c = exp(-dG0/RT) (p0/RT)^dnu, kmol/m^3 units."""
    return jnp.exp(_log_kc(mech, T))


def _log_kc(mech: Mechanism, T):
    g_rt = (species_enthalpy(mech, T) / T - species_entropy(mech, T)) / GAS_CONSTANT
    nu = jnp.asarray(mech.nu_products) - jnp.asarray(mech.nu_reactants)
    dnu = jnp.sum(nu, axis=1)
    return -(nu @ g_rt) + dnu * jnp.log(mech.reference_pressure / (GAS_CONSTANT * T))


def _troe_log10_f(troe, T, pr):
    """log10 of the Troe broadening factor (Gilbert, Luther & Troe 1983)."""
    a, inv_t3, inv_t1, t2, w2 = (troe[:, i] for i in range(5))
    f_cent = (1 - a) * jnp.exp(-T * inv_t3) + a * jnp.exp(-T * inv_t1) + w2 * jnp.exp(-t2 / T)
    log_fc = jnp.log10(jnp.maximum(f_cent, _SMALL))
    log_pr = jnp.log10(jnp.maximum(pr, _SMALL))
    c = -0.4 - 0.67 * log_fc
    n = 0.75 - 1.27 * log_fc
    f1 = (log_pr + c) / (n - 0.14 * (log_pr + c))
    return log_fc / (1 + f1**2)


def rates_of_progress(
    mech: Mechanism, T: ArrayLike, C: Float[ArrayLike, " species"]
) -> tuple[Float[Array, " reactions"], Float[Array, " reactions"]]:
    """Forward and reverse rates of progress q_f, q_r of every reaction, kmol/(m^3 s).

    q_f = k_f prod_k C_k^nu'_k, q_r = k_f / K_c prod_k C_k^nu''_k. Three-body reactions
    multiply k_f by [M]; fall-off reactions use k = k_inf Pr/(1+Pr) F, Pr = k_0 [M] / k_inf.
    """
    T = jnp.asarray(T)
    C = jnp.asarray(C)
    kf = _arrhenius(mech.A, mech.b, mech.Ta, T)
    third = jnp.asarray(mech.efficiencies) @ C
    kf = kf * jnp.where(jnp.asarray(mech.three_body) > 0, third, 1.0)
    idx = jnp.asarray(mech.falloff_index)
    if idx.shape[0]:
        k_inf = kf[idx]
        k_0 = _arrhenius(mech.A_low, mech.b_low, mech.Ta_low, T)
        pr = k_0 * third[idx] / k_inf
        log10_f = _troe_log10_f(jnp.asarray(mech.troe), T, pr)
        kf = kf.at[idx].set(k_inf * pr / (1 + pr) * 10.0**log10_f)
    kr = kf * jnp.exp(-_log_kc(mech, T)) * jnp.asarray(mech.reversible)
    padded = jnp.concatenate([C, jnp.ones((1,), C.dtype)])
    qf = kf * jnp.prod(padded[jnp.asarray(mech.reactant_slots)], axis=1)
    qr = kr * jnp.prod(padded[jnp.asarray(mech.product_slots)], axis=1)
    return qf, qr


def net_production_rates(
    mech: Mechanism, T: ArrayLike, C: Float[ArrayLike, " species"]
) -> Float[Array, " species"]:
    """Net molar production rates w_k = sum_j (nu''_kj - nu'_kj)(q_f,j - q_r,j), kmol/(m^3 s)."""
    qf, qr = rates_of_progress(mech, T, C)
    nu = jnp.asarray(mech.nu_products) - jnp.asarray(mech.nu_reactants)
    return (qf - qr) @ nu


def mean_molecular_weight(mech: Mechanism, Y: Float[ArrayLike, " species"]) -> Float[Array, ""]:
    """W = 1 / sum_k (Y_k / W_k), kg/kmol."""
    return 1.0 / jnp.sum(jnp.asarray(Y) / jnp.asarray(mech.molecular_weights))


def enthalpy_mass(mech: Mechanism, T: ArrayLike, Y: Float[ArrayLike, " species"]) -> Array:
    """Mixture specific enthalpy h = sum_k Y_k h_k / W_k, J/kg."""
    return jnp.sum(jnp.asarray(Y) * species_enthalpy(mech, T) / jnp.asarray(mech.molecular_weights))


def int_energy_mass(mech: Mechanism, T: ArrayLike, Y: Float[ArrayLike, " species"]) -> Array:
    """Mixture specific internal energy u = h - R T / W, J/kg."""
    return enthalpy_mass(mech, T, Y) - GAS_CONSTANT * T / mean_molecular_weight(mech, Y)


def cp_mass(mech: Mechanism, T: ArrayLike, Y: Float[ArrayLike, " species"]) -> Array:
    """Mixture specific heat at constant pressure, J/(kg K)."""
    return jnp.sum(jnp.asarray(Y) * species_cp(mech, T) / jnp.asarray(mech.molecular_weights))


def concentrations(
    mech: Mechanism, T: ArrayLike, p: ArrayLike, Y: Float[ArrayLike, " species"]
) -> Float[Array, " species"]:
    """Molar concentrations C_k = rho Y_k / W_k with rho = p W / (R T), kmol/m^3."""
    rho = p * mean_molecular_weight(mech, Y) / (GAS_CONSTANT * T)
    return rho * jnp.asarray(Y) / jnp.asarray(mech.molecular_weights)


def mass_to_mole_fractions(
    mech: Mechanism, Y: Float[ArrayLike, " species"]
) -> Float[Array, " species"]:
    """X_k = (Y_k / W_k) W."""
    return jnp.asarray(Y) / jnp.asarray(mech.molecular_weights) * mean_molecular_weight(mech, Y)


def mole_to_mass_fractions(
    mech: Mechanism, X: Float[ArrayLike, " species"]
) -> Float[Array, " species"]:
    """Y_k = X_k W_k / sum_j X_j W_j."""
    xw = jnp.asarray(X) * jnp.asarray(mech.molecular_weights)
    return xw / jnp.sum(xw)


# ---- reading Cantera YAML (numpy, at the edge) ---------------------------------------------
# Atomic weights as Cantera uses them (IUPAC conventional values), kg/kmol.
_ATOMIC_WEIGHTS = {
    "H": 1.008, "D": 2.0141017781, "He": 4.002602, "C": 12.011, "N": 14.007, "O": 15.999,
    "F": 18.998403163, "Ne": 20.1797, "Si": 28.085, "S": 32.06, "Cl": 35.45, "Ar": 39.95,
    "Kr": 83.798, "Xe": 131.293, "E": 5.485799088728283e-4,
}  # fmt: skip
_LENGTH = {"m": 1.0, "cm": 1e-2, "mm": 1e-3}
_QUANTITY = {"kmol": 1.0, "mol": 1e-3, "molec": 1.0 / 6.02214076e26}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "min": 60.0, "h": 3600.0}
_ENERGY = {"J": 1.0, "kJ": 1e3, "cal": 4.184, "kcal": 4184.0, "eV": 1.602176634e-19}
_REACTION_TYPES = ("elementary", "three-body", "falloff")
_FALLOFF_TAG = re.compile(r"\(\+\s*([^()\s]+)\s*\)")
_NO_T = 1e30  # 1/T3 or 1/T1 for T3 = 0 or T1 = 0: the term exp(-T/T3) vanishes, as in Cantera


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML with YAML 1.2 booleans and floats, as Cantera reads its files: `NO` (nitric
    oxide) stays a string instead of False, and `5e+17` is a number instead of a string."""


_BOOL, _FLOAT = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:float"
_Yaml12Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in rs if tag not in (_BOOL, _FLOAT)]
    for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Yaml12Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf)$"),
    list("-+0123456789."),
)


def _read_mechanism(path: Path, phase_name: str | None) -> dict:
    try:
        doc = yaml.load(path.read_text(), Loader=_Yaml12Loader)
    except OSError as e:
        raise ValueError(f"cannot read mechanism file {path}: {e}") from e
    except yaml.YAMLError as e:
        raise ValueError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(doc, dict) or not {"phases", "species"} <= set(doc):
        raise ValueError(f"{path} is not a Cantera mechanism: expected 'phases' and 'species'")
    phases = {p.get("name"): p for p in doc["phases"] if isinstance(p, dict)}
    if phase_name is None and phases:
        phase_name = next(iter(phases))
    if phase_name not in phases:
        raise ValueError(f"no phase {phase_name!r} in {path}; phases are {list(phases)}")
    phase = phases[phase_name]
    if phase.get("thermo") != "ideal-gas":
        raise ValueError(
            f"phase {phase_name!r}: thermo {phase.get('thermo')!r} unsupported, "
            "expected 'ideal-gas'"
        )
    if not all(isinstance(s, dict) and "name" in s for s in doc["species"]):
        raise ValueError(f"{path}: every entry of 'species' must be a mapping with a 'name'")
    defs = {s["name"]: s for s in doc["species"]}
    names = phase.get("species", "all")
    names = list(defs) if names == "all" else names
    if not all(isinstance(n, str) for n in names):
        raise ValueError(f"phase {phase_name!r}: species must be 'all' or a list of names")
    for n in names:
        if n not in defs:
            raise ValueError(f"species {n!r} of phase {phase_name!r} is not defined in {path}")
    elements = list(phase.get("elements", []))
    for n in names:
        for e in defs[n].get("composition", {}):
            if e not in elements:
                raise ValueError(f"species {n!r} contains element {e!r} not in {elements}")
    thermo = [_nasa7(defs[n]) for n in names]
    p_refs = {t[3] for t in thermo}
    if len(p_refs) > 1:
        raise ValueError(f"species have different reference pressures {sorted(p_refs)}")
    composition = np.array([[defs[n]["composition"].get(e, 0) for e in elements] for n in names])
    weights = np.array(
        [_ATOMIC_WEIGHTS.get(e, _ATOMIC_WEIGHTS.get(e.capitalize())) or np.nan for e in elements]
    )
    if np.isnan(weights).any():
        raise ValueError(f"unknown atomic weight for element(s) of {elements}")
    sections = phase.get("reactions", "all" if "kinetics" in phase else "none")
    skip_undeclared = sections == "declared-species"
    if isinstance(sections, str):
        named = {"all": ["reactions"], "declared-species": ["reactions"], "none": []}
        sections = named.get(sections, [sections])
    raw = []
    for sec in sections:
        if sec not in doc:
            raise ValueError(f"phase {phase_name!r} takes reactions from {sec!r}: not in {path}")
        raw += doc[sec] or []
    units = _units(doc.get("units") or {})
    reactions = [_reaction(r, names, units, skip_undeclared) for r in raw]
    reactions = [r for r in reactions if r is not None]
    _check_duplicates(reactions)
    return _assemble(names, elements, composition @ weights, composition, thermo, reactions)


def _number(value, what: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{what}: expected a number, got {value!r} (quantities with unit "
            "strings are not supported; use the file's 'units')"
        ) from None


def _lookup(table: dict, key, what: str) -> float:
    if key not in table:
        raise ValueError(f"unsupported {what} unit {key!r}; supported: {list(table)}")
    return table[key]


def _units(u: dict) -> tuple[float, float, float]:
    """(m^3/kmol per file volume/quantity, s per file time, K per file activation energy)."""
    quantity = u.get("quantity", "kmol")
    volume = _lookup(_LENGTH, u.get("length", "m"), "length") ** 3
    volume /= _lookup(_QUANTITY, quantity, "quantity")
    time = _lookup(_TIME, u.get("time", "s"), "time")
    ea = u.get("activation-energy", f"{u.get('energy', 'J')}/{quantity}")
    if ea == "K":
        return volume, time, 1.0
    energy, _, per = str(ea).partition("/")
    ea_to_k = _lookup(_ENERGY, energy, "energy") / _lookup(_QUANTITY, per, "quantity")
    return volume, time, ea_to_k / GAS_CONSTANT


def _nasa7(sp: dict):
    th, name = sp.get("thermo") or {}, sp["name"]
    if th.get("model") != "NASA7":
        raise ValueError(
            f"species {name!r}: thermo model {th.get('model')!r} unsupported, expected 'NASA7'"
        )
    ranges = [_number(t, f"{name} temperature-ranges") for t in th.get("temperature-ranges", [])]
    data = [[_number(c, f"{name} NASA7 data") for c in row] for row in th.get("data", [])]
    if len(data) not in (1, 2) or len(ranges) != len(data) + 1 or any(len(r) != 7 for r in data):
        raise ValueError(
            f"species {name!r}: NASA7 needs 1 or 2 rows of 7 coefficients and one "
            f"more temperature, got {len(data)} rows and {len(ranges)} temperatures"
        )
    p_ref = _number(th.get("reference-pressure", ONE_ATM), f"{name} reference-pressure")
    return data[0], data[-1], ranges[1], p_ref


def _side(text: str, eq: str) -> tuple[dict[str, int], int, str | None]:
    """Species -> coefficient, number of '+ M', fall-off collider of one side of `eq`."""
    tags = _FALLOFF_TAG.findall(text)
    if len(tags) > 1:
        raise ValueError(f"reaction {eq!r}: more than one '(+M)' on one side")
    terms, n_m = {}, 0
    for term in re.split(r"\s+\+\s+", _FALLOFF_TAG.sub(" ", text).strip()):
        parts = term.split()
        if len(parts) not in (1, 2):
            raise ValueError(f"reaction {eq!r}: cannot read the term {term!r}")
        coef = _number(parts[0], f"reaction {eq!r} coefficient") if len(parts) == 2 else 1.0
        if coef <= 0 or coef != round(coef):
            raise ValueError(
                f"reaction {eq!r}: coefficient {coef} is not a positive integer "
                "(fractional stoichiometry is not supported)"
            )
        if parts[-1] == "M":
            n_m += int(coef)
        else:
            terms[parts[-1]] = terms.get(parts[-1], 0) + int(coef)
    return terms, n_m, (tags[0] if tags else None)


def _reaction(r: dict, species: list[str], units, skip_undeclared: bool) -> dict | None:
    eq = r.get("equation") if isinstance(r, dict) else None
    if not isinstance(eq, str):
        raise ValueError(f"reaction entry {r!r} has no 'equation'")
    arrow = next((a for a in ("<=>", "=>", "=") if a in eq), None)
    if arrow is None:
        raise ValueError(f"reaction {eq!r} has no '<=>', '=>' or '='")
    left, right = eq.split(arrow, 1)
    reac, m_left, coll = _side(left, eq)
    prod, m_right, coll_right = _side(right, eq)
    if m_left != m_right or coll != coll_right or m_left > 1:
        raise ValueError(f"reaction {eq!r}: third body 'M' or '(+M)' must appear once per side")
    kind = r.get("type", "falloff" if coll else "three-body" if m_left else "elementary")
    if kind not in _REACTION_TYPES:
        raise ValueError(
            f"reaction {eq!r}: unsupported reaction type {kind!r}; supported "
            f"types are {list(_REACTION_TYPES)}"
        )
    for key in ("orders", "SRI", "Tsang"):
        if key in r:
            raise ValueError(f"reaction {eq!r}: {key!r} is not supported")
    if (kind == "three-body") != bool(m_left) or (kind == "falloff") != bool(coll):
        raise ValueError(
            f"reaction {eq!r} of type {kind!r}: three-body reactions need '+ M', "
            "fall-off reactions '(+M)' on both sides, others neither"
        )
    unknown = [
        s for s in (*reac, *prod, *([coll] if coll not in (None, "M") else [])) if s not in species
    ]
    if unknown:
        if skip_undeclared:
            return None
        raise ValueError(f"reaction {eq!r} involves unknown species {unknown}")
    volume, time, ea_to_k = units
    order = sum(reac.values())

    def arrhenius(key: str, extra_order: int) -> tuple[float, float, float]:
        rate = r.get(key)
        if not isinstance(rate, dict) or not {"A", "b", "Ea"} <= set(rate):
            raise ValueError(f"reaction {eq!r}: {key!r} must be a mapping with A, b, Ea")
        A = _number(rate["A"], f"reaction {eq!r} A")
        if A < 0 and (kind == "falloff" or not r.get("negative-A", False)):
            raise ValueError(f"reaction {eq!r}: negative A needs 'negative-A: true'")
        # A is in (volume/quantity)^(order-1) / time of the file's units
        A *= volume ** (order + extra_order - 1) / time
        return A, _number(rate["b"], f"{eq} b"), _number(rate["Ea"], f"{eq} Ea") * ea_to_k

    eff = np.zeros(len(species))
    if kind == "three-body" or coll == "M":
        eff[:] = _number(r.get("default-efficiency", 1.0), f"{eq} default-efficiency")
        for name, value in (r.get("efficiencies") or {}).items():
            if name not in species:
                raise ValueError(f"reaction {eq!r}: efficiency for unknown species {name!r}")
            eff[species.index(name)] = _number(value, f"{eq} efficiency")
    elif coll is not None:
        eff[species.index(coll)] = 1.0
    out = dict(
        eq=eq,
        reac=reac,
        prod=prod,
        reversible=arrow != "=>",
        kind=kind,
        coll=coll,
        eff=eff,
        duplicate=bool(r.get("duplicate", False)),
    )
    if kind == "falloff":
        out["high"] = arrhenius("high-P-rate-constant", 0)
        out["low"] = arrhenius("low-P-rate-constant", 1)
        troe = r.get("Troe")
        if troe is None:
            out["troe"] = [0.0, 0.0, 0.0, 0.0, 0.0]  # Lindemann: F = 1
        else:
            a, t3, t1 = (_number(troe.get(k), f"{eq} Troe {k}") for k in ("A", "T3", "T1"))
            t2 = _number(troe.get("T2", 0.0), f"{eq} Troe T2")
            inv = [1.0 / t if t != 0 else _NO_T for t in (t3, t1)]
            out["troe"] = [a, *inv, t2, 1.0 if "T2" in troe else 0.0]
    else:
        out["high"] = arrhenius("rate-constant", 1 if kind == "three-body" else 0)
    return out


def _check_duplicates(reactions: list[dict]) -> None:
    """Reactions with the same participants must all be declared duplicate (Cantera's rule)."""
    seen: dict = {}
    for r in reactions:
        key = (r["kind"], r["coll"], frozenset(r["reac"].items()), frozenset(r["prod"].items()))
        rev = (r["kind"], r["coll"], key[3], key[2])
        for k in (key, rev) if r["reversible"] else (key,):
            other = seen.get(k)
            if other is not None and not (r["duplicate"] and other["duplicate"]):
                raise ValueError(
                    f"undeclared duplicate reactions {other['eq']!r} and "
                    f"{r['eq']!r}: mark both 'duplicate: true'"
                )
            if other is not None:
                other["found"] = r["found"] = True
        seen.setdefault(key, r)
    for r in reactions:
        if r["duplicate"] and not r.get("found"):
            raise ValueError(f"reaction {r['eq']!r} is declared duplicate but has no duplicate")


def _assemble(species, elements, weights, composition, thermo, reactions) -> dict:
    n, nr = len(species), len(reactions)
    nu_r, nu_p = np.zeros((nr, n)), np.zeros((nr, n))
    for j, r in enumerate(reactions):
        for name, c in r["reac"].items():
            nu_r[j, species.index(name)] = c
        for name, c in r["prod"].items():
            nu_p[j, species.index(name)] = c
    imbalance = (nu_p - nu_r) @ composition
    for j in np.flatnonzero(np.abs(imbalance).max(axis=1, initial=0.0) > 1e-9):
        raise ValueError(
            f"reaction {reactions[j]['eq']!r} does not conserve elements "
            f"{elements}: products - reactants = {imbalance[j].tolist()}"
        )

    def slots(nu):
        width = max(1, int(nu.sum(axis=1).max(initial=0)))
        out = np.full((nr, width), n, dtype=np.int32)  # index n is the padding entry 1.0
        for j in range(nr):
            idx = np.repeat(np.arange(n), nu[j].astype(int))
            out[j, : idx.size] = idx
        return out

    falloff = [j for j, r in enumerate(reactions) if r["kind"] == "falloff"]
    high = np.array([r["high"] for r in reactions]).reshape(nr, 3)
    low = np.array([reactions[j]["low"] for j in falloff]).reshape(len(falloff), 3)
    return dict(
        species=tuple(species),
        elements=tuple(elements),
        equations=tuple(r["eq"] for r in reactions),
        reference_pressure=float(thermo[0][3]) if thermo else ONE_ATM,
        molecular_weights=np.asarray(weights, dtype=np.float64),
        composition=composition.astype(np.float64),
        nasa_low=np.array([t[0] for t in thermo]).reshape(n, 7),
        nasa_high=np.array([t[1] for t in thermo]).reshape(n, 7),
        t_mid=np.array([t[2] for t in thermo]).reshape(n),
        nu_reactants=nu_r,
        nu_products=nu_p,
        reactant_slots=slots(nu_r),
        product_slots=slots(nu_p),
        A=high[:, 0],
        b=high[:, 1],
        Ta=high[:, 2],
        reversible=np.array([float(r["reversible"]) for r in reactions]).reshape(nr),
        three_body=np.array([float(r["kind"] == "three-body") for r in reactions]).reshape(nr),
        efficiencies=np.array([r["eff"] for r in reactions]).reshape(nr, n),
        falloff_index=np.array(falloff, dtype=np.int32),
        A_low=low[:, 0],
        b_low=low[:, 1],
        Ta_low=low[:, 2],
        troe=np.array([reactions[j]["troe"] for j in falloff]).reshape(len(falloff), 5),
    )
