"""Exact L0 spike inference for the AR(1) calcium model with positivity (Jewell & Witten).

This is the ``events_solver = "exact"`` option; the ``allen`` preset runs FastLZero's algorithm instead
(:mod:`brainobs.populate.ophys.lzero_fast`), which can return a costlier event set (docs/methods.md).

Problem solved for a trace y_0..y_{T-1}, decay ``gamma`` in (0, 1), penalty ``lam`` > 0, floor ``eps`` >= 0:

    minimise  0.5 * sum_t (y_t - c_t)^2 + lam * #{t >= 1 : c_t != max(gamma c_{t-1}, eps)}
    subject to c_0 >= eps and c_t >= max(gamma c_{t-1}, eps) for t >= 1,

i.e. calcium decays geometrically (never below ``eps``) and only jumps up; each jump is an event of
magnitude ``c_t - max(gamma c_{t-1}, eps)``. With ``eps = 0`` this is the constrained AR(1) problem of
Jewell, Hocking, Fearnhead & Witten (2019); a small ``eps`` (FastLZeroSpikeInference's default 1e-4)
keeps long decays from underflowing and is what long traces should use.

Algorithm: dynamic programming over the optimal cost as a function of the current calcium, F_t(c), kept
as a sorted partition of (eps, inf) into convex quadratic pieces plus the point c = eps (functional
pruning). With G = F_{t-1} and m(x) = min_{eps <= x' <= x} G(x'),

    F_t(c) = 0.5 (y_t - c)^2 + min(G(c / gamma), lam + m(c / gamma))      for c > eps,
    F_t(eps) = 0.5 (y_t - eps)^2 + min_{eps <= x <= eps / gamma} G(x).

Each piece carries a record: the time and previous calcium of the last event (or of the step onto the
floor), linked to its parent record, so the optimal calcium is recovered by walking records backwards.
"""

from __future__ import annotations

import numba
import numpy as np

# rows of a piece table: the quadratic a x^2 + b x + k on [lo, hi]
LO, HI, A, B, K = 0, 1, 2, 3, 4
# rows of the integer record table; a record's float value is the calcium at its time (SPIKE: c_{t-1})
KIND, TIME, PARENT = 0, 1, 2
_INITIAL, _SPIKE, _FLOOR = 0, 1, 2


@numba.njit(cache=True)
def _grow(table: np.ndarray, size: int) -> np.ndarray:
    out = np.empty(table.shape[:-1] + (size,), dtype=table.dtype)
    out[..., : table.shape[-1]] = table
    return out


@numba.njit(cache=True)
def _roots(a: float, b: float, c: float) -> tuple[bool, float, float]:
    """Real roots r1 < r2 of a x^2 + b x + c (a > 0); False when there are not two distinct ones."""
    disc = b * b - 4.0 * a * c
    if disc <= 0.0:
        return False, 0.0, 0.0
    sq = np.sqrt(disc)
    q = -0.5 * (b + sq) if b >= 0.0 else -0.5 * (b - sq)
    r1, r2 = q / a, c / q
    return True, min(r1, r2), max(r1, r2)


@numba.njit(cache=True)
def _vertex(p: np.ndarray, i: int, lo: float, hi: float) -> tuple[float, float]:
    """(x, q(x)) at the minimum of piece i's quadratic over [lo, hi]."""
    x = min(max(-p[B, i] / (2.0 * p[A, i]), lo), hi)
    return x, (p[A, i] * x + p[B, i]) * x + p[K, i]


@numba.njit(cache=True)
def _push(out, out_rec, m, lo, hi, a, b, k, rec) -> int:
    """Append the piece [lo, hi] (skipped when empty), merging it into the previous one of the same record."""
    if not hi > lo:
        return m
    if m > 0 and out_rec[m - 1] == rec:
        out[HI, m - 1] = hi
        return m
    out[LO, m], out[HI, m], out[A, m], out[B, m], out[K, m] = lo, hi, a, b, k
    out_rec[m] = rec
    return m + 1


@numba.njit(cache=True)
def _push_min(out, out_rec, m, lo, hi, a, b, k, rec, level, level_rec) -> int:
    """Append min(q, level) on [lo, hi]: q where it is below the constant, the constant elsewhere."""
    if not hi > lo:
        return m
    ok, r1, r2 = _roots(a, b, k - level)
    q_lo, q_hi = (max(lo, r1), min(hi, r2)) if ok else (hi, hi)
    m = _push(out, out_rec, m, lo, min(hi, q_lo), 0.0, 0.0, level, level_rec)
    m = _push(out, out_rec, m, q_lo, q_hi, a, b, k, rec)
    return _push(out, out_rec, m, max(lo, q_hi), hi, 0.0, 0.0, level, level_rec)


@numba.njit(cache=True)
def _add_record(ints, values, count, kind, time, value, parent) -> int:
    ints[KIND, count], ints[TIME, count], ints[PARENT, count] = kind, time, parent
    values[count] = value
    return count + 1


@numba.njit(cache=True)
def _spike_or_stay(p, p_rec, n, point, point_rec, eps, lam, t, out, out_rec, ints, values, n_rec):
    """H(x) = min(G(x), lam + min_{x' <= x} G(x')) of the previous cost G (point at eps + pieces).

    Writes H into ``out``; each stretch where the running minimum is constant gets a SPIKE record (time t,
    previous calcium at the minimum). Returns (pieces written, records used, global minimum of G).
    """
    run_min = point
    stretch = n_rec
    n_rec = _add_record(ints, values, n_rec, _SPIKE, t, eps, point_rec)
    m = 0
    for i in range(n):
        a, b, k, rec = p[A, i], p[B, i], p[K, i], p_rec[i]
        lo, hi = p[LO, i], p[HI, i]
        v, qv = _vertex(p, i, lo, hi)
        if qv >= run_min:
            m = _push_min(out, out_rec, m, lo, hi, a, b, k, rec, lam + run_min, stretch)
            continue
        # q falls below the running minimum at x_cross, follows it down to v, then v is the new minimum
        x_cross = lo
        if (a * lo + b) * lo + k > run_min:
            ok, r1, _ = _roots(a, b, k - run_min)
            x_cross = min(max(r1, lo), v) if ok else lo
        m = _push_min(out, out_rec, m, lo, x_cross, a, b, k, rec, lam + run_min, stretch)
        m = _push(out, out_rec, m, x_cross, v, a, b, k, rec)
        run_min = qv
        stretch = n_rec
        n_rec = _add_record(ints, values, n_rec, _SPIKE, t, v, rec)
        m = _push_min(out, out_rec, m, v, hi, a, b, k, rec, lam + qv, stretch)
    return m, n_rec, run_min


@numba.njit(cache=True)
def _decay_and_observe(h, h_rec, m, p, p_rec, gamma, eps, y_t, shift) -> int:
    """F_t(c) = H(c / gamma) + 0.5 (y_t - c)^2 for c > eps (costs lowered by ``shift``); returns the count."""
    bound = eps / gamma
    n = 0
    for i in range(m):
        if not h[HI, i] > bound:
            continue
        p[LO, n] = eps if n == 0 else gamma * h[LO, i]
        p[HI, n] = gamma * h[HI, i]
        p[A, n] = h[A, i] / (gamma * gamma) + 0.5
        p[B, n] = h[B, i] / gamma - y_t
        p[K, n] = h[K, i] - shift + 0.5 * y_t * y_t
        p_rec[n] = h_rec[i]
        n += 1
    return n


@numba.njit(cache=True)
def _onto_floor(p, p_rec, n, point, bound) -> tuple[float, float, int]:
    """Lowest previous cost that decays onto the floor: (value, calcium, record or -1 for the point)."""
    best, best_x, best_rec = point, 0.0, -1
    for i in range(n):
        if p[LO, i] > bound:
            break
        x, value = _vertex(p, i, p[LO, i], min(p[HI, i], bound))
        if value < best:
            best, best_x, best_rec = value, x, p_rec[i]
    return best, best_x, best_rec


@numba.njit(cache=True)
def _walk_back(ints, values, rec, c_end, n_frames, gamma, eps) -> tuple[np.ndarray, np.ndarray]:
    """Calcium and events from the record of the optimum at the last frame."""
    calcium = np.zeros(n_frames)
    events = np.zeros(n_frames)
    t_cur, c_cur = n_frames - 1, c_end
    while t_cur >= 0:
        kind, time = ints[KIND, rec], ints[TIME, rec]
        if kind == _FLOOR:
            calcium[time + 1 : t_cur + 1] = eps
            t_cur, c_cur, rec = time, values[rec], ints[PARENT, rec]
            continue
        start = time if kind == _SPIKE else 0
        calcium[t_cur] = c_cur
        for s in range(t_cur - 1, start - 1, -1):
            calcium[s] = calcium[s + 1] / gamma
        if kind == _INITIAL:
            break
        events[start] = calcium[start] - max(gamma * values[rec], eps)
        t_cur, c_cur, rec = start - 1, values[rec], ints[PARENT, rec]
    return calcium, events


@numba.njit(cache=True, nogil=True)
def solve_l0(y: np.ndarray, gamma: float, lam: float, eps: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Globally optimal calcium and event magnitudes of the problem in the module docstring.

    y: (T,) float64 trace. Returns (calcium (T,), events (T,)): ``events[t]`` is the jump at frame t
    (0 where no event; frame 0 never holds one).
    """
    n_frames = y.size
    if n_frames == 0:
        return np.zeros(0), np.zeros(0)
    cap, rcap = 64, 1024
    p, p_rec = np.empty((5, cap)), np.empty(cap, dtype=np.int64)
    h, h_rec = np.empty((5, cap)), np.empty(cap, dtype=np.int64)
    ints, values = np.empty((3, rcap), dtype=np.int64), np.empty(rcap)
    n_rec = _add_record(ints, values, 0, _INITIAL, 0, 0.0, -1)
    point_rec = n_rec
    n_rec = _add_record(ints, values, n_rec, _FLOOR, 0, eps, 0)
    point = 0.5 * (y[0] - eps) ** 2
    p[LO, 0], p[HI, 0], p[A, 0], p[B, 0], p[K, 0] = eps, np.inf, 0.5, -y[0], 0.5 * y[0] * y[0]
    p_rec[0] = 0
    n = 1
    bound = eps / gamma
    for t in range(1, n_frames):
        if 3 * n + 8 > cap:
            cap = 2 * (3 * n + 8)
            p, p_rec, h, h_rec = _grow(p, cap), _grow(p_rec, cap), _grow(h, cap), _grow(h_rec, cap)
        if n_rec + n + 4 > rcap:
            rcap = 2 * (n_rec + n + 4)
            ints, values = _grow(ints, rcap), _grow(values, rcap)
        floor_value, floor_x, floor_rec = _onto_floor(p, p_rec, n, point, bound)
        m, n_rec, shift = _spike_or_stay(p, p_rec, n, point, point_rec, eps, lam, t, h, h_rec, ints, values, n_rec)
        n = _decay_and_observe(h, h_rec, m, p, p_rec, gamma, eps, y[t], shift)
        if floor_rec >= 0:
            point_rec = n_rec
            n_rec = _add_record(ints, values, n_rec, _FLOOR, t - 1, floor_x, floor_rec)
        point = floor_value - shift + 0.5 * (y[t] - eps) ** 2
    best, best_c, best_rec = point, eps, point_rec
    for i in range(n):
        x, value = _vertex(p, i, p[LO, i], p[HI, i])
        if value < best:
            best, best_c, best_rec = value, x, p_rec[i]
    return _walk_back(ints, values, best_rec, best_c, n_frames, gamma, eps)
