"""Interop between ucp's C++ safetensors code and an independent reader/writer written here from
the spec (huggingface/safetensors README "Format") with json, struct and numpy; the safetensors
Python package is not used.

Run by CTest (test safetensors_interop) with Debian's /usr/bin/python3. The environment gives the
tools: UCP_SAFETENSORS_WRITE_SAMPLE (writes known values) and UCP_SAFETENSORS_DUMP (lists a file).
"""
import json
import os
import struct
import subprocess
import zlib

import numpy as np
import pytest

WRITE_SAMPLE = os.environ.get("UCP_SAFETENSORS_WRITE_SAMPLE")
DUMP = os.environ.get("UCP_SAFETENSORS_DUMP")

# Storage dtype for each safetensors dtype; bf16 and fp8 are decoded below.
STORAGE = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
           "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "?", "F8_E4M3": "u1", "F8_E5M2": "u1"}


def reject_duplicates(pairs):
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys in {keys}"
    return dict(pairs)


def decode_e4m3fn(raw):
    out = []
    for b in raw.ravel().tolist():
        sign = -1.0 if b & 0x80 else 1.0
        exponent, mantissa = (b >> 3) & 0xF, b & 0x7
        if exponent == 0xF and mantissa == 0x7:
            out.append(float("nan"))
        elif exponent == 0:
            out.append(sign * mantissa / 8 * 2.0**-6)
        else:
            out.append(sign * (1 + mantissa / 8) * 2.0**(exponent - 7))
    return np.array(out, dtype=np.float32).reshape(raw.shape)


def decode(dtype, raw):
    if dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    if dtype == "F8_E5M2":
        return (raw.astype(np.uint16) << 8).view(np.float16)
    if dtype == "F8_E4M3":
        return decode_e4m3fn(raw)
    return raw


def read_file(path):
    """Parses and checks a file by the spec; returns (header length, metadata, {name: array})."""
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    text = data[8:8 + n].decode("utf-8")
    assert text.startswith("{")
    header = json.loads(text, object_pairs_hook=reject_duplicates)
    metadata = header.pop("__metadata__", {})
    buffer = data[8 + n:]
    covered = 0
    arrays = {}
    for name, info in sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"])):
        begin, end = info["data_offsets"]
        assert begin == covered, f"{name}: hole or overlap at {begin}"
        storage = np.dtype(STORAGE[info["dtype"]])
        count = int(np.prod(info["shape"], dtype=np.int64))
        assert end - begin == count * storage.itemsize, name
        raw = np.frombuffer(buffer, dtype=storage, count=count, offset=begin).reshape(info["shape"])
        arrays[name] = (info["dtype"], decode(info["dtype"], raw))
        covered = end
    assert covered == len(buffer), "data must end exactly at end of file"
    return n, text, metadata, arrays


def write_file(path, tensors, metadata, pad_to=1):
    """Writes tensors ({name: (dtype, shape, bytes)}) with the header keys in reverse data order."""
    header, offset, payload = {}, 0, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        payload += raw
    header = dict(reversed(list(header.items())))
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, indent=1).encode("utf-8")
    text += b" " * (-len(text) % pad_to)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + payload)


@pytest.fixture
def sample(tmp_path):
    if not WRITE_SAMPLE:
        pytest.skip("UCP_SAFETENSORS_WRITE_SAMPLE is not set (run through ctest)")
    path = tmp_path / "sample.safetensors"
    subprocess.run([WRITE_SAMPLE, str(path)], check=True)
    return path


def test_cpp_file_follows_the_layout_rules(sample):
    n, text, metadata, arrays = read_file(sample)
    assert n % 8 == 0, "header padded to a multiple of 8"
    assert text.rstrip(" ").endswith("}") and len(text) - len(text.rstrip(" ")) < 8
    assert metadata == {"format": "pt", "note": 'h\u00e9llo "quoted"\n'}
    assert list(json.loads(text))[0] == "__metadata__"
    # Data laid out in the order the writer was given.
    assert list(arrays) == ["f64", "f32", "i64", "i32", "f16", "bf16", "i16", "i8", "u8", "bool",
                            "f8_e4m3", "f8_e5m2", "scalar", "empty"]


def test_cpp_file_values(sample):
    _, _, _, arrays = read_file(sample)
    expected = {
        "f64": ("F64", np.arange(6, dtype=np.float64).reshape(2, 3) * 0.25 - 1.0),
        "f32": ("F32", np.array([-2.0, -0.5, 1.0, 2.5], dtype=np.float32)),
        "i64": ("I64", np.array([-(1 << 40), 1 << 62], dtype=np.int64)),
        "i32": ("I32", np.array([[-1, 0], [1, 2**31 - 1]], dtype=np.int32)),
        "f16": ("F16", np.array([[0.5, -1.0], [2.0, 65504.0]], dtype=np.float16)),
        "bf16": ("BF16", np.array([1.0, -2.5, 3.140625], dtype=np.float32)),
        "i16": ("I16", np.array([-32768, 0, 32767], dtype=np.int16)),
        "i8": ("I8", np.array([-128, 127], dtype=np.int8)),
        "u8": ("U8", np.array([0, 128, 255], dtype=np.uint8)),
        "bool": ("BOOL", np.array([[True, False], [False, True]])),
        "f8_e4m3": ("F8_E4M3", np.array([1.0, -2.0, 448.0, 2.0**-9], dtype=np.float32)),
        "f8_e5m2": ("F8_E5M2", np.array([1.0, -2.0, 57344.0], dtype=np.float16)),
        "scalar": ("F32", np.array(42.0, dtype=np.float32)),
        "empty": ("F32", np.zeros((0, 3), dtype=np.float32)),
    }
    assert arrays.keys() == expected.keys()
    for name, (dtype, values) in expected.items():
        got_dtype, got = arrays[name]
        assert got_dtype == dtype, name
        assert got.shape == values.shape, name
        assert got.dtype == values.dtype, name
        np.testing.assert_array_equal(got, values, err_msg=name)


def dump(path):
    if not DUMP:
        pytest.skip("UCP_SAFETENSORS_DUMP is not set (run through ctest)")
    return subprocess.run([DUMP, str(path)], capture_output=True, text=True)


def test_python_file_read_by_cpp(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "model.embed.weight": ("F32", (3, 5), rng.standard_normal((3, 5)).astype("<f4").tobytes()),
        "odd": ("U8", (3,), bytes([7, 8, 9])),  # leaves the next tensor unaligned
        "model.norm.bias": ("F16", (4,), rng.standard_normal(4).astype("<f2").tobytes()),
        "step": ("I64", (), struct.pack("<q", 1234)),
        "none": ("BF16", (0, 2), b""),
        "flags": ("BOOL", (2,), bytes([1, 0])),
    }
    path = tmp_path / "python.safetensors"
    write_file(path, tensors, {"written_by": "python", "z": ""})
    result = dump(path)
    assert result.returncode == 0, result.stderr
    expected = ["meta\twritten_by\tpython", "meta\tz\t"]
    for name, (dtype, shape, raw) in tensors.items():
        dims = ",".join(str(d) for d in shape)
        expected.append(f"tensor\t{name}\t{dtype}\t{dims}\t{zlib.crc32(raw):08x}")
    assert result.stdout.splitlines() == expected


def test_cpp_rejects_a_python_file_with_a_hole(tmp_path):
    path = tmp_path / "hole.safetensors"
    header = {"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
              "b": {"dtype": "U8", "shape": [2], "data_offsets": [4, 6]}}
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"abcdef")
    result = dump(path)
    assert result.returncode == 1
    assert "DATA_LOSS" in result.stderr and "leave a hole" in result.stderr
    assert str(path) in result.stderr
