"""Controllers of the model-based agent: the feedback law and the safe controllers
(docs/flat_evade.md, "The agent").

Every safe controller here is a closed form; there is no QP library. The energy-function family
(SafeSet, Sublevel, ZBF, PotentialField, SlidingMode) works from one *safety index* per obstacle

    phi = d_min^2 - d^2 - k_v * d_dot + eta * dt          (phi > 0: unsafe)

and the linearisation ``phi_dot = L u - (stuff the agent cannot change)``, with ``L = b^T``. The
agent's model assumes acceleration = u (the plant applies 0.5 u: docs/flat_evade.md, Q6, kept on
purpose), and
the obstacle is assumed not to accelerate.

catbus decisions (docs/flat_evade.md, "Quirks kept and fixed"): with several obstacles the most
dangerous one
(largest phi, the first on ties) decides; with none the reference passes through (the original
returned the first obstacle's answer and crashed with none, Q9). The output is not saturated
unless ``saturate`` is set (Q8).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from nodes.flat_evade.values import stack

#: Lower bound on the distance, so the index and its gradient stay finite at contact.
MIN_DISTANCE = 1e-3


# -- feedback ---------------------------------------------------------------------------------------
def feedback_control(reference: np.ndarray, state: np.ndarray, kp: float, kv: float,
                     u_max: np.ndarray) -> np.ndarray:
    """PD towards the reference point: ``kp*e_p + kv*e_v`` with ``e = ref - state``, each
    component clipped to ``[-u_max, u_max]`` (the only saturation of the original system)."""
    error = reference - state
    u = kp * error[:2] + kv * error[2:4]
    return np.clip(u, -u_max, u_max)


# -- safety index -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SafeParams:
    """The ``safe`` parameter block of an agent (names as in the original yaml)."""

    d_min: float = 15.0
    k_v: float = 5.0
    eta: float = 1.0
    c: float = 1000.0
    lambd: float = 1.0
    u_max: np.ndarray = field(default_factory=lambda: np.array([[200.0], [200.0]]))
    saturate: bool = False


@dataclass(frozen=True)
class SafetyIndex:
    """The safety index against one obstacle and its gradient.

    ``a``/``b``: gradient of phi w.r.t. the agent's position/velocity. ``drift``: the part of
    phi_dot the control cannot change, ``a^T (v_s - v_o)``, with v_s the *state-sensor* velocity
    (the original mixes sensors here: Q10).
    """

    phi: float
    a: np.ndarray
    b: np.ndarray
    drift: float

    @property
    def L(self) -> np.ndarray:
        """Row (1,2): how u enters phi_dot (the model's g = [0; I])."""
        return self.b.T


def safety_index(own: np.ndarray, obstacle: np.ndarray, own_velocity: np.ndarray, dt: float,
                 p: SafeParams) -> SafetyIndex:
    """phi and its gradient for the agent at ``own`` = [p; v] against ``obstacle`` = [p; v].

    ``own_velocity`` is the velocity used for the drift term (the state sensor's). ``dt`` is the
    time since the agent last acted; it only enters through ``eta*dt``.
    """
    dp = own[:2] - obstacle[:2]
    dv = own[2:] - obstacle[2:]
    d = max(float(np.linalg.norm(dp)), MIN_DISTANCE)
    d_dot = (dp.T @ dv).item() / d
    phi = p.d_min ** 2 - d ** 2 - p.k_v * d_dot + p.eta * dt
    a = -2 * dp - p.k_v * (dv / d - d_dot * dp / d ** 2)
    b = -p.k_v * dp / d
    drift = (a.T @ (own_velocity - obstacle[2:])).item()
    return SafetyIndex(phi, a, b, drift)


def obstacle_indices(estimate: Mapping[str, Any], dt: float, p: SafeParams) -> list[SafetyIndex]:
    """One safety index per obstacle seen by the radar, in the radar's order."""
    cart = estimate["cartesian_sensor"]
    own = stack(cart["pos"], cart["vel"])
    own_velocity = estimate["state_sensor"]["state"][2:4]
    return [safety_index(own, stack(seen["rel_pos"], seen["rel_vel"]) + own, own_velocity, dt, p)
            for seen in estimate.get("obstacle_sensor", {}).values()]


# -- closed forms -----------------------------------------------------------------------------------
def project_onto_halfplane(u: np.ndarray, L: np.ndarray, bound: float) -> np.ndarray:
    """The point of ``{v : L v <= bound}`` nearest to ``u``: u itself if inside, else
    ``u - ((L u - bound)/(L L^T)) L^T``, which satisfies ``L v = bound``.

    If ``L = 0`` no control moves ``L v``, so there is nothing to project along: u is returned.
    """
    excess = (L @ u).item() - bound
    norm2 = (L @ L.T).item()
    if excess <= 0 or norm2 == 0:
        return u
    return u - (excess / norm2) * L.T


def unsafe(index: SafetyIndex, u_ref: np.ndarray, p: SafeParams) -> np.ndarray:
    """No safety layer: the reference."""
    return u_ref


def safe_set(index: SafetyIndex, u_ref: np.ndarray, p: SafeParams) -> np.ndarray:
    """While unsafe (phi > 0), enforce ``phi_dot <= -eta``: ``L u <= S = -eta - drift``."""
    if index.phi <= 0:
        return u_ref
    return project_onto_halfplane(u_ref, index.L, -p.eta - index.drift)


def sublevel(index: SafetyIndex, u_ref: np.ndarray, p: SafeParams) -> np.ndarray:
    """As SafeSet with ``S = lambd*phi - drift`` (``phi_dot <= lambd*phi``)."""
    if index.phi <= 0:
        return u_ref
    return project_onto_halfplane(u_ref, index.L, p.lambd * index.phi - index.drift)


def zbf(index: SafetyIndex, u_ref: np.ndarray, p: SafeParams) -> np.ndarray:
    """The original's QP ``min 1/2 u^T u - 2 u_ref^T u  s.t. (L/|beta|) u <= beta/|beta|``,
    ``beta = lambd*phi - drift``, solved in closed form.

    The objective is ``1/2 |u - 2 u_ref|^2`` plus a constant, so the answer is the projection of
    ``2 u_ref`` onto the half-plane ``L u <= beta`` (dividing both sides by |beta| > 0 does not
    change it): ``2 u_ref`` when the constraint is inactive, otherwise the boundary point.
    Always applied, whatever the sign of phi (as the original).

    Degenerate cases, where the original's QP was ill-posed:

    * ``beta = 0``: the original divided by zero; the limit half-plane ``L u <= 0`` is used.
    * ``L = 0`` (only when the agent sits exactly on the obstacle, or k_v = 0): the control cannot
      change phi_dot. If ``0 <= beta`` every u is feasible and ``2 u_ref`` is the optimum; else the
      QP is infeasible and ``u_ref`` is returned, the original's answer when its solver failed.
    """
    beta = p.lambd * index.phi - index.drift
    target = 2 * u_ref
    if (index.L @ index.L.T).item() == 0:
        return target if beta >= 0 else u_ref
    return project_onto_halfplane(target, index.L, beta)


def potential_field(index: SafetyIndex, u_ref: np.ndarray, p: SafeParams) -> np.ndarray:
    """Push straight away from the obstacle, ``-c*b`` (magnitude c*k_v), ignoring u_ref and phi."""
    return -p.c * index.b


def sliding_mode(index: SafetyIndex, u_ref: np.ndarray, p: SafeParams) -> np.ndarray:
    """``u_ref - c*b`` while unsafe, else u_ref."""
    return u_ref - p.c * index.b if index.phi > 0 else u_ref


SafeLaw = Callable[[SafetyIndex, np.ndarray, SafeParams], np.ndarray]

#: Safe controllers by the names users pick in ``safe_controller``.
SAFE_CONTROLLERS: dict[str, SafeLaw] = {
    "SafeSet": safe_set,
    "Unsafe": unsafe,
    "Sublevel": sublevel,
    "ZBF": zbf,
    "PotentialField": potential_field,
    "SlidingMode": sliding_mode,
}


def most_dangerous(indices: Sequence[SafetyIndex]) -> SafetyIndex | None:
    """The index with the largest phi (the first of equals), or None without obstacles."""
    return max(indices, key=lambda index: index.phi, default=None)


def safe_control(law: str, estimate: Mapping[str, Any], u_ref: np.ndarray, dt: float,
                 p: SafeParams) -> np.ndarray:
    """The safe control for this measurement: ``law`` applied against the most dangerous
    obstacle (u_ref if there is none), then clipped to ``u_max`` if ``saturate`` is set."""
    danger = most_dangerous(obstacle_indices(estimate, dt, p))
    u = u_ref if danger is None else SAFE_CONTROLLERS[law](danger, u_ref, p)
    if p.saturate:
        u = np.clip(u, -p.u_max, p.u_max)
    return u
