"""FastLZero: the functional-pruning L0 spike solver that Allen's event detection runs.

Jewell, Hocking, Fearnhead & Witten (2019), "Fast nonconvex deconvolution of calcium imaging data",
Biostatistics 21(4), with the conventions of FastLZeroSpikeInference (``estimate_spikes(constraint=True,
estimate_calcium=True, EPS=1e-4)``, the version Allen's ophys_etl pins). The objective is the one of
:mod:`brainobs.populate.ophys.lzero`; this solver reaches it through the paper's dynamic programme on
piecewise-quadratic cost functions, with the published rules that make it an approximation:

1. **Cost functions.** F_t(c) is a list of quadratic pieces over [EPS, inf) plus the point c = EPS
   (calcium on its floor). Each piece records the last changepoint (``data_i``) of the path it stands
   for. Step t: scale F_{t-1} to c_t = gamma c_{t-1}; fold everything that decays below EPS into the
   point; the "spike" function is the running minimum of that (min-less operator, pieces tagged with
   changepoint t-1) plus lambda; F_t is the pointwise minimum (min-envelope) of spike and no-spike
   functions plus the square loss of y_t. Intersections use the closed-form roots; pieces whose constants
   differ by less than 1e-30 count as equal; the min-less operator closes a constant stretch where a piece
   comes within 1e-30 of it.
2. **Changepoints.** Backwards from the last frame, each changepoint is the ``data_i`` of the piece that
   holds the *global* minimum of the cost at the previous changepoint (not the piece at the path's own
   calcium). This and the rules of 1. can give a slightly costlier event set than the exact optimum.
3. **Calcium.** Each segment between changepoints is refitted on its own: for every candidate length L
   the decay ``a * gamma^k`` over its first L frames is fitted by least squares, the rest of the segment
   sits on EPS (end values are clamped so the decay meets the floor); the candidate with the smallest
   residual sum of squares wins (first one on ties). Event magnitude at spike s: c[s] - gamma c[s-1].

Floating-point operations follow the published ones in order, so the event frames are the same.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# float rows of a piece table: a x^2 + b x + k on [lo, hi], and the recorded previous calcium
SQ, LI, CO, LO, HI, PM = 0, 1, 2, 3, 4, 5
NOT_SET = -3  # changepoint not yet known (min-less pieces before they are tagged)
TINY = 1e-30  # equality tolerance of the published operators
UNSTABLE = 1e200  # a quadratic coefficient above this aborts the fit
INF = np.inf


@numba.njit(cache=True)
def _cost(a: float, b: float, k: float, x: float) -> float:
    if x < INF:
        return a * x * x + b * x + k
    if a > 0.0:
        return INF
    if a < 0.0:
        return -INF
    return INF if b > 0.0 else k


@numba.njit(cache=True)
def _argmin(a: float, b: float, lo: float, hi: float) -> float:
    if a > 0.0 or a < 0.0:
        return -b / (2.0 * a)
    if b < 0.0:
        return hi
    return lo


@numba.njit(cache=True)
def _two_roots(a: float, b: float, k: float, level: float) -> bool:
    return b * b - 4.0 * a * (k - level) > 0.0


@numba.njit(cache=True)
def _smaller_root(a: float, b: float, k: float, level: float) -> float:
    delta = b * b - 4.0 * a * (k - level)
    if a < 0.0:
        return (-b + math.sqrt(delta)) / (2.0 * a)
    return (-b - math.sqrt(delta)) / (2.0 * a)


@numba.njit(cache=True)
def _roots(a: float, b: float, k: float) -> tuple[bool, float, float]:
    """(two distinct real roots?, smaller, larger) of a x^2 + b x + k, by the published formulas."""
    delta = b * b - 4.0 * a * k
    if not delta > 0.0:
        return False, 0.0, 0.0
    root = math.sqrt(delta)
    small = (-b + root) / (2.0 * a) if a < 0.0 else (-b - root) / (2.0 * a)
    big = (-b + root) / (2.0 * a) if a > 0.0 else (-b - root) / (2.0 * a)
    return True, small, big


@numba.njit(cache=True)
def _is_point(f: np.ndarray, i: int, eps: float) -> bool:
    return f[LO, i] == eps and f[HI, i] == eps


@numba.njit(cache=True)
def _emit(f, d, n, a, b, k, lo, hi, di, pm) -> int:
    f[SQ, n], f[LI, n], f[CO, n], f[LO, n], f[HI, n], f[PM, n] = a, b, k, lo, hi, pm
    d[n] = di
    return n + 1


@numba.njit(cache=True)
def _same(f, i, g, j) -> bool:
    return f[LI, i] == g[LI, j] and f[SQ, i] == g[SQ, j] and abs(f[CO, i] - g[CO, j]) < TINY


@numba.njit(cache=True)
def _floor_candidate(a, b, k, lo, hi, eps) -> tuple[float, float]:
    """(calcium, cost) of the lowest point of a piece lying below EPS (the point itself for the point)."""
    if lo == eps and hi == eps:
        return eps, k
    x = _argmin(a, b, lo, hi)
    if x >= lo and x <= hi:
        return x, _cost(a, b, k, x)
    left, right = _cost(a, b, k, lo), _cost(a, b, k, hi)
    if right < left:
        return hi, right
    return lo, left


@numba.njit(cache=True)
def _decay(f, fd, n, gamma, eps, out, od) -> int:
    """F(c / gamma) with everything that decays below EPS folded into the point EPS.

    Ranges are multiplied by gamma (a piece crossing EPS is split there); the point takes the minimum of the
    old point and of every piece now below EPS (first one on ties), recording its calcium; pieces above
    EPS follow it unchanged.
    """
    best, best_x, best_d = INF, eps, NOT_SET
    m = 1  # out[:, 0] is the point, written last
    g2 = gamma * gamma
    for i in range(n):
        k = f[CO, i]
        if _is_point(f, i, eps):
            if k < best:
                best, best_x, best_d = k, eps, fd[i]
            continue
        a, b = f[SQ, i] / g2, f[LI, i] / gamma
        lo, hi = f[LO, i] * gamma, f[HI, i] * gamma
        if lo <= eps and hi > eps:
            # the part below EPS, then the rest from EPS (a zero-width [EPS, EPS] part counts as the point)
            x, value = _floor_candidate(a, b, k, lo, eps, eps)
            if value < best:
                best, best_x, best_d = value, x, fd[i]
            lo = eps
        if hi > eps:
            m = _emit(out, od, m, a, b, k, lo, hi, fd[i], f[PM, i])
        else:
            x, value = _floor_candidate(a, b, k, lo, hi, eps)
            if value < best:
                best, best_x, best_d = value, x, fd[i]
    _emit(out, od, 0, 0.0, 0.0, best, eps, eps, best_d, best_x)
    return m


@numba.njit(cache=True)
def _running_min(f, fd, n, eps, out, od) -> int:
    """min over x' <= x of F(x'): convex pieces while F falls, constants (holding the argmin) elsewhere."""
    m = 0
    level = INF  # the running minimum, INF while F is still falling
    start = f[LO, 0]  # left end of the piece being built
    at = eps  # where the running minimum is reached
    i = 0
    while i < n:
        if _is_point(f, i, eps):
            m = _emit(out, od, m, 0.0, 0.0, f[CO, i], eps, eps, fd[i], f[PM, i])
            level, at = f[CO, i], eps
            i += 1
            continue
        a, b, k, lo, hi = f[SQ, i], f[LI, i], f[CO, i], f[LO, i], f[HI, i]
        right = _cost(a, b, k, hi)
        if level == INF:
            x = _argmin(a, b, lo, hi)
            x_cost = _cost(a, b, k, x)
            next_ok = True
            if i + 1 < n:
                next_ok = _cost(f[SQ, i + 1], f[LI, i + 1], f[CO, i + 1], f[LO, i + 1]) - x_cost > TINY
            rises = right - x_cost > TINY and next_ok
            if x <= lo and rises:
                level, at = _cost(a, b, k, lo), lo
            elif x < hi and rises:
                if start < x:
                    m = _emit(out, od, m, a, b, k, start, x, NOT_SET, INF)
                start, at, level = x, x, x_cost
            else:
                m = _emit(out, od, m, a, b, k, start, hi, NOT_SET, INF)
                start = hi
        else:
            if _two_roots(a, b, k, level):
                x = _smaller_root(a, b, k, level)
                if lo < x and x < hi:
                    m = _emit(out, od, m, 0.0, 0.0, level, start, x, NOT_SET, at)
                    level, start = INF, x
                    i -= 1  # this piece again, now falling from x
            if right <= level + TINY and level < INF:
                m = _emit(out, od, m, 0.0, 0.0, level, start, hi, NOT_SET, at)
                level, start = INF, hi
        i += 1
    if level < INF:
        m = _emit(out, od, m, 0.0, 0.0, level, start, f[HI, n - 1], NOT_SET, at)
    return m


@numba.njit(cache=True)
def _push(out, od, m, f, fd, i, lo, hi) -> int:
    """Append piece i of f on [lo, hi]; extend the last piece instead when it is the same function and path."""
    if hi <= lo:
        return m
    if m > 0 and _same(out, m - 1, f, i) and f[PM, i] == out[PM, m - 1] and fd[i] == od[m - 1]:
        out[HI, m - 1] = hi
        return m
    return _emit(out, od, m, f[SQ, i], f[LI, i], f[CO, i], lo, hi, fd[i], f[PM, i])


@numba.njit(cache=True, inline="always")
def _min_pieces(out, od, m, f1, d1, n1, i, f2, d2, n2, j, eps) -> int:
    """The minimum of piece i of f1 and piece j of f2 on their common interval."""
    if f1[LO, i] < f2[LO, j]:
        same_left = _same(f2, j - 1, f1, i)
        lo = f2[LO, j]
    else:
        lo = f1[LO, i]
        if f2[LO, j] < f1[LO, i]:
            same_left = _same(f1, i - 1, f2, j)
        else:
            same_left = _same(f1, i - 1, f2, j - 1)
            if _is_point(f1, i - 1, eps) and _is_point(f2, j - 1, eps):
                same_left = False
    if f1[HI, i] < f2[HI, j]:
        same_right = _same(f1, i + 1, f2, j)
        hi = f1[HI, i]
    else:
        hi = f2[HI, j]
        if f2[HI, j] < f1[HI, i]:
            same_right = _same(f1, i, f2, j + 1)
        elif i + 1 >= n1 and j + 1 >= n2:
            same_right = False
        else:
            same_right = _same(f1, i + 1, f2, j + 1)
    if lo == hi:
        return m
    if _same(f1, i, f2, j):
        return _push(out, od, m, f1, d1, i, lo, hi)
    a = f1[SQ, i] - f2[SQ, j]
    b = f1[LI, i] - f2[LI, j]
    k = f1[CO, i] - f2[CO, j]
    if hi != INF and lo != -INF:
        mid = (hi + lo) / 2.0
    elif hi != INF:
        mid = hi - 1.0
    elif lo != -INF:
        mid = lo + 1.0
    else:
        mid = 0.0
    diff_mid = _cost(a, b, k, mid)
    if same_left and same_right:
        if diff_mid < 0.0:
            return _push(out, od, m, f1, d1, i, lo, hi)
        return _push(out, od, m, f2, d2, j, lo, hi)
    if a == 0.0:
        if b == 0.0:
            if k < 0.0:
                return _push(out, od, m, f1, d1, i, lo, hi)
            return _push(out, od, m, f2, d2, j, lo, hi)
        if k == 0.0:
            if b < 0.0:
                return _push(out, od, m, f1, d1, i, lo, hi)
            return _push(out, od, m, f2, d2, j, lo, hi)
        x = -k / b
        if lo < x and x < hi:
            if b > 0.0:
                m = _push(out, od, m, f1, d1, i, lo, x)
                return _push(out, od, m, f2, d2, j, x, hi)
            m = _push(out, od, m, f2, d2, j, lo, x)
            return _push(out, od, m, f1, d1, i, x, hi)
        if diff_mid < 0.0:
            return _push(out, od, m, f1, d1, i, lo, hi)
        return _push(out, od, m, f2, d2, j, lo, hi)
    diff_left = _cost(a, b, k, lo)
    diff_right = _cost(a, b, k, hi)
    two, small, big = _roots(a, b, k)
    if same_right:
        if two:
            opt = _argmin(a, b, lo, hi)
            if lo < small and small < opt and opt < hi:
                if diff_left < 0.0:
                    m = _push(out, od, m, f1, d1, i, lo, small)
                    return _push(out, od, m, f2, d2, j, small, hi)
                m = _push(out, od, m, f2, d2, j, lo, small)
                return _push(out, od, m, f1, d1, i, small, hi)
        if diff_mid < 0.0:
            return _push(out, od, m, f1, d1, i, lo, hi)
        return _push(out, od, m, f2, d2, j, lo, hi)
    if same_left:
        if two:
            opt = _argmin(a, b, lo, hi)
            if lo < opt and opt < big and big < hi:
                if diff_right < 0.0:
                    m = _push(out, od, m, f2, d2, j, lo, big)
                    return _push(out, od, m, f1, d1, i, big, hi)
                m = _push(out, od, m, f1, d1, i, lo, big)
                return _push(out, od, m, f2, d2, j, big, hi)
        if diff_mid < 0.0:
            return _push(out, od, m, f1, d1, i, lo, hi)
        return _push(out, od, m, f2, d2, j, lo, hi)
    first = second = INF
    if two:
        big_inside = lo < big and big < hi
        small_inside = lo < small and small < hi
        if big_inside:
            if small_inside and small < big:
                first, second = small, big
            else:
                first = big
        elif small_inside:
            first = small
    if second != INF:
        if a < 0.0:
            m = _push(out, od, m, f1, d1, i, lo, first)
            m = _push(out, od, m, f2, d2, j, first, second)
            return _push(out, od, m, f1, d1, i, second, hi)
        m = _push(out, od, m, f2, d2, j, lo, first)
        m = _push(out, od, m, f1, d1, i, first, second)
        return _push(out, od, m, f2, d2, j, second, hi)
    if first != INF:
        before = (lo + first) / 2.0 if lo != -INF else first - 1.0
        after = (hi + first) / 2.0 if hi != INF else first + 1.0
        diff_before = _cost(a, b, k, before)
        diff_after = _cost(a, b, k, after)
        if diff_before < 0.0:
            if diff_after < 0.0:
                return _push(out, od, m, f1, d1, i, lo, hi)
            m = _push(out, od, m, f1, d1, i, lo, first)
            return _push(out, od, m, f2, d2, j, first, hi)
        if diff_after < 0.0:
            m = _push(out, od, m, f2, d2, j, lo, first)
            return _push(out, od, m, f1, d1, i, first, hi)
        return _push(out, od, m, f2, d2, j, lo, hi)
    if hi == INF:
        opt = _argmin(a, b, lo, hi)
        diff = _cost(a, b, k, opt + 1.0) if lo < opt and opt < hi else _cost(a, b, k, lo + 1.0)
    else:
        diff = diff_right if abs(diff_mid) < TINY else diff_mid
    if diff < 0.0:
        return _push(out, od, m, f1, d1, i, lo, hi)
    return _push(out, od, m, f2, d2, j, lo, hi)


@numba.njit(cache=True)
def _min_envelope(f1, d1, n1, f2, d2, n2, eps, out, od) -> int:
    """Pointwise minimum of two cost functions (both start with the point EPS)."""
    m, i, j = 0, 0, 0
    if f1[LO, 0] == f1[HI, 0] and f2[LO, 0] == f2[HI, 0]:
        if f1[CO, 0] < f2[CO, 0]:
            m = _emit(out, od, m, 0.0, 0.0, f1[CO, 0], f1[LO, 0], f1[HI, 0], d1[0], f1[PM, 0])
        else:
            m = _emit(out, od, m, 0.0, 0.0, f2[CO, 0], f2[LO, 0], f2[HI, 0], d2[0], f2[PM, 0])
        i, j = 1, 1
    while i < n1 and j < n2:
        m = _min_pieces(out, od, m, f1, d1, n1, i, f2, d2, n2, j, eps)
        end = out[HI, m - 1]
        if f1[HI, i] == end:
            i += 1
        if f2[HI, j] == end:
            j += 1
    return m


@numba.njit(cache=True)
def _piece_min(f, i) -> float:
    """Lowest cost of piece i on its interval."""
    x = _argmin(f[SQ, i], f[LI, i], f[LO, i], f[HI, i])
    if x < f[LO, i]:
        x = f[LO, i]
    elif f[HI, i] < x:
        x = f[HI, i]
    return _cost(f[SQ, i], f[LI, i], f[CO, i], x)


@numba.njit(cache=True)
def _best_changepoint(f, fd, n) -> int:
    """``data_i`` of the piece holding the global minimum (first piece on ties)."""
    best, best_d = INF, NOT_SET
    for i in range(n):
        value = _piece_min(f, i)
        if value < best:
            best, best_d = value, fd[i]
    return best_d


@numba.njit(cache=True, nogil=True)
def changepoint_chain(y: np.ndarray, gamma: float, lam: float, eps: float) -> np.ndarray:
    """Per frame t, the last changepoint before t of the path at F_t's global minimum (-1: none).

    Raises when a quadratic coefficient exceeds 1e200 (FastLZero's "numerically unstable" exit).
    """
    n_frames = y.size
    best_seg = np.empty(n_frames, dtype=np.int64)
    cap = 64
    f, fd = np.empty((6, cap)), np.empty(cap, dtype=np.int64)
    y0 = y[0]
    n = _emit(f, fd, 0, 0.0, 0.0, (y0 - eps) * (y0 - eps) / 2.0, eps, eps, -1, 0.0)
    n = _emit(f, fd, n, 0.5, -y0, y0 * y0 / 2.0, eps, INF, -1, 0.0)
    best_seg[0] = _best_changepoint(f, fd, n)
    stay, std = np.empty((6, cap)), np.empty(cap, dtype=np.int64)
    spike, spd = np.empty((6, cap)), np.empty(cap, dtype=np.int64)
    for t in range(1, n_frames):
        # one step yields at most n + 1 no-spike pieces, 2 n + 4 spike pieces and 9 n + 16 envelope pieces
        if 10 * n + 16 > cap:
            cap = 2 * (10 * n + 16)
            f2, fd2 = np.empty((6, cap)), np.empty(cap, dtype=np.int64)
            f2[:, :n], fd2[:n] = f[:, :n], fd[:n]
            f, fd = f2, fd2
            stay, std = np.empty((6, cap)), np.empty(cap, dtype=np.int64)
            spike, spd = np.empty((6, cap)), np.empty(cap, dtype=np.int64)
        n_stay = _decay(f, fd, n, gamma, eps, stay, std)
        n_spike = _running_min(stay, std, n_stay, eps, spike, spd)
        for i in range(n_spike):
            if spike[HI, i] > eps:
                spd[i] = t - 1
                spike[CO, i] += lam
        n = _min_envelope(spike, spd, n_spike, stay, std, n_stay, eps, f, fd)
        yt = y[t]
        square_k = yt * yt / 2.0
        floor_k = (yt - eps) * (yt - eps) / 2.0
        best, best_d = INF, NOT_SET
        for i in range(n):
            if f[HI, i] > eps:
                f[SQ, i] += 0.5
                f[LI, i] += -yt
                f[CO, i] += square_k
            if _is_point(f, i, eps):
                f[CO, i] += floor_k
            if f[SQ, i] > UNSTABLE:
                raise ValueError("FastLZero: numerically unstable cost function; choose a smaller lambda")
            value = _piece_min(f, i)
            if value < best:
                best, best_d = value, fd[i]
        best_seg[t] = best_d
    return best_seg


@numba.njit(cache=True, nogil=True)
def _fit_segment(y, start, end, gamma, eps, calcium, rss_rel_margin):
    """Refit calcium on frames [start, end): best decaying fit of a prefix, EPS after it."""
    length = end - start
    tail = np.empty(length + 1)  # tail[L] = 0.5 * sum_{k >= L} (y - eps)^2
    tail[length] = 0.0
    for k in range(length - 1, -1, -1):
        r = y[start + k] - eps
        tail[k] = tail[k + 1] + 0.5 * r * r
    coefs = np.empty(length)
    approx = np.empty(length)
    g2 = gamma * gamma
    ss, geo, head_sq = 0.0, 0.0, 0.0
    best = INF
    for i in range(length):
        n_head = i + 1
        prefactor = (g2 - 1.0) / (math.pow(gamma, 2.0 * (1 - n_head)) * (math.pow(gamma, 2.0 * n_head) - 1.0))
        ss = ss / gamma + y[start + i]
        coef = ss * prefactor
        # the end value must let the decay meet the floor (gamma * c <= EPS) unless the segment ends here
        if (coef > eps / gamma and start + i < end - 1) or coef < eps:
            coef = eps
        coefs[i] = coef
        geo = geo / g2 + 1.0  # sum_{m < n_head} gamma^(-2 m)
        head_sq += y[start + i] * y[start + i]
        value = 0.5 * (head_sq - 2.0 * coef * ss + coef * coef * geo) + tail[n_head]
        approx[i] = value
        if value < best:
            best = value
    # the closed form decides unless candidates are within round-off; those are summed as published
    margin = rss_rel_margin * (tail[0] + head_sq + abs(best)) + 1e-300
    fitted = np.empty(length)
    best_exact, best_i = INF, -1
    for i in range(length):
        if not approx[i] <= best + margin:
            continue
        _fill(fitted, coefs[i], i + 1, gamma, eps)
        rss = 0.0
        for k in range(length):
            rss += 0.5 * (y[start + k] - fitted[k]) ** 2
        if rss < best_exact:
            best_exact, best_i = rss, i
    if best_i < 0:  # every candidate overflowed; keep the one-frame fit
        best_i = 0
    _fill(fitted, coefs[best_i], best_i + 1, gamma, eps)
    calcium[start:end] = fitted


@numba.njit(cache=True)
def _fill(fitted, end_value, n_head, gamma, eps):
    fitted[n_head - 1] = end_value
    for k in range(n_head - 2, -1, -1):
        fitted[k] = fitted[k + 1] / gamma
    fitted[n_head:] = eps


@numba.njit(cache=True, nogil=True)
def estimate_spikes(y: np.ndarray, gamma: float, lam: float, eps: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """(spike frames (sorted), refitted calcium (T,)) of a trace; see the module docstring.

    Event magnitudes are ``calcium[s] - gamma * calcium[s - 1]`` at each spike frame s.
    """
    n_frames = y.size
    best_seg = changepoint_chain(y, gamma, lam, eps)
    ends = []
    end = n_frames - 1
    while end >= 0:
        end = best_seg[end]
        ends.append(end)
    calcium = np.empty(n_frames)
    seg_end = n_frames
    for prev in ends:
        _fit_segment(y, prev + 1, seg_end, gamma, eps, calcium, 1e-9)
        seg_end = prev + 1
    spikes = np.empty(len(ends) - 1, dtype=np.int64)
    for i in range(len(ends) - 1):
        spikes[len(ends) - 2 - i] = ends[i] + 1
    return spikes, calcium


@numba.njit(cache=True, nogil=True)
def event_magnitudes(y: np.ndarray, gamma: float, lam: float, eps: float = 1e-4) -> np.ndarray:
    """(T,) positive event magnitudes ``max(c[s] - gamma c[s-1], 0)`` at the spike frames, 0 elsewhere."""
    spikes, calcium = estimate_spikes(y, gamma, lam, eps)
    out = np.zeros(y.size)
    for s in spikes:
        out[s] = max(calcium[s] - gamma * calcium[s - 1], 0.0)
    return out
