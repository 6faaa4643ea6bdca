"""ucp: read DeepSpeed ZeRO checkpoints, Universal Checkpoints and weight exports as numpy arrays.

    import ucp
    ckpt = ucp.open("ckpt/global_step5")          # ZeRO folder, UCP folder, .safetensors, .bin, .h5
    ckpt.kind, ckpt.step, ckpt.topology           # 'zero', 5, {'dp': 2, ...}
    for p in ckpt.params:                          # name, shape, dtype, partitioning, states, ...
        print(p.name, p.shape, p.dtype, p.partitioning)
    w = ckpt.tensor("embed.weight")                # fp32 master weight, zero-copy where possible
    m = ckpt.tensor("embed.weight", state="exp_avg")
    report = ckpt.diff(ucp.open("ckpt/global_step5_universal"))   # as `ucp diff`; report.equal

torch is never imported. Errors: FileNotFoundError, ValueError, NotImplementedError, KeyError
(unknown parameter or state) and ucp.CorruptCheckpointError (a ValueError) for damaged files
(truncated or zero-byte shards, a UCP missing or adding a parameter folder).

Zero-copy arrays are views of the mapped file: truncating the file while such an array is alive
makes touching its lost pages kill the process (SIGBUS), as with numpy.memmap. Copy with
numpy.array(a) to keep the values independent of the file.
"""
import os as _os

from ucp import _ucp
from ucp._ucp import (  # noqa: F401  (re-exported)
    Checkpoint, CorruptCheckpointError, DiffEntry, DiffReport, Param, __version__)


def open(path, *args, **kwargs):  # noqa: A001  (ucp.open, as the module's verb)
    """Opens any checkpoint (ZeRO save or tag folder, UCP folder, .safetensors, .bin, .h5; a str
    or os.PathLike) as a ucp.Checkpoint. Keyword arguments: tag, prefer_universal."""
    return _ucp.open(_os.fspath(path), *args, **kwargs)


from ucp._verbs import (  # noqa: F401
    Result, convert, diff, export, load_state_dict, reshard, verify)

__all__ = ["open", "Checkpoint", "Param", "CorruptCheckpointError", "DiffReport", "DiffEntry",
           "__version__", "convert", "reshard", "export", "verify", "diff", "load_state_dict",
           "Result"]
