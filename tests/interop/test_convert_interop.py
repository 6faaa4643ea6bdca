"""DeepSpeed-free torch.load of `ucp convert` output (Debian's python3-torch 1.13 + ds_stubs.py).

Every fixture case is converted with the real `ucp` binary; then every file of DeepSpeed's own
global_step5_universal/ and its counterpart from ucp load with torch.load and compare equal: same
types and key order, equal scalars, tensors with the same dtype, shape, stride, storage offset,
requires_grad and bytes (whole storages too), and storage sharing inside a file preserved.
"""
import os
import pathlib
import subprocess
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
import ds_stubs  # noqa: E402

ds_stubs.install()

SOURCE = pathlib.Path(os.environ.get("UCP_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
UCP = os.environ.get("UCP_BIN", "ucp")
CASES = sorted(p.name for p in (SOURCE / "fixtures" / "deepspeed").iterdir()
               if (p / "checkpoint" / "global_step5_universal").is_dir())


def raw(t):
    t = t.detach()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.contiguous().numpy().tobytes()


def storage_raw(t):
    s = t.detach().storage()
    return bytes(s.untyped() if hasattr(s, "untyped") else s._untyped())


class Compare:
    def __init__(self):
        self.storages_a, self.storages_b = {}, {}

    def __call__(self, a, b, path):
        assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"
        if isinstance(a, torch.Tensor):
            assert (a.dtype, a.shape, a.stride(), a.storage_offset(), a.requires_grad) == \
                   (b.dtype, b.shape, b.stride(), b.storage_offset(), b.requires_grad), path
            assert raw(a) == raw(b), f"{path}: tensor bytes differ"
            assert storage_raw(a) == storage_raw(b), f"{path}: storage bytes differ"
            # The same storage sharing: storage i of ours is storage i of theirs.
            ka, kb = a.storage().data_ptr(), b.storage().data_ptr()
            ia = self.storages_a.setdefault(ka, len(self.storages_a))
            ib = self.storages_b.setdefault(kb, len(self.storages_b))
            assert ia == ib, f"{path}: storage sharing differs"
        elif isinstance(a, dict):
            assert list(a.keys()) == list(b.keys()), f"{path}: keys {list(a)} vs {list(b)}"
            for k in a:
                self(a[k], b[k], f"{path}[{k!r}]")
        elif isinstance(a, (list, tuple)):
            assert len(a) == len(b), f"{path}: length"
            for i, (x, y) in enumerate(zip(a, b)):
                self(x, y, f"{path}[{i}]")
        elif hasattr(a, "__dict__") and not isinstance(a, type):
            self(vars(a), vars(b), f"{path}.__dict__")
        else:
            assert a == b or (a != a and b != b), f"{path}: {a!r} vs {b!r}"


@pytest.mark.parametrize("case", CASES)
def test_converted_files_load_like_deepspeeds(case, tmp_path):
    tag = SOURCE / "fixtures" / "deepspeed" / case / "checkpoint" / "global_step5"
    out = tmp_path / "global_step5_universal"
    r = subprocess.run([UCP, "convert", str(tag), str(out), "--no-fsync"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    theirs = tag.parent / "global_step5_universal"
    files = sorted(p.relative_to(theirs) for p in theirs.rglob("*.pt"))
    assert files
    for rel in files:
        a = torch.load(out / rel, map_location="cpu")
        b = torch.load(theirs / rel, map_location="cpu")
        Compare()(a, b, str(rel))
    assert (tmp_path / "latest_universal").read_text() == (tag.parent / "latest_universal").read_text()
