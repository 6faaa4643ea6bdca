"""Checkpoint.diff: parameter sets, shapes, dtypes and values of two checkpoints, state by state."""
import dataclasses

import numpy as np

_STATES = ("fp32", "exp_avg", "exp_avg_sq")


@dataclasses.dataclass
class DiffReport:
    only_in_self: list = dataclasses.field(default_factory=list)   # parameter names
    only_in_other: list = dataclasses.field(default_factory=list)
    shape_mismatch: list = dataclasses.field(default_factory=list)  # (name, self shape, other shape)
    state_mismatch: list = dataclasses.field(default_factory=list)  # (name, state, present in self, in other)
    value_mismatch: list = dataclasses.field(default_factory=list)  # (name, state, max |a - b|, elements differing)
    compared: int = 0  # (parameter, state) pairs compared element by element

    @property
    def equal(self):
        return not (self.only_in_self or self.only_in_other or self.shape_mismatch or self.state_mismatch
                    or self.value_mismatch)

    def __bool__(self):  # truthy when the checkpoints differ, as `diff` exits non-zero
        return not self.equal


def _as_float64(array):
    return array.astype(np.float64, copy=False)


def diff(self, other, states=_STATES, atol=0.0, rtol=0.0):
    """Compares `self` with `other` (both ucp.Checkpoint): which parameters each has, their shapes,
    which of `states` each stores, and the values (upcast to float64; equal within atol + rtol·|b|,
    NaNs equal to NaNs). Weights-only sources (safetensors, .bin) have only 'fp32'; a state missing
    on one side is reported only when the other side has it and both are optimizer checkpoints."""
    report = DiffReport()
    names = set(self.names())
    other_names = set(other.names())
    report.only_in_self = sorted(names - other_names)
    report.only_in_other = sorted(other_names - names)
    weights_only = {"safetensors", "bin"}
    check_presence = self.kind not in weights_only and other.kind not in weights_only
    for name in self.names():
        if name not in other_names:
            continue
        a, b = self[name], other[name]
        if tuple(a.shape) != tuple(b.shape):
            report.shape_mismatch.append((name, a.shape, b.shape))
            continue
        for state in states:
            in_a, in_b = state in a.states, state in b.states
            if in_a != in_b:
                if check_presence:
                    report.state_mismatch.append((name, state, in_a, in_b))
                continue
            if not in_a:
                continue
            x = _as_float64(self.tensor(name, state, upcast=True))
            y = _as_float64(other.tensor(name, state, upcast=True))
            close = np.isclose(x, y, atol=atol, rtol=rtol, equal_nan=True)
            report.compared += 1
            if not close.all():
                with np.errstate(invalid="ignore"):
                    delta = float(np.nanmax(np.abs(x - y))) if x.size else 0.0
                report.value_mismatch.append((name, state, delta, int((~close).sum())))
    return report
