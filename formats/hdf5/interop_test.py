"""Interop between ucp's HDF5 format and the HDF5 ecosystem: h5py and h5dump.

Run by ctest (test hdf5_interop_h5py, label interop) with Debian's /usr/bin/python3 and:
  HDF5_PLUGIN_PATH  the build's hdf5_plugins/ directory holding libh5zstd.so
  UCP_HDF5_SAMPLE   the hdf5_write_sample tool (writes the sample file, or --dump reads any file)
"""
import os
import shutil
import subprocess
import zlib

import h5py
import numpy as np
import pytest

SAMPLE = os.environ.get("UCP_HDF5_SAMPLE")
PLUGINS = os.environ.get("HDF5_PLUGIN_PATH")
pytestmark = pytest.mark.skipif(not SAMPLE or not PLUGINS, reason="run through ctest (needs the build's tools)")


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "sample.h5"
    subprocess.run([SAMPLE, str(path)], check=True)
    return path


def dump(path):
    """ucp's view of a file: {dataset: (dtype, shape, crc32)}, {(object, name): value}."""
    out = subprocess.run([SAMPLE, "--dump", str(path)], check=True, capture_output=True, text=True).stdout
    datasets, attrs = {}, {}
    for line in out.splitlines():
        kind, rest = line.split(" ", 1)
        if kind == "dataset":
            name, dtype, shape, crc = rest.split(" ")
            dims = tuple(int(d) for d in shape.strip("[]").split(",") if d)
            datasets[name] = (dtype, dims, int(crc, 16))
        else:
            obj, name, value = rest.split(" ", 2)
            attrs[(obj, name)] = value
    return datasets, attrs


def text(value):
    """ucp writes fixed-length UTF-8 strings, which h5py returns as bytes."""
    assert isinstance(value, bytes), repr(value)
    return value.decode("utf-8")


def bits(values, dtype):
    return np.array(values, dtype=dtype)


def test_h5py_reads_every_dtype(sample):
    with h5py.File(sample, "r") as f:
        big = f["model/big"]
        assert big.dtype == np.float32 and big.shape == (300, 1000)
        assert big.compression == "32015" or "32015" in big._filters
        np.testing.assert_array_equal(big[()].ravel(), (np.arange(300000) % 1000).astype(np.float32) * 0.5)
        assert text(big.attrs["role"]) == "embedding"

        np.testing.assert_array_equal(f["dtypes/f64"][()], [0.5, -1.25, 3e300, -0.0, 1e-300])
        np.testing.assert_array_equal(f["dtypes/f32"][()], np.array([[1.5, -2.0], [1e30, 0.0]], dtype=np.float32))
        np.testing.assert_array_equal(f["dtypes/f16"][()], bits([0x3C00, 0xC000, 0x7BFF, 0x0001], np.uint16).view(np.float16))
        # bf16 is a custom HDF5 float; h5py widens it to float32 exactly.
        bf16 = f["dtypes/bf16"]
        assert bf16.dtype == np.float32
        expect = (bits([0x3F80, 0xC040, 0x7F7F, 0x0001], np.uint32) << 16).view(np.float32)
        np.testing.assert_array_equal(bf16[()], expect)
        # f8e5m2 is a custom HDF5 float; h5py widens it to float16 exactly.
        e5m2 = f["dtypes/f8e5m2"]
        assert e5m2.dtype == np.float16
        np.testing.assert_array_equal(e5m2[()], [1.0, -2.0, 57344.0, 2.0**-16])
        # f8e4m3 (no infinities) is stored as its raw bits.
        e4m3 = f["dtypes/f8e4m3"]
        assert e4m3.dtype == np.uint8 and text(e4m3.attrs["ucp_dtype"]) == "f8e4m3"
        np.testing.assert_array_equal(e4m3[()], [0x38, 0x7E, 0xFE, 0x01])

        for name, dtype in [("i64", np.int64), ("i32", np.int32), ("i16", np.int16), ("i8", np.int8)]:
            info = np.iinfo(dtype)
            np.testing.assert_array_equal(f["dtypes/" + name][()], np.array([info.min, 0, info.max], dtype=dtype))
            assert f["dtypes/" + name].dtype == dtype
        np.testing.assert_array_equal(f["dtypes/u8"][()], [0, 128, 255])
        boolean = f["dtypes/bool"]
        assert boolean.dtype == np.uint8 and text(boolean.attrs["ucp_dtype"]) == "bool"
        np.testing.assert_array_equal(boolean[()], [1, 0, 0, 1])

        assert f["scalars/step"].shape == () and f["scalars/step"][()] == 12345
        assert f["empty"].shape == (0, 4)
        for name in ["model/big", "dtypes/f16", "dtypes/bf16", "scalars/step"]:
            assert text(f[name].attrs["ucp_dtype"]) in ("f32", "f16", "bf16", "i64")

        assert text(f.attrs["format"]) == "ucp-hdf5-sample"
        assert f.attrs["step"] == 12345
        assert f.attrs["lr"] == 0.001
        np.testing.assert_array_equal(f.attrs["dims"], [3, 1, 4])


def test_h5dump_prints_data(sample):
    assert shutil.which("h5dump"), "hdf5-tools is required"
    for dataset, expect in [("/model/big", "(0,0): 0, 0.5, 1, 1.5"), ("/dtypes/bf16", "(0): 1, -3, 3.38953e+38"),
                            ("/dtypes/f8e5m2", "(0): 1, -2, 57344")]:
        run = subprocess.run(["h5dump", "-d", dataset, str(sample)], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert "DATA {" in run.stdout and expect in run.stdout, run.stdout[:2000]
        assert "filter" not in (run.stdout + run.stderr).lower()


def test_h5dump_needs_the_plugin(sample, tmp_path):
    env = dict(os.environ, HDF5_PLUGIN_PATH=str(tmp_path))
    run = subprocess.run(["h5dump", "-d", "/model/big", str(sample)], capture_output=True, text=True, env=env)
    assert run.returncode != 0 or "DATA {" not in run.stdout


def test_ucp_reads_h5py_zstd(tmp_path):
    path = tmp_path / "from_h5py.h5"
    weight = np.sin(np.arange(120000, dtype=np.float32)).reshape(300, 400)
    ints = np.arange(1000, dtype=np.int16) - 500
    flags = np.array([True, False, True, True])
    with h5py.File(path, "w") as f:
        d = f.create_dataset("w", data=weight, compression=32015, compression_opts=(3,), shuffle=True)
        f.create_dataset("g/ints", data=ints, compression=32015, compression_opts=(9,), chunks=(64,))
        f.create_dataset("flags", data=flags)
        f.create_dataset("plain", data=np.float64(2.5))
        f.attrs["note"] = "from h5py"
        f.attrs["epoch"] = 3
        f["w"].attrs["scale"] = 0.5
        f["w"].attrs["shape"] = np.array([300, 400], dtype=np.int64)
        level, chunk_bytes = d._filters["32015"]
        assert level == 3 and chunk_bytes == np.prod(d.chunks) * 4, "set_local records the chunk size"
        assert d.id.get_storage_size() < weight.nbytes
    datasets, attrs = dump(path)
    assert datasets["w"] == ("f32", (300, 400), zlib.crc32(weight.tobytes()))
    assert datasets["g/ints"] == ("i16", (1000,), zlib.crc32(ints.tobytes()))
    assert datasets["flags"] == ("bool", (4,), zlib.crc32(flags.astype(np.uint8).tobytes()))
    assert datasets["plain"] == ("f64", (), zlib.crc32(np.float64(2.5).tobytes()))
    assert attrs[("/", "note")] == "str from h5py"
    assert attrs[("/", "epoch")] == "int 3"
    assert attrs[("w", "scale")] == "float 0.5"
    assert attrs[("w", "shape")] == "ints 300,400"


def test_ucp_sample_dump_matches_h5py(sample):
    datasets, _ = dump(sample)
    with h5py.File(sample, "r") as f:
        assert datasets["model/big"][2] == zlib.crc32(f["model/big"][()].tobytes())
        assert datasets["dtypes/f8e4m3"] == ("f8e4m3", (4,), zlib.crc32(f["dtypes/f8e4m3"][()].tobytes()))


def test_plugin_rejects_corrupt_chunk_cleanly(sample, tmp_path):
    with h5py.File(sample, "r") as f:
        info = f["model/big"].id.get_chunk_info(1)
    data = bytearray(sample.read_bytes())
    for i in range(info.byte_offset + info.size // 2, info.byte_offset + info.size // 2 + 3):
        data[i] ^= 0xFF
    bad = tmp_path / "bad.h5"
    bad.write_bytes(bytes(data))
    with h5py.File(bad, "r") as f:
        with pytest.raises(OSError):
            f["model/big"][()]
    run = subprocess.run([SAMPLE, "--dump", str(bad)], capture_output=True, text=True)
    assert run.returncode == 1 and "bad.h5" in run.stderr and "zstd" in run.stderr
