"""ucp.convert / reshard / export / verify: the CLI's verbs as functions returning result objects.

Each runs the same C++ pipeline as the command (streaming, atomic: nothing appears at the output
unless the run completes), with the GIL released. `progress` is a callable taking
(bytes_done, bytes_total, files_done, files_total), or True for a tqdm bar when tqdm is
importable (else a line on stderr), or None; an exception it raises stops a run still in progress
(nothing is left at the output) and is raised. Ctrl-C stops the run, removes what was staged and
raises KeyboardInterrupt. Errors: as ucp.open (FileNotFoundError, ValueError, ...).
"""
import json
import os
import sys

from ucp import _ucp

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "K": 2**10, "M": 2**20, "G": 2**30}


class Result:
    """What a verb did: its fields as attributes (`files`, `bytes`, `seconds`, ...) and `as_dict()`."""

    def __init__(self, verb, fields):
        self.verb = verb
        self.__dict__.update(fields)

    def as_dict(self):
        return {k: v for k, v in self.__dict__.items() if k != "verb"}

    def __repr__(self):
        inner = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"ucp.Result[{self.verb}]({inner})"


def _bytes(size):
    if size is None:
        return 0
    if isinstance(size, int):
        if size <= 0:
            raise ValueError(f"max_shard_size: expected a size above 0 bytes, got {size}")
        return size
    text = str(size).strip().upper().replace(" ", "")
    number = text.rstrip("KMGTIB")
    unit = text[len(number):]
    try:
        value = int(float(number) * _UNITS[unit])
    except (KeyError, ValueError):
        raise ValueError(
            f"max_shard_size: expected e.g. 5GB, 2GiB or a byte count, got {size!r}") from None
    if value <= 0:
        raise ValueError(f"max_shard_size: expected a size above 0 bytes, got {size!r}")
    return value


def _progress(progress, what):
    if progress is None or progress is False:
        return None
    if callable(progress):
        return progress
    try:
        from tqdm import tqdm
    except ImportError:
        def line(done, total, files_done, files_total):
            sys.stderr.write(f"\r{what}: {done}/{total} bytes, {files_done}/{files_total} files")
            if done >= total:
                sys.stderr.write("\n")
        return line
    bar = {}

    def update(done, total, files_done, files_total):
        if "bar" not in bar:
            bar["bar"] = tqdm(total=total, unit="B", unit_scale=True, desc=what)
        bar["bar"].update(done - bar["bar"].n)
        if done >= total:
            bar["bar"].close()
    return update


def convert(src, out=None, *, tag=None, threads=0, force=False, fsync=True, write_latest=True,
            progress=None):
    """DeepSpeed ZeRO checkpoint `src` (save or tag folder) -> the Universal Checkpoint folder `out`
    (default <save folder>/<tag>_universal), as `ucp convert`. Returns a Result (output,
    latest_universal, num_files, bytes, seconds, zero_stage, params)."""
    r = _ucp._convert(str(src), "" if out is None else str(out), tag or "", int(threads),
                      bool(force), bool(fsync), bool(write_latest), _progress(progress, "convert"))
    return Result("convert", r)


def reshard(src, out, *, dp, tp=0, autoep_size=0, zero_stage=None, tag=None, input_tag=None,
            threads=0, force=False, fsync=True, progress=None):
    """A UCP or ZeRO folder -> the DeepSpeed ZeRO checkpoint DeepSpeed saves at data-parallel size
    `dp` (and `tp`, `autoep_size`, `zero_stage`; 0 / None keep the source's), as `ucp reshard`.
    Returns a Result (output, tag, num_files, bytes, seconds, zero_stage, dp, tp, ep)."""
    r = _ucp._reshard(str(src), str(out), int(dp), int(tp), int(autoep_size),
                      -1 if zero_stage is None else int(zero_stage), tag or "", input_tag or "",
                      int(threads), bool(force), bool(fsync), _progress(progress, "reshard"))
    return Result("reshard", r)


def export(src, out, *, format="safetensors", dtype=None, max_shard_size=None,
           moe_layout="fused", tag=None, exclude_frozen=False, threads=0, force=False, fsync=True,
           progress=None):
    """The model weights of any checkpoint -> safetensors / bin / hdf5 files in `out`, as
    `ucp export`. Returns a Result (output, files, num_tensors, bytes, seconds, source_kind, step,
    notes, warnings)."""
    r = _ucp._export(str(src), str(out), format, dtype or "", _bytes(max_shard_size), moe_layout,
                     tag or "", bool(exclude_frozen), int(threads), bool(force), bool(fsync),
                     _progress(progress, "export"))
    return Result("export", r)


def verify(path, *, tag=None, crc=True):
    """Checks a checkpoint folder as `ucp verify --json` (docs/json.md): a Result whose fields are
    that document's (ok, problems, skipped, ...)."""
    return Result("verify", json.loads(_ucp._verify(str(path), tag or "", bool(crc))))


def diff(a, b, **kwargs):
    """Compares two checkpoints of any kinds, as `ucp diff`: ucp.open(a).diff(ucp.open(b), ...)
    (keyword arguments as Checkpoint.diff). Returns the DiffReport (.equal, .entries, .counts)."""
    return _ucp.open(os.fspath(a)).diff(_ucp.open(os.fspath(b)), **kwargs)


def load_state_dict(path, dtype=None, *, tag=None):
    """The drop-in for DeepSpeed's get_fp32_state_dict_from_zero_checkpoint(path, tag): the model's
    weights as zero_to_fp32.py gathers them (fp32 masters, frozen parameters, buffers, a tied
    parameter under both names; same keys, order and dtypes) from any checkpoint ucp reads, without
    loading whole shards. numpy arrays (read-only, zero-copy where a tensor is one run of a file;
    bf16 as uint16 bit patterns) unless torch is importable, then torch tensors (copies, as
    DeepSpeed returns). `dtype` ("f32", "bf16", "f16") casts floating tensors."""
    entries = _ucp._state_dict(str(path), tag or "", dtype or "")
    try:
        import torch
    except ImportError:
        torch = None
    if torch is None:
        return {name: array for name, array, _ in entries}
    import numpy
    tensors, by_array = {}, {}
    for name, array, kind in entries:
        if id(array) not in by_array:
            copy = numpy.array(array)
            if kind == "bf16":
                by_array[id(array)] = torch.from_numpy(copy.view(numpy.int16)).view(torch.bfloat16)
            else:
                by_array[id(array)] = torch.from_numpy(copy)
        tensors[name] = by_array[id(array)]
    return tensors
