"""`ucp export` / `ucp zero-to-fp32` over every fixture case, checked with torch.load, an independent
safetensors reader (numpy + json, from the format spec) and h5py:
  * zero-to-fp32 (ZeRO folder) writes what zero_to_fp32.py wrote: same file name, same keys in the
    same order, same dtypes and bitwise-equal values;
  * exported fp32 weights equal fp32/pytorch_model.bin where zero_to_fp32 produced it, and the fp32
    masters of reference.npz (ucp/<name>/fp32) everywhere (BF16_Optimizer, AutoEP);
  * AutoEP experts in the HF fused layout: gate_up_proj[e] = cat(w1[e], w3[e]), down_proj = w2;
    per-expert layout: experts.{i}.w1 = w1[i];
  * sharding: HF file names and an index whose weight_map covers every key.
"""
import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import ds_stubs

ds_stubs.install()
SRC = Path(os.environ["UCP_SOURCE_DIR"])
UCP = os.environ["UCP_BIN"]
CASES = sorted(p.name for p in (SRC / "fixtures/deepspeed").iterdir() if (p / "checkpoint").is_dir())
ST_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "I64": np.int64}


def run(*args):
    r = subprocess.run([UCP, *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def read_safetensors(path):
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[8 + n + b:8 + n + e], dtype=ST_DTYPES[info["dtype"]])
        out[name] = arr.reshape(info["shape"])
    return out, header.get("__metadata__", {})


def masters(case):
    z = np.load(SRC / f"fixtures/deepspeed/{case}/reference.npz")
    return {k[len("ucp/"):-len("/fp32")]: z[k] for k in z.files if k.startswith("ucp/") and k.endswith("/fp32")}


@pytest.mark.parametrize("case", CASES)
def test_zero_to_fp32_drop_in(case, tmp_path):
    ref_path = SRC / f"fixtures/deepspeed/{case}/fp32/pytorch_model.bin"
    out = tmp_path / "out"
    run("zero-to-fp32", SRC / f"fixtures/deepspeed/{case}/checkpoint", out)
    got = torch.load(out / "pytorch_model.bin")
    if not ref_path.exists():  # zero_to_fp32.py failed here; compare with the masters
        for name, value in masters(case).items():
            t = got[name]
            assert np.array_equal(t.numpy(), value.reshape(t.shape)), name
        return
    ref = torch.load(ref_path)
    assert list(got.keys()) == list(ref.keys())
    for k in ref:
        assert got[k].dtype == ref[k].dtype, k
        assert got[k].shape == ref[k].shape, k
        assert torch.equal(got[k], ref[k]), k


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("source", ["checkpoint/global_step5", "checkpoint/global_step5_universal"])
def test_export_safetensors_equals_masters(case, source, tmp_path):
    out = tmp_path / "out"
    run("export", SRC / f"fixtures/deepspeed/{case}" / source, "--out", out, "--moe-layout", "per-expert")
    tensors, meta = read_safetensors(out / "model.safetensors")
    assert meta["format"] == "pt" and meta["ucp_step"] == "5"
    for name, value in masters(case).items():
        if name in tensors:
            assert np.array_equal(tensors[name], value.reshape(tensors[name].shape)), name
        else:  # an expert tensor [E, ...], exported per expert
            prefix, leaf = name.rsplit(".", 1)
            for i in range(value.shape[0]):
                assert np.array_equal(tensors[f"{prefix}.{i}.{leaf}"], value[i]), (name, i)


def test_autoep_fused_hf_layout_and_sharding(tmp_path):
    case = "autoep_qwen3_s3_fp32_dp4_ep2"
    out = tmp_path / "out"
    run("export", SRC / f"fixtures/deepspeed/{case}/checkpoint", "--out", out, "--max-shard-size", "20KB")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    tensors = {}
    for shard in sorted(set(index["weight_map"].values())):
        assert shard.startswith("model-0000") and shard.endswith(".safetensors")
        t, _ = read_safetensors(out / shard)
        tensors.update(t)
    assert set(tensors) == set(index["weight_map"])
    m = masters(case)
    fused = [k for k in m if k.endswith(".experts.w1")]
    assert fused
    for w1 in fused:
        prefix = w1[:-len(".w1")]
        gate_up = tensors[prefix + ".gate_up_proj"]
        assert np.array_equal(gate_up, np.concatenate([m[prefix + ".w1"], m[prefix + ".w3"]], axis=1))
        assert np.array_equal(tensors[prefix + ".down_proj"], m[prefix + ".w2"])


@pytest.mark.parametrize("source", ["zero", "ucp"])
def test_native_moe_experts_per_global_expert(source, tmp_path):
    # DeepSpeed's own layer_0_expert_{E} files (global ids) are the reference: the export names
    # each global expert as a model without expert parallelism does, with the same values.
    ckpt = SRC / "fixtures/deepspeed_extra/moe_s2_fp32_dp4_ep2/checkpoint"
    src = ckpt
    if source == "ucp":
        src = tmp_path / "ucp"
        run("convert", ckpt / "global_step5", src)
    out = tmp_path / "out"
    run("export", src, "--out", out)
    tensors, _ = read_safetensors(out / "model.safetensors")
    expected = {}
    for e in range(4):
        expected.update(torch.load(ckpt / f"global_step5/layer_0_expert_{e}_mp_rank_00_model_states.pt"))
    assert len(expected) == 16
    for name, value in expected.items():
        assert np.array_equal(tensors[name], value.numpy()), name
    assert not [k for k in tensors if ".deepspeed_experts." in k and k not in expected]


@pytest.mark.parametrize("case,layout", [("autoep_mixtral_s2_fp32_dp4_ep2", "fused"),
                                         ("autoep_qwen3_s3_fp32_dp4_ep2", "per-expert"),
                                         ("moe", "native")])
def test_diff_matches_expert_layouts_of_an_export(case, layout, tmp_path):
    # `ucp diff` compares a checkpoint's stacked experts with the export's fused / per-expert /
    # per-global-expert tensors, both ways round, and sees a changed value.
    ckpt = (SRC / "fixtures/deepspeed_extra/moe_s2_fp32_dp4_ep2/checkpoint" if case == "moe"
            else SRC / f"fixtures/deepspeed/{case}/checkpoint")
    out = tmp_path / "out"
    run("export", ckpt, "--out", out, *(["--moe-layout", layout] if layout != "native" else []))
    for a, b in ((ckpt, out), (out, ckpt)):
        report = json.loads(run("diff", a, b, "--json").stdout)
        assert report["equal"], [e for e in report["entries"] if e["status"] != "equal"]
        assert report["params_compared"] >= 20
        assert not [e for e in report["entries"] if e["status"].startswith("missing")]
    st = out / "model.safetensors"
    data = bytearray(st.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    expert = next(k for k in header if "expert" in k and k != "__metadata__")
    begin = header[expert]["data_offsets"][0]
    data[8 + n + begin + 3] ^= 0x40  # a high bit of the first float
    st.write_bytes(bytes(data))
    r = subprocess.run([UCP, "diff", str(ckpt), str(out), "--json"], capture_output=True, text=True)
    report = json.loads(r.stdout)
    assert r.returncode != 0 and not report["equal"]
    assert [e for e in report["entries"] if e["status"] == "different"], report


def test_bin_hdf5_and_dtype(tmp_path):
    import h5py
    case = "s2_fp32_dp4"
    ref = {k: v.detach() for k, v in torch.load(SRC / f"fixtures/deepspeed/{case}/fp32/pytorch_model.bin").items()}
    run("export", SRC / f"fixtures/deepspeed/{case}/checkpoint", "--out", tmp_path / "b", "--format", "bin")
    got = torch.load(tmp_path / "b/pytorch_model.bin")
    for k in ref:
        assert torch.equal(got[k], ref[k]), k
    assert got["head.weight"].data_ptr() == got["embed.weight"].data_ptr()  # tied: one storage
    run("export", SRC / f"fixtures/deepspeed/{case}/checkpoint", "--out", tmp_path / "h", "--format", "hdf5")
    with h5py.File(tmp_path / "h/model.h5", "r") as f:
        for k in ref:
            assert np.array_equal(f[k][()], ref[k].numpy()), k
    run("export", SRC / f"fixtures/deepspeed/{case}/checkpoint", "--out", tmp_path / "bf", "--dtype", "bf16")
    tensors, _ = read_safetensors(tmp_path / "bf/model.safetensors")
    for k in ref:
        expect = ref[k].to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
        assert np.array_equal(tensors[k], expect), k
    run("export", SRC / f"fixtures/deepspeed/{case}/checkpoint", "--out", tmp_path / "h16", "--dtype", "fp16")
    tensors, _ = read_safetensors(tmp_path / "h16/model.safetensors")
    for k in ref:
        assert np.array_equal(tensors[k], ref[k].to(torch.float16).numpy()), k
