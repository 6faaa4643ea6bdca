"""Interop of ucp's torch.save reader and writer with Debian's real torch (python3-torch 1.13).

1. Every .pt/.bin file of fixtures/deepspeed parses in C++ with a tree equal to torch.load's (key
   order, types, scalar values) and every tensor bitwise equal (dtype, shape, stride, offset, bytes).
2. Files written by the C++ writer (a rewrite of each fixture, and a sample tree with every value
   kind) load with torch.load to equal values; read → write → read is the identity.
"""
import collections
import json
import math
import os
import pathlib
import subprocess
import struct
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
import ds_stubs  # noqa: E402

ds_stubs.install()

SOURCE = pathlib.Path(os.environ.get("UCP_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
TOOL = os.environ.get("UCP_TORCH_TOOL", "torch_tool")
FIXTURES = sorted(p for p in (SOURCE / "fixtures" / "deepspeed").rglob("*") if p.suffix in (".pt", ".bin"))

DTYPES = {"f64": torch.float64, "f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16,
          "i64": torch.int64, "i32": torch.int32, "i16": torch.int16, "i8": torch.int8, "u8": torch.uint8,
          "bool": torch.bool}


def tool(*args):
    r = subprocess.run([TOOL, *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def dump(path, prefix):
    tool("dump", path, prefix)
    with open(f"{prefix}.json") as f:
        tree = json.load(f)
    with open(f"{prefix}.bin", "rb") as f:
        blob = f.read()
    return tree, blob


def tensor_bytes(t):
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def le_int(hex_bytes):
    return int.from_bytes(bytes.fromhex(hex_bytes), "little", signed=True)


def qualname(obj):
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


class Checker:
    """Walks the C++ JSON tree and the torch.load object side by side; asserts equality."""

    def __init__(self, blob):
        self.blob = blob

    def fail(self, path, msg):
        raise AssertionError(f"at {path or '<root>'}: {msg}")

    def check(self, j, o, path=""):
        if j is None:
            return o is None or self.fail(path, f"expected None, got {type(o)}")
        if isinstance(j, bool):
            if type(o) is not bool or o != j:
                self.fail(path, f"bool {j} vs {o!r}")
            return
        if isinstance(j, int):
            if type(o) is not int or o != j:
                self.fail(path, f"int {j} vs {o!r}")
            return
        if isinstance(j, float):
            if type(o) is not float or struct.pack("<d", o) != struct.pack("<d", j):
                self.fail(path, f"float {j!r} vs {o!r}")
            return
        if isinstance(j, str):
            if type(o) is not str or o != j:
                self.fail(path, f"str {j!r} vs {o!r}")
            return
        if isinstance(j, list):
            if type(o) is not list or len(o) != len(j):
                self.fail(path, f"list of {len(j)} vs {type(o).__name__}")
            for i, (a, b) in enumerate(zip(j, o)):
                self.check(a, b, f"{path}[{i}]")
            return
        (tag,) = [k for k in j if k not in ("state", "new", "args")][:1] or [None]
        v = j[tag]
        if tag == "bigint":
            if type(o) is not int or o != le_int(v):
                self.fail(path, f"bigint {le_int(v)} vs {o!r}")
        elif tag == "float":
            ok = type(o) is float and ((v == "nan" and math.isnan(o)) or (v == "inf" and o == math.inf)
                                       or (v == "-inf" and o == -math.inf))
            ok or self.fail(path, f"float {v} vs {o!r}")
        elif tag == "bytes":
            if type(o) is not bytes or o != bytes.fromhex(v):
                self.fail(path, f"bytes {v} vs {o!r}")
        elif tag == "tuple":
            if type(o) is not tuple or len(o) != len(v):
                self.fail(path, f"tuple of {len(v)} vs {type(o).__name__} {o!r}")
            for i, (a, b) in enumerate(zip(v, o)):
                self.check(a, b, f"{path}({i})")
        elif tag in ("dict", "odict"):
            want = dict if tag == "dict" else collections.OrderedDict
            if type(o) is not want:
                self.fail(path, f"{tag} vs {type(o).__name__}")
            keys = list(o.keys())
            if len(keys) != len(v):
                self.fail(path, f"{len(v)} keys vs {len(keys)}")
            for i, ((jk, jv), ok_) in enumerate(zip(v, keys)):
                self.check(jk, ok_, f"{path}.key[{i}]")
                self.check(jv, o[ok_], f"{path}[{ok_!r}]")
            attrs = {k: val for k, val in vars(o).items()} if tag == "odict" else {}
            if "state" in j:
                for k, sv in j["state"]["dict"]:
                    k in attrs or self.fail(path, f"missing attribute {k}")
                    self.check(sv, attrs[k], f"{path}.{k}")
            elif attrs:
                self.fail(path, f"unexpected attributes {list(attrs)}")
        elif tag in ("set", "frozenset"):
            want = set if tag == "set" else frozenset
            if type(o) is not want or len(o) != len(v):
                self.fail(path, f"{tag} vs {o!r}")
            # Items are scalars in practice: compare by value.
            if set(map(json.dumps, v)) != set(map(json.dumps, o)):
                self.fail(path, f"{tag} items {v} vs {o!r}")
        elif tag == "global":
            if isinstance(o, torch.dtype):
                str(o) == v or self.fail(path, f"dtype {v} vs {o}")
            elif qualname(o) != v:
                self.fail(path, f"global {v} vs {o!r}")
        elif tag == "object":
            self.check_object(j, o, path)
        elif tag == "tensor":
            self.check_tensor(v, o, path)
        else:
            self.fail(path, f"unknown JSON tag {tag}")

    def check_object(self, j, o, path):
        cls, args = j["object"], j["args"]
        if cls == "torch.Size":
            if type(o) is not torch.Size or list(o) != args[0]["tuple"]:
                self.fail(path, f"torch.Size {args} vs {o!r}")
        elif cls in ("builtins.getattr", "__builtin__.getattr"):  # enum member by name
            if qualname(o) != args[0]["global"] or o.name != args[1]:
                self.fail(path, f"{args} vs {o!r}")
        elif cls.endswith("ZeroStageEnum"):
            if not isinstance(o, enum.Enum) or o.value != args[0]:
                self.fail(path, f"enum value {args} vs {o!r}")
        else:
            qualname(o) == cls or self.fail(path, f"object {cls} vs {qualname(o)}")
            state = j.get("state")
            attrs = vars(o)
            if state is None:
                attrs and self.fail(path, f"unexpected state {attrs}")
            else:
                self.check(state, dict(attrs), f"{path}.__dict__")

    def check_tensor(self, t, o, path):
        if not isinstance(o, torch.Tensor):
            self.fail(path, f"tensor vs {type(o).__name__}")
        if o.dtype != DTYPES[t["dtype"]] or list(o.shape) != t["shape"] or list(o.stride()) != t["stride"]:
            self.fail(path, f"tensor {t['dtype']}{t['shape']}/{t['stride']} vs {o.dtype}{list(o.shape)}/{o.stride()}")
        if o.storage_offset() != t["offset"] or o.requires_grad != t["requires_grad"]:
            self.fail(path, "storage_offset / requires_grad differ")
        start, n = t["data"]
        if tensor_bytes(o) != self.blob[start:start + n]:
            self.fail(path, "tensor bytes differ")


def assert_same(path, tmp_path):
    tree, blob = dump(path, tmp_path / "d")
    Checker(blob).check(tree, torch.load(path), "")
    return tree, blob


import enum  # noqa: E402  (used by Checker)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: str(p.relative_to(SOURCE / "fixtures" / "deepspeed")))
def test_fixture_reads_like_torch_and_rewrites(path, tmp_path):
    tree, blob = assert_same(path, tmp_path)
    out = tmp_path / path.name
    tool("rewrite", path, out)
    tree2, blob2 = assert_same(out, tmp_path)  # our file, read by torch.load
    assert tree2 == tree and blob2 == blob   # read → write → read is the identity


def test_fixture_set_is_complete():
    assert len(FIXTURES) >= 900


def test_sample_tree_loads_in_torch(tmp_path):
    out = tmp_path / "sample.pt"
    tool("sample", out)
    o = torch.load(out)
    assert list(o) == ["none", "true", "false", "ints", "floats", "unicode", "bytes", "empty_bytes", "tuples",
                       "long_list", "int_keys", "odict", "set", "frozenset", "dtype", "size", "stage", "loss_scaler",
                       "tensors"]
    assert o["none"] is None and o["true"] is True and o["false"] is False
    assert o["ints"] == [0, 255, 256, 65535, 65536, -1, 2**31 - 1, 2**31, -2**31 - 1, 2**62, -2**63, 2**70]
    f = o["floats"]
    assert f[0] == 1.5 and math.copysign(1, f[1]) == -1 and f[2] == 1e-300 and f[3] == math.inf and math.isnan(f[4])
    assert o["unicode"] == "héllo ∑"
    assert o["bytes"] == b"\x00\xff abc\x80" and o["empty_bytes"] == b""
    assert o["tuples"] == [(), (1,), (1, 2, 3), (1, 2, 3, 4, 5)]
    assert o["long_list"] == list(range(1500))
    assert o["int_keys"] == {0: "zero", 7: "seven"}
    assert type(o["odict"]) is collections.OrderedDict and list(o["odict"].items()) == [("b", 2), ("a", 1)]
    assert o["odict"]._metadata == collections.OrderedDict([("", {"version": 1})])
    assert o["set"] == {"x"} and o["frozenset"] == frozenset({3})
    assert o["dtype"] is torch.bfloat16
    assert type(o["size"]) is torch.Size and o["size"] == (2, 3)
    assert o["stage"] is ds_stubs.ZeroStageEnum.gradients
    assert type(o["loss_scaler"]) is ds_stubs.LossScaler and vars(o["loss_scaler"]) == {"cur_scale": 1.0, "dynamic": False}
    t = o["tensors"]
    for name, dtype in DTYPES.items():
        assert t[name].dtype == dtype and t[name].shape == (2, 3)
    assert torch.equal(t["f32"], torch.arange(6, dtype=torch.float32).view(2, 3) * 0.5 - 3.0 + 1)
    assert bytes(t["u8"].flatten().tolist()) == bytes((i * 7 + 8) & 0xFF for i in range(6))
    big = torch.arange(24, dtype=torch.float32) * 0.5 - 3.0 + 100
    assert torch.equal(t["view"], big[7:17].view(2, 5)) and t["view"].storage_offset() == 7
    assert torch.equal(t["transposed"], big[:12].view(3, 4).t()) and t["transposed"].stride() == (1, 4)
    assert t["view"].storage().data_ptr() == t["transposed"].storage().data_ptr()  # one storage record
    assert t["shared_a"] is t["shared_b"] and t["shared_a"].requires_grad
    assert t["scalar"].shape == () and t["scalar"].item() == -3.0 + 300
    assert t["empty"].shape == (0, 3)


def test_sample_round_trips(tmp_path):
    tool("sample", tmp_path / "a.pt")
    tool("rewrite", tmp_path / "a.pt", tmp_path / "b.pt")
    tree_a, blob_a = dump(tmp_path / "a.pt", tmp_path / "a")
    tree_b, blob_b = dump(tmp_path / "b.pt", tmp_path / "b")
    assert tree_a == tree_b and blob_a == blob_b
    Checker(blob_b).check(tree_b, torch.load(tmp_path / "b.pt"))
