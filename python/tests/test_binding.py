"""The binding's contract: zero-copy arrays, read-only views, bf16 handling, error mapping, no torch."""
import json
import os
import shutil
import struct
import sys

import numpy as np
import pytest

import ucp
from conftest import FIXTURES

UCP_DIR = FIXTURES / "s2_fp32_dp2" / "checkpoint" / "global_step5_universal"


def test_torch_is_not_importable_and_not_needed():
    assert sys.modules.get("torch") is None
    with pytest.raises(ImportError):
        import torch  # noqa: F401
    ckpt = ucp.open(str(UCP_DIR))
    assert ckpt.tensor("embed.weight").sum() != 0


def test_tensor_is_zero_copy_from_the_mapped_file():
    ckpt = ucp.open(str(UCP_DIR))
    a = ckpt.tensor("embed.weight")
    b = ckpt.tensor("embed.weight")
    assert np.shares_memory(a, b)  # both view the same mapped pages
    assert not a.flags.writeable and not a.flags.owndata
    with pytest.raises(ValueError):
        a[0, 0] = 1.0
    del ckpt
    assert np.isfinite(a).all()  # the array keeps the mapping alive


def test_zero_folder_tensors_in_one_fragment_are_zero_copy():
    ckpt = ucp.open(str(FIXTURES / "s2_fp32_dp2" / "checkpoint"))
    one_run = [p for p in ckpt.params if p.partitioning.endswith("1 fragment")]
    assert one_run
    for p in one_run:
        assert np.shares_memory(ckpt.tensor(p.name), ckpt.tensor(p.name)), p


def test_params_and_arrays_outlive_the_checkpoint_object():
    params = ucp.open(str(UCP_DIR)).params
    assert params[0].name and params[0].shape


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def test_bf16_safetensors_as_uint16_or_upcast(tmp_path):
    values = np.array([[1.0, -2.5, 3.140625], [0.0, 65536.0, -0.0078125]], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype(np.uint16)  # exact in bf16
    path = tmp_path / "w.safetensors"
    write_safetensors(path, {"w": ("BF16", values.shape, bits.tobytes())})
    ckpt = ucp.open(str(path))
    assert ckpt.kind == "safetensors"
    assert ckpt["w"].dtype == "bf16"  # formats/base/dtype.h's names, as the CLI's JSON
    raw = ckpt.tensor("w")
    assert raw.dtype == np.uint16 and raw.shape == (2, 3)
    np.testing.assert_array_equal(raw, bits)
    up = ckpt.tensor("w", upcast=True)
    assert up.dtype == np.float32
    np.testing.assert_array_equal(up, values)


def test_unknown_parameter_or_state():
    ckpt = ucp.open(str(UCP_DIR))
    with pytest.raises(KeyError):
        ckpt.tensor("no.such.param")
    with pytest.raises(KeyError):
        ckpt["no.such.param"]
    with pytest.raises(ValueError):
        ckpt.tensor("embed.weight", state="momentum")


def test_tag_and_prefer_universal():
    root = FIXTURES / "s2_fp32_dp2" / "checkpoint"
    assert ucp.open(str(root), tag="global_step5").tag == "global_step5"
    assert ucp.open(str(root)).kind == "zero"
    assert ucp.open(str(root), prefer_universal=True).kind == "universal"
    with pytest.raises((FileNotFoundError, ValueError)):  # OpenSource: "not a checkpoint" today
        ucp.open(str(FIXTURES / "s2_fp32_dp2" / "resume_dp4" / "checkpoint"), tag="global_step99")


def test_missing_path_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        ucp.open(str(tmp_path / "nothing"))


def test_truncated_shard_is_corrupt_checkpoint_error(copy_tag):
    tag = copy_tag("s2_fp32_dp2")
    shard = tag / "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(ucp.CorruptCheckpointError) as error:
        ucp.open(str(tag))
    assert "zero_pp_rank_1_mp_rank_00_optim_states.pt" in str(error.value)
    assert isinstance(error.value, ValueError)


def test_shard_of_another_step_is_value_error(copy_tag):
    tag = copy_tag("s1_fp32_dp2")
    later = FIXTURES / "s1_fp32_dp4" / "resume_dp2" / "checkpoint" / "global_step8"
    name = "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    (tag / name).write_bytes((later / name).read_bytes())
    with pytest.raises(ValueError) as error:
        ucp.open(str(tag))
    assert not isinstance(error.value, ucp.CorruptCheckpointError)
    assert name in str(error.value)


def test_nvme_offload_is_not_implemented(copy_tag):
    tag = copy_tag("s1_fp32_dp2")
    (tag / "offloaded_tensors").mkdir()  # ZeRO-Infinity NVMe optimizer offload: not supported
    with pytest.raises(NotImplementedError):
        ucp.open(str(tag))


def test_zero_byte_shard_is_corrupt_checkpoint_error(copy_tag):
    # Issue 16.12: an empty file where a shard should be is damage, not "another format".
    tag = copy_tag("s2_fp32_dp2")
    shard = tag / "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    shard.write_bytes(b"")
    with pytest.raises(ucp.CorruptCheckpointError) as error:
        ucp.open(str(tag))
    assert str(shard) in str(error.value) and "0 bytes" in str(error.value)


def test_fifo_is_refused_without_blocking(copy_tag, tmp_path):
    # Issue 16.1: a FIFO named like a shard (or given as the path) is refused by name at once.
    tag = copy_tag("s2_fp32_dp2")
    shard = tag / "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    shard.unlink()
    os.mkfifo(shard)
    with pytest.raises(ValueError) as error:
        ucp.open(str(tag))
    assert str(shard) in str(error.value) and "not a regular file" in str(error.value)
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        ucp.open(str(fifo))


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_incomplete_ucp_is_corrupt_checkpoint_error(copy_tag, change):
    # Issue 16.3: a UCP opens only with exactly the parameter folders param_shapes declares.
    ucp_dir = copy_tag("s2_fp32_dp2", "checkpoint/global_step5_universal")
    if change == "missing":
        shutil.rmtree(ucp_dir / "zero" / "blocks.0.fc2.bias")
    else:
        shutil.copytree(ucp_dir / "zero" / "blocks.0.fc2.bias", ucp_dir / "zero" / "blocks.9.extra")
    with pytest.raises(ucp.CorruptCheckpointError) as error:
        ucp.open(str(ucp_dir))
    assert ("blocks.0.fc2.bias" if change == "missing" else "blocks.9.extra") in str(error.value)


TP_CASES = ["autotp_llama_s1_fp32_tp2_dp1", "autotp_llama_s2_bf16_tp2_dp1", "autotp_llama_s2_fp32_tp2_dp2"]


@pytest.mark.parametrize("case", TP_CASES)
def test_tp_checkpoint_read_in_place_equals_deepspeeds_ucp(case):
    # Issue 15.5: a real AutoTP tag folder (tp 2) opens in place as the merged, virtual UCP.
    root = FIXTURES.parent / "deepspeed_tp" / case / "checkpoint"
    zero = ucp.open(str(root / "global_step5"))
    universal = ucp.open(str(root / "global_step5_universal"))
    assert zero.kind == "zero" and zero.topology["tp"] == 2
    assert sorted(p.name for p in zero.params) == sorted(p.name for p in universal.params)
    compared = 0
    for p in universal.params:
        assert zero[p.name].shape == p.shape, p.name
        for state in p.states:
            a = zero.tensor(p.name, state=state)
            b = universal.tensor(p.name, state=state)
            assert a.dtype == b.dtype and a.shape == b.shape, f"{case} {p.name} {state}"
            assert a.tobytes() == b.tobytes(), f"{case} {p.name} {state} differs"
            compared += 1
    assert compared >= 3 * 16
