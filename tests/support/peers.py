"""The peers of issue 23, written from their papers (spec/peers.md) as plain functions over a
velocity field: bench / test-only, never shipped.

Convention (rectified flow): x_t = (1 - t) x0 + t eps, t = sigma in [0, 1], velocity
v = eps - x0 = (x_t - x0_hat) / t, dx/dt = v. A velocity is a callable ``v(x, t) -> v`` with
x [B, C, H, W] and t a float (read at ``T_MIN`` for t = 0, as ComfyUI's FlipSigmas' first level);
grids are the model's own descending sigmas (ComfyUI SIGMAS, ending at 0), flipped to invert.
"""
from __future__ import annotations

import torch

T_MIN = 1e-4            # FlipSigmas' first level: the velocity (x - x0) / t is not defined at t = 0


def ascending(sigmas: torch.Tensor) -> list:
    """The inversion grid of a descending SIGMAS: the same levels, flipped (its first level 0: the
    velocity there is read at T_MIN, see ``at``), so that sampling back retraces the same grid."""
    return [float(s) for s in sigmas.flip(0)]


def at(t: float) -> float:
    """The level a velocity is read at: t, or T_MIN at t = 0 (FlipSigmas' first level)."""
    return max(float(t), T_MIN)


def flow_edit(v_src, v_tar, x_src, sigmas, n_max: int, n_min: int = 0, n_avg: int = 1, generator=None):
    """FlowEdit (Kulikov et al. 2024, Algorithm 1): inversion-free editing. Over the descending grid
    t_0 > ... > t_T = 0, skipping the first T - n_max levels, the edit path moves by the difference of
    the target and source velocities evaluated on coupled noisy latents (shared noise N):
        Z_src = (1 - t) X_src + t N,   Z_tar = Z_fe + Z_src - X_src,
        Z_fe <- Z_fe + (t_{i+1} - t_i) mean_N [ v_tar(Z_tar, t) - v_src(Z_src, t) ].
    The last n_min levels sample Z_tar (formed at the first of them) with the target velocity alone.
    ``v_src`` / ``v_tar``: the source / target guided velocities; x_src [B, C, H, W]."""
    ts = [float(s) for s in sigmas]
    T = len(ts) - 1
    z_fe, z_tar = x_src.clone(), None
    for i in range(T):
        if T - i > n_max:
            continue
        t, dt = ts[i], ts[i + 1] - ts[i]
        if T - i > n_min:
            v_delta = torch.zeros_like(x_src)
            for _ in range(n_avg):
                noise = torch.randn(x_src.shape, generator=generator).to(x_src)
                z_src = (1 - t) * x_src + t * noise
                # Z_tar = Z_src + (Z_fe - X_src): bitwise Z_src while Z_fe = X_src (the identity exact)
                v_delta += (v_tar(z_src + (z_fe - x_src), t) - v_src(z_src, t)) / n_avg
            z_fe = z_fe + dt * v_delta
        else:
            if z_tar is None:
                noise = torch.randn(x_src.shape, generator=generator).to(x_src)
                z_tar = (1 - t) * x_src + t * noise + (z_fe - x_src)
            z_tar = z_tar + dt * v_tar(z_tar, t)
    return z_fe if z_tar is None else z_tar


def euler_ode(v, x, ts):
    """Euler steps of dx/dt = v along the grid ts (ascending: inversion, descending: sampling)."""
    for t, t_next in zip(ts[:-1], ts[1:]):
        x = x + (t_next - t) * v(x, t)
    return x


def rf_solver_ode(v, x, ts):
    """RF-Solver (Wang et al. 2024, the second-order Taylor step): the time derivative of v by a
    finite difference over half a step, two model calls per step:
        v0 = v(x_i, t_i),  x_mid = x_i + (D/2) v0,  v_mid = v(x_mid, t_i + D/2),
        x_{i+1} = x_i + D v0 + (D^2 / 2) (v_mid - v0) / (D/2)   (= x_i + D v_mid)."""
    for t, t_next in zip(ts[:-1], ts[1:]):
        d = t_next - t
        v0 = v(x, t)
        v_mid = v(x + 0.5 * d * v0, t + 0.5 * d)
        x = x + d * v0 + 0.5 * d * d * (v_mid - v0) / (0.5 * d)
    return x


def fireflow_ode(v, x, ts):
    """FireFlow (Deng et al. 2024): the midpoint step whose first-stage velocity is the previous
    step's midpoint velocity (one model call per step after the first):
        x_mid = x_i + (D/2) v_prev,  v_mid = v(x_mid, t_i + D/2),  x_{i+1} = x_i + D v_mid."""
    v_prev = None
    for t, t_next in zip(ts[:-1], ts[1:]):
        d = t_next - t
        if v_prev is None:
            v_prev = v(x, t)
        v_prev = v(x + 0.5 * d * v_prev, t + 0.5 * d)
        x = x + d * v_prev
    return x


SOLVERS = {"euler": euler_ode, "rf_solver": rf_solver_ode, "fireflow": fireflow_ode}


def rf_inversion(v_null, v_tar, y0, sigmas, gamma: float, eta: float, eta_start: int = 0, eta_stop: int = 6,
                 generator=None):
    """RF-Inversion (Rout et al. 2024, Algorithms 1-2): a controlled forward ODE image -> noise toward
    a fixed noise sample y1 with strength gamma, then a controlled reverse ODE noise -> image toward
    the source y0 with strength eta on the reverse steps [eta_start, eta_stop):
        forward  (t up):   v = v_null(Y, t) + gamma ((y1 - Y) / (1 - t) - v_null(Y, t))
        reverse (t down):  v = v_tar(X, t)  + eta_t ((X - y0) / t      - v_tar(X, t))
    gamma = 0 is the Euler inversion, eta = 0 plain Euler sampling. Returns (edited, inverted)."""
    up = ascending(sigmas)
    y1 = torch.randn(y0.shape, generator=generator).to(y0)
    y = y0.clone()
    for t, t_next in zip(up[:-1], up[1:]):
        u = v_null(y, t)
        if gamma:
            u = u + gamma * ((y1 - y) / (1 - t) - u)
        y = y + (t_next - t) * u
    down = [float(s) for s in sigmas]
    x = y
    for i, (t, t_next) in enumerate(zip(down[:-1], down[1:])):
        u = v_tar(x, t)
        e = eta if eta_start <= i < eta_stop else 0.0
        if e:
            u = u + e * ((x - y0) / t - u)
        x = x + (t_next - t) * u
    return x, y


def invert_edit(v_null, v_tar, x, sigmas, solver: str = "rf_solver"):
    """Inversion then sampling with one ODE solver (RF-Solver / FireFlow editing without feature
    sharing): the source to the grid's top level with the null velocity, back with the target's.
    Returns (edited, inverted)."""
    ode = SOLVERS[solver]
    y = ode(v_null, x, ascending(sigmas))
    return ode(v_tar, y, [float(s) for s in sigmas]), y
