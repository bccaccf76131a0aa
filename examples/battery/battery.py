#!/usr/bin/env python3
"""A grey-box battery example: PyBaMM's DFN model as the simulator, closed-form physics as prior.

Physics
    A cylindrical LG M50 21700 lithium-ion cell (NMC811 positive electrode, graphite
    negative electrode, 5 A h nominal), parameterised by PyBaMM's ``"Chen2020"`` set, is
    discharged at a constant current from its fully charged state (the set's initial
    concentrations, open-circuit voltage ~4.17 V) and held at a constant temperature. The
    simulator is the Doyle-Fuller-Newman (DFN) pseudo-two-dimensional model: lithium
    diffusion in spherical particles of each electrode, ion transport and potential in the
    electrolyte across the cell, Butler-Volmer kinetics at the particle surfaces.

    Three inputs, all keyword arguments:

    * ``current``: the discharge current in A, 0.5-10 (C/10 to 2C for this 5 A h cell);
    * ``temperature``: the cell (= ambient) temperature in K, 268.15-318.15
      (-5 °C to 45 °C, the usual operating window). In Chen2020 the temperature enters
      through the Arrhenius factors of the exchange-current densities (activation energies
      35 kJ/mol graphite, 17.8 kJ/mol NMC) and RT/F: cold cells show a larger kinetic
      overpotential;
    * ``capacity_used``: the charge drawn when the voltage is read, in A h, 0.25-4.0
      (5 % to 80 % depth of discharge); it sets the read-out time
      ``t = 3600 capacity_used / current`` s.

    One output: ``voltage``, the terminal voltage in V at that point.

Grey-box priors
    :func:`ocv_minus_overpotentials` (the prior of ``campaign_greybox.toml``) is a
    closed-form reduced model of the same voltage, built from the parameter set's own
    values and functions with nothing fitted to the DFN (:func:`voltage_terms` gives it
    term by term): the open-circuit voltage at the particles' *surface* stoichiometries
    (lithium conservation for the mean, the constant-flux series solution of a sphere for
    the surface), minus the Butler-Volmer overpotentials of both electrodes (Arrhenius
    exchange-current densities, so the temperature effect is physics, not learnt), the
    ohmic drop in electrolyte and solid, and the concentration overpotential of the
    quasi-steady electrolyte profile. The GP then only has to learn the residual
    ``simulation - prior`` (the non-uniform reaction through the electrodes, the
    electrolyte transient, the concentration dependence of the electrolyte diffusivity).

    :func:`ocv_minus_ohmic` is the first, simplest prior, kept for comparison: the
    open-circuit voltage at the mean stoichiometries minus ``current * R_EFF``, one
    resistance fitted to 36 DFN runs at 298.15 K (:func:`fit_r_eff`). It ignores the
    temperature and the time dependence of the polarisation.

Numerics
    The DFN is discretised on 40 finite volumes per electrode, 20 in the separator and 40
    radial shells per particle (the default 20 is ~4 mV off at 2C early in the discharge;
    40 is within 1 mV of 60) and integrated with PyBaMM's IDAKLU solver (rtol 1e-6,
    atol 1e-8). Current and temperature are PyBaMM input parameters, so the model is built
    and discretised once per process and thread and re-solved for every call: a call takes
    0.05-0.25 s on one core (longer the further into the discharge), the first one in a
    process ~0.15 s more, and ``import battery`` ~1.5 s (PyBaMM itself).

Usage
    ``python battery.py`` runs 20 random inputs and prints the DFN voltage, both priors and
    their residuals with timings; ``python battery.py --fit`` re-estimates ``R_EFF``.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

# PyBaMM asks on import whether to send usage telemetry (an input() prompt with a 10 s
# timeout) unless it runs under a test runner or is told not to; a Dask worker must never
# wait on a prompt.
os.environ.setdefault("PYBAMM_DISABLE_TELEMETRY", "true")

import pybamm

PARAMETER_SET = "Chen2020"

#: Input ranges used by ``campaign.toml`` (and by the random check in ``__main__``).
BOUNDS: dict[str, tuple[float, float]] = {
    "current": (0.5, 10.0),  # A
    "temperature": (268.15, 318.15),  # K
    "capacity_used": (0.25, 4.0),  # A h
}

#: Effective resistance of the first prior, ocv_minus_ohmic, in ohm: least-squares fit of
#: OCV - V_DFN against the current over a 6 x 6 grid of (current, capacity_used) at
#: 298.15 K (36 DFN runs); see fit_r_eff(). The prior of the grey-box spec fits nothing.
R_EFF = 0.0449

_VAR_PTS = {"x_n": 40, "x_s": 20, "x_p": 40, "r_n": 40, "r_p": 40}
_CURRENT = "Current function [A]"
_T_AMB = "Ambient temperature [K]"
_T_INIT = "Initial temperature [K]"


class DischargeError(RuntimeError):
    """The DFN could not deliver a voltage at the requested point."""


# -- the simulator ------------------------------------------------------------------------
_local = threading.local()  # one built Simulation per thread: IDAKLU objects are not shared


def _simulation() -> pybamm.Simulation:
    sim: pybamm.Simulation | None = getattr(_local, "sim", None)
    if sim is None:
        params = pybamm.ParameterValues(PARAMETER_SET)
        params.update({_CURRENT: "[input]", _T_AMB: "[input]", _T_INIT: "[input]"})
        sim = pybamm.Simulation(
            pybamm.lithium_ion.DFN(),
            parameter_values=params,
            var_pts=_VAR_PTS,
            solver=pybamm.IDAKLUSolver(rtol=1e-6, atol=1e-8),
        )
        sim.build()
        _local.sim = sim
    return sim


def discharge(current: float, temperature: float, capacity_used: float) -> dict[str, float]:
    """Terminal voltage of the Chen2020 cell after drawing ``capacity_used`` A h.

    Args:
        current: Constant discharge current in A (> 0).
        temperature: Cell and ambient temperature in K (isothermal).
        capacity_used: Charge drawn from the full cell when the voltage is read, in A h.

    Returns:
        ``{"voltage": V}``, the terminal voltage in V.

    Raises:
        ValueError: An input is not finite or not positive.
        DischargeError: The solver failed, or the 2.5 V cut-off was reached before
            ``capacity_used`` A h had been drawn.
    """
    inputs = {"current": current, "temperature": temperature, "capacity_used": capacity_used}
    for name, value in inputs.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be finite and > 0 (got {value!r})")
    t_end = 3600.0 * capacity_used / current
    where = f"current={current:g} A, temperature={temperature:g} K, {capacity_used:g} A h drawn"
    sim = _simulation()
    try:
        sol = sim.solve(
            [0.0, t_end],
            inputs={_CURRENT: current, _T_AMB: temperature, _T_INIT: temperature},
        )
    except pybamm.SolverError as exc:
        raise DischargeError(f"DFN solver failed at {where}: {exc}") from exc
    drawn = float(sol["Discharge capacity [A.h]"].entries[-1])
    if sol.termination != "final time":
        raise DischargeError(
            f"discharge stopped early ({sol.termination}) after {drawn:.4g} A h of the "
            f"requested {capacity_used:g} A h, at {where}"
        )
    voltage = float(sol["Voltage [V]"].entries[-1])
    if not math.isfinite(voltage):
        raise DischargeError(f"DFN returned a non-finite voltage at {where}")
    return {"voltage": voltage}


# -- the priors ---------------------------------------------------------------------------
FARADAY = pybamm.constants.F.value  # C/mol
GAS = pybamm.constants.R.value  # J/(mol K)


def _values(value: Any, shape: tuple[int, ...] = ()) -> np.ndarray:
    """A parameter-set function's result as a float array of ``shape``.

    Some of the set's functions return PyBaMM expressions (evaluated here, as a column).
    """
    if isinstance(value, pybamm.Symbol):
        value = value.evaluate()
    arr = np.asarray(value, dtype=float)
    if arr.size == math.prod(shape):
        return arr.reshape(shape)
    return np.broadcast_to(arr, shape).copy()


@dataclass(frozen=True)
class _Electrode:
    """What the priors need of one electrode, all read from the parameter set."""

    ocp: Any  # the set's OCP function of the stoichiometry, V
    exchange: Any  # the set's exchange-current density (c_e, c_s_surf, c_s_max, T), A/m2
    c_max: float  # mol/m3
    sto0: float  # initial stoichiometry (full cell)
    capacity: float  # A h between stoichiometry 0 and 1
    thickness: float  # m
    radius: float  # particle radius, m
    diffusivity: float  # particle diffusivity, m2/s
    surface: float  # particle surface area in the electrode (3 eps_s / r_p * L * A), m2
    sigma_eff: float  # effective electronic conductivity, S/m
    porosity: float
    bruggeman: float  # electrolyte Bruggeman exponent
    alpha: float  # charge-transfer coefficient


@dataclass(frozen=True)
class _Cell:
    neg: _Electrode
    pos: _Electrode
    area: float  # electrode plate area, m2
    sep_thickness: float  # m
    sep_porosity: float
    sep_bruggeman: float
    c_e0: float  # initial electrolyte concentration, mol/m3
    t_plus: float  # cation transference number
    tdf: float  # thermodynamic factor
    kappa: Any  # the set's electrolyte conductivity (c_e, T), S/m
    d_e: float  # electrolyte diffusivity at c_e0 (Nyman2008 has no T dependence), m2/s


def _cell() -> _Cell:
    p = pybamm.ParameterValues(PARAMETER_SET)
    area = p["Electrode height [m]"] * p["Electrode width [m]"]
    area *= p["Number of electrodes connected in parallel to make a cell"]

    def electrode(side: str) -> _Electrode:
        s = side.capitalize()
        c_max = p[f"Maximum concentration in {side} electrode [mol.m-3]"]
        eps_s = p[f"{s} electrode active material volume fraction"]
        thickness = p[f"{s} electrode thickness [m]"]
        radius = p[f"{s} particle radius [m]"]
        porosity = p[f"{s} electrode porosity"]
        return _Electrode(
            ocp=p[f"{s} electrode OCP [V]"],
            exchange=p[f"{s} electrode exchange-current density [A.m-2]"],
            c_max=c_max,
            sto0=p[f"Initial concentration in {side} electrode [mol.m-3]"] / c_max,
            capacity=eps_s * thickness * area * c_max * FARADAY / 3600.0,
            thickness=thickness,
            radius=radius,
            diffusivity=p[f"{s} particle diffusivity [m2.s-1]"],
            surface=3.0 * eps_s / radius * thickness * area,
            sigma_eff=p[f"{s} electrode conductivity [S.m-1]"]
            * (1.0 - porosity) ** p[f"{s} electrode Bruggeman coefficient (electrode)"],
            porosity=porosity,
            bruggeman=p[f"{s} electrode Bruggeman coefficient (electrolyte)"],
            alpha=p[f"{s} electrode charge transfer coefficient"],
        )

    c_e0 = p["Initial concentration in electrolyte [mol.m-3]"]
    t_ref = p["Reference temperature [K]"]
    return _Cell(
        neg=electrode("negative"),
        pos=electrode("positive"),
        area=area,
        sep_thickness=p["Separator thickness [m]"],
        sep_porosity=p["Separator porosity"],
        sep_bruggeman=p["Separator Bruggeman coefficient (electrolyte)"],
        c_e0=c_e0,
        t_plus=p["Cation transference number"],
        tdf=p["Thermodynamic factor"],
        kappa=p["Electrolyte conductivity [S.m-1]"],
        d_e=float(_values(p["Electrolyte diffusivity [m2.s-1]"](c_e0, t_ref))),
    )


CELL = _cell()
# Kept for the first prior and for older callers.
_U_NEG, _U_POS = CELL.neg.ocp, CELL.pos.ocp
_X0, _Y0, _Q_NEG, _Q_POS = CELL.neg.sto0, CELL.pos.sto0, CELL.neg.capacity, CELL.pos.capacity


def _sphere_roots(k: int) -> np.ndarray:
    """The first ``k`` positive roots of ``tan(l) = l``, one in each ((j, j + 1/2) pi)."""
    from scipy.optimize import brentq

    def g(lam: float) -> float:
        return math.sin(lam) - lam * math.cos(lam)

    return np.array([brentq(g, j * math.pi, (j + 0.5) * math.pi) for j in range(1, k + 1)])


#: 40 terms resolve tau = D t / r_p^2 >= 0.005; the box's shortest is 0.013 (NMC, 90 s).
_ROOTS_SQ = _sphere_roots(40) ** 2


def _surface_excess(tau: np.ndarray) -> np.ndarray:
    """(c_surf - c_mean) / (N r_p / D) in a sphere under a constant surface flux N.

    The classical series solution (Crank, The Mathematics of Diffusion, ch. 6),
    ``1/5 - 2 sum exp(-l^2 tau) / l^2`` over the roots of ``tan(l) = l``, with
    ``tau = D t / r_p^2``: 0 at tau = 0, 1/5 once the profile is parabolic.
    """
    tau = np.asarray(tau, dtype=float)
    # Terms with l^2 tau > 50 are below 1e-21 everywhere: leave them out (speed).
    roots_sq = _ROOTS_SQ[_ROOTS_SQ * (tau.min() if tau.size else 0.0) < 50.0]
    series = np.exp(-np.multiply.outer(tau, roots_sq)) / roots_sq
    return np.asarray(0.2 - 2.0 * series.sum(axis=-1))


def open_circuit_voltage(capacity_used: Any) -> np.ndarray:
    """Open-circuit voltage (V) of the Chen2020 cell after drawing ``capacity_used`` A h."""
    q = np.asarray(capacity_used, dtype=float)
    x = np.clip(_X0 - q / _Q_NEG, 0.0, 1.0)  # graphite stoichiometry falls
    y = np.clip(_Y0 + q / _Q_POS, 0.0, 1.0)  # NMC stoichiometry rises
    return np.asarray(_U_POS(y) - _U_NEG(x), dtype=float)


def _broadcast(current: Any, temperature: Any, capacity_used: Any) -> list[np.ndarray]:
    return list(
        np.broadcast_arrays(
            np.asarray(current, dtype=float),
            np.asarray(temperature, dtype=float),
            np.asarray(capacity_used, dtype=float),
        )
    )


def ocv_minus_ohmic(current: Any, temperature: Any, capacity_used: Any) -> np.ndarray:
    """The first, simplest prior, vectorised: OCV(capacity_used) - current * R_EFF.

    Args:
        current: n currents in A.
        temperature: n temperatures in K (unused: ``R_EFF`` is fixed, fitted at 298.15 K).
        capacity_used: n charges drawn in A h.

    Returns:
        The n prior voltages in V, a float64 array.
    """
    i, _, q = _broadcast(current, temperature, capacity_used)
    return open_circuit_voltage(q) - i * R_EFF


def voltage_terms(current: Any, temperature: Any, capacity_used: Any) -> dict[str, np.ndarray]:
    """The physics prior term by term, vectorised; every term in V.

    ``voltage = ocv - diffusion - kinetic_neg - kinetic_pos - ohmic - electrolyte``, with

    * ``ocv``: U_p(y) - U_n(x) at the mean stoichiometries that lithium conservation gives;
    * ``diffusion``: ``ocv`` minus the same at the particles' *surface* stoichiometries,
      from the series solution for a sphere under a constant surface flux (the current
      shared evenly over all particle surfaces of an electrode);
    * ``kinetic_neg``/``kinetic_pos``: the Butler-Volmer overpotentials
      ``RT / (alpha F) asinh(j / (2 i0))`` with ``j = I / surface`` and the set's
      exchange-current densities (Arrhenius in T) at the surface stoichiometry and the
      electrode's mean electrolyte concentration;
    * ``ohmic``: ``I/A (L_n/(3 kappa_n) + L_s/kappa_s + L_p/(3 kappa_p) + L_n/(3 sigma_n) +
      L_p/(3 sigma_p))``, Bruggeman-corrected, with the electrolyte conductivity of each
      region at its mean concentration (uniform reaction in each electrode);
    * ``electrolyte``: the concentration overpotential
      ``2 (1 - t+) TDF RT/F ln(c_n / c_p)`` of the quasi-steady electrolyte profile (constant
      diffusivity, uniform reaction, mean concentration conserved).

    Nothing in it is fitted to the DFN: every constant is the parameter set's.
    """
    i, temp, q = _broadcast(current, temperature, capacity_used)
    cell, neg, pos = CELL, CELL.neg, CELL.pos
    rt_f = GAS * temp / FARADAY
    t = 3600.0 * q / np.maximum(i, 1e-12)  # s since the start of the discharge

    # Electrolyte: quasi-steady profile for a salt flux q_s through the separator,
    # parabolic in each electrode, linear in the separator.
    flux = (1.0 - cell.t_plus) * i / (FARADAY * cell.area)  # mol/(m2 s)
    d_n = cell.d_e * neg.porosity**neg.bruggeman
    d_s = cell.d_e * cell.sep_porosity**cell.sep_bruggeman
    d_p = cell.d_e * pos.porosity**pos.bruggeman
    l_n, l_s, l_p = neg.thickness, cell.sep_thickness, pos.thickness
    end_n = -flux * l_n / (2 * d_n)  # relative to the concentration at x = 0
    end_s = end_n - flux * l_s / d_s
    mean_n = -flux * l_n / (6 * d_n)
    mean_s = end_n - flux * l_s / (2 * d_s)
    mean_p = end_s - flux * l_p / (3 * d_p)
    volume = neg.porosity * l_n + cell.sep_porosity * l_s + pos.porosity * l_p
    shift = -(neg.porosity * l_n * mean_n + cell.sep_porosity * l_s * mean_s
              + pos.porosity * l_p * mean_p) / volume  # fmt: skip
    floor = 0.01 * cell.c_e0  # the linear profile runs out of salt far above the box
    c_n = np.maximum(cell.c_e0 + mean_n + shift, floor)
    c_s = np.maximum(cell.c_e0 + mean_s + shift, floor)
    c_p = np.maximum(cell.c_e0 + mean_p + shift, floor)

    # Particles: mean stoichiometries from charge conservation, surface ones from diffusion.
    terms: dict[str, np.ndarray] = {}
    sto = {}
    for name, el, sign, x0 in (("neg", neg, -1.0, neg.sto0), ("pos", pos, 1.0, pos.sto0)):
        mean = x0 + sign * q / el.capacity
        n_flux = i / (FARADAY * el.surface)  # mol/(m2 s) through the particle surfaces
        tau = el.diffusivity * t / el.radius**2
        excess = n_flux * el.radius / el.diffusivity * _surface_excess(tau) / el.c_max
        sto[name] = (np.clip(mean, 0.0, 1.0), np.clip(mean + sign * excess, 1e-6, 1 - 1e-6))
    (x_mean, x_surf), (y_mean, y_surf) = sto["neg"], sto["pos"]
    terms["ocv"] = np.asarray(_U_POS(y_mean) - _U_NEG(x_mean), dtype=float)
    surface_ocv = np.asarray(_U_POS(y_surf) - _U_NEG(x_surf), dtype=float)
    terms["diffusion"] = terms["ocv"] - surface_ocv

    for name, el, c_e, surf in (("neg", neg, c_n, x_surf), ("pos", pos, c_p, y_surf)):
        i0 = _values(el.exchange(c_e, surf * el.c_max, el.c_max, temp), i.shape)
        j = i / el.surface
        terms[f"kinetic_{name}"] = rt_f / el.alpha * np.arcsinh(j / (2.0 * i0))

    def kappa(c: np.ndarray) -> np.ndarray:
        return _values(cell.kappa(c, temp), i.shape)

    resistance = (
        l_n / (3 * kappa(c_n) * neg.porosity**neg.bruggeman)
        + l_s / (kappa(c_s) * cell.sep_porosity**cell.sep_bruggeman)
        + l_p / (3 * kappa(c_p) * pos.porosity**pos.bruggeman)
        + l_n / (3 * neg.sigma_eff)
        + l_p / (3 * pos.sigma_eff)
    ) / cell.area
    terms["ohmic"] = i * resistance
    terms["electrolyte"] = 2.0 * (1.0 - cell.t_plus) * cell.tdf * rt_f * np.log(c_n / c_p)
    return {k: np.broadcast_to(v, i.shape).astype(float) for k, v in terms.items()}


def ocv_minus_overpotentials(current: Any, temperature: Any, capacity_used: Any) -> np.ndarray:
    """The grey-box prior of :func:`discharge`, vectorised (see :func:`voltage_terms`).

    Args:
        current: n currents in A.
        temperature: n temperatures in K.
        capacity_used: n charges drawn in A h.

    Returns:
        The n prior voltages in V, a float64 array.
    """
    t = voltage_terms(current, temperature, capacity_used)
    drop = t["diffusion"] + t["kinetic_neg"] + t["kinetic_pos"] + t["ohmic"] + t["electrolyte"]
    return np.asarray(t["ocv"] - drop, dtype=float)


def fit_r_eff(temperature: float = 298.15, n: int = 6) -> float:
    """Least-squares effective resistance (ohm) of OCV - V_DFN over an n x n grid at T."""
    lo_i, hi_i = BOUNDS["current"]
    lo_q, hi_q = BOUNDS["capacity_used"]
    currents, drops = [], []
    for i in np.linspace(lo_i, hi_i, n):
        for q in np.linspace(lo_q, hi_q, n):
            v = discharge(float(i), temperature, float(q))["voltage"]
            currents.append(i)
            drops.append(float(open_circuit_voltage(q)) - v)
    a, b = np.asarray(currents), np.asarray(drops)
    return float(a @ b / (a @ a))


# -- a check: how much of the variation do the priors explain? ------------------------------
_LADDER = ("diffusion", "kinetic_neg", "kinetic_pos", "ohmic", "electrolyte")


def _stats(volts: np.ndarray, prior: np.ndarray, temps: np.ndarray) -> str:
    res = volts - prior
    cold, warm = (float(r.mean()) if r.size else math.nan
                  for r in (res[temps < 280.0], res[temps > 310.0]))  # fmt: skip
    return (
        f"residual std {1e3 * res.std(ddof=1):5.1f} mV, mean {1e3 * res.mean():+5.1f}, "
        f"max |.| {1e3 * np.abs(res).max():4.0f}, below 280 K {1e3 * cold:+5.1f}, "
        f"above 310 K {1e3 * warm:+5.1f}, R^2 {1 - res.var() / volts.var():.4f}"
    )


def _check(n: int = 20, seed: int = 0, show: int = 20) -> None:
    rng = np.random.default_rng(seed)
    names = list(BOUNDS)
    lo = np.array([BOUNDS[k][0] for k in names])
    hi = np.array([BOUNDS[k][1] for k in names])
    x = lo + (hi - lo) * rng.random((n, len(names)))
    t0 = time.perf_counter()
    _simulation()
    t_build = time.perf_counter() - t0
    volts, seconds = [], []
    print(f"{'I/A':>6} {'T/K':>7} {'Q/Ah':>6} {'DFN/V':>7} {'ohmic/V':>7} {'res/mV':>7} "
          f"{'phys/V':>7} {'res/mV':>7} {'s':>6}")  # fmt: skip
    p_ohm = ocv_minus_ohmic(*x.T)
    p_phys = ocv_minus_overpotentials(*x.T)
    for k, row in enumerate(x):
        t0 = time.perf_counter()
        v = discharge(*map(float, row))["voltage"]
        seconds.append(time.perf_counter() - t0)
        volts.append(v)
        if k < show:
            print(f"{row[0]:6.3f} {row[1]:7.2f} {row[2]:6.3f} {v:7.4f} {p_ohm[k]:7.4f} "
                  f"{1e3 * (v - p_ohm[k]):7.1f} {p_phys[k]:7.4f} {1e3 * (v - p_phys[k]):7.1f} "
                  f"{seconds[-1]:6.3f}")  # fmt: skip
    v_arr, s_arr = np.array(volts), np.array(seconds)
    big = lo + (hi - lo) * rng.random((10_000, len(names)))
    timings = {}
    for name, fn in (("ohmic", ocv_minus_ohmic), ("phys", ocv_minus_overpotentials)):
        t0 = time.perf_counter()
        fn(*big.T)
        timings[name] = time.perf_counter() - t0
    print(f"\nbuild + discretise (once per process): {t_build:.3f} s")
    print(f"DFN per run: mean {s_arr.mean():.3f}, min {s_arr.min():.3f}, max {s_arr.max():.3f} s")
    print(f"priors, 10,000 points: ocv_minus_ohmic {1e3 * timings['ohmic']:.2f} ms, "
          f"ocv_minus_overpotentials {1e3 * timings['phys']:.2f} ms")  # fmt: skip
    print(f"{n} points: voltage std {1e3 * v_arr.std(ddof=1):.1f} mV")
    print(f"  ocv_minus_ohmic:          {_stats(v_arr, p_ohm, x[:, 1])}")
    print(f"  ocv_minus_overpotentials: {_stats(v_arr, p_phys, x[:, 1])}")
    print("  ocv_minus_overpotentials built up term by term:")
    terms = voltage_terms(*x.T)
    prior = terms["ocv"].copy()
    print(f"    {'ocv':<13} {_stats(v_arr, prior, x[:, 1])}")
    for name in _LADDER:
        prior -= terms[name]
        print(f"    - {name:<11} {_stats(v_arr, prior, x[:, 1])}")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Check the priors against the DFN.")
    parser.add_argument("--fit", action="store_true", help="re-estimate R_EFF (36 DFN runs)")
    parser.add_argument("-n", type=int, default=20, help="random inputs to simulate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.fit:
        print(f"R_eff = {fit_r_eff():.5f} ohm")
    else:
        _check(args.n, args.seed)
