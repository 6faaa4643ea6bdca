"""Stand-ins for the DeepSpeed classes that DeepSpeed pickles (deepspeed-formats.md §2.6), so that
Debian's torch.load can read DeepSpeed checkpoints without DeepSpeed installed. Plain data holders:
they only record what the pickle sets."""
import dataclasses
import enum
import sys
import types


def _module(name):
    if name not in sys.modules:
        sys.modules[name] = types.ModuleType(name)
    return sys.modules[name]


class ZeroStageEnum(int, enum.Enum):
    disabled = 0
    optimizer_states = 1
    gradients = 2
    weights = 3
    max_stage = 3


class LossScaler:
    pass


class DynamicLossScaler:
    pass


@dataclasses.dataclass
class fragment_address:  # noqa: N801 (DeepSpeed's name)
    numel: int
    start: int


class SubparamShape:
    pass


def install():
    for name in ["deepspeed", "deepspeed.runtime", "deepspeed.runtime.zero", "deepspeed.runtime.fp16",
                 "deepspeed.utils", "deepspeed.checkpoint"]:
        _module(name)
    _module("deepspeed.runtime.zero.config").ZeroStageEnum = ZeroStageEnum
    m = _module("deepspeed.runtime.fp16.loss_scaler")
    m.LossScaler, m.DynamicLossScaler = LossScaler, DynamicLossScaler
    _module("deepspeed.utils.tensor_fragment").fragment_address = fragment_address
    _module("deepspeed.checkpoint.universal_checkpoint").SubparamShape = SubparamShape
    ZeroStageEnum.__module__ = "deepspeed.runtime.zero.config"
    LossScaler.__module__ = DynamicLossScaler.__module__ = "deepspeed.runtime.fp16.loss_scaler"
    fragment_address.__module__ = "deepspeed.utils.tensor_fragment"
    SubparamShape.__module__ = "deepspeed.checkpoint.universal_checkpoint"
