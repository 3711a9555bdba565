"""Sigma grids for the core's analytic-oracle tests (tests/core): the SD1.5 table's DDIM grid for
VE models, a uniform grid on [0, 1] for flow, and the normalized time grid the sampler reads."""
import torch

from dreamsampler_core.schedule import ddim_uniform, discrete_timestep, normalized_times, scaled_linear_sigmas

TABLE = scaled_linear_sigmas()


def grid(kind: str, steps: int) -> torch.Tensor:
    if kind == "ve":
        return ddim_uniform(TABLE, steps)
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)


def time_grid(kind: str, sigmas: torch.Tensor):
    """(spans, times) of a grid in normalized time, as a host hands them to the sampler."""
    if kind == "ve":
        t = normalized_times(sigmas, lambda s: discrete_timestep(TABLE, s)) / 999.0
    else:
        t = normalized_times(sigmas, lambda s: torch.as_tensor(s, dtype=torch.float64))
    return t[:-1] - t[1:], t[:-1]
