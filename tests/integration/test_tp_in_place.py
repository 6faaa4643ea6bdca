"""The real DeepSpeed AutoTP checkpoints (fixtures/deepspeed_tp, tp 2) read in place by every verb
of the `ucp` binary (issue 15.5): `diff` of the tag folder against DeepSpeed's own UCP says equal
on fp32, exp_avg and exp_avg_sq; `export` of the tag folder writes the same tensors as the export
of the UCP; `verify` is OK; `inspect --json` shows tp 2; `zero-to-fp32` works. The generated TP
cases (fixtures/tp: averaged and sub-parameter merges) go through diff as well.
"""
import json
import os
import pathlib
import struct
import subprocess

import pytest

SOURCE = pathlib.Path(os.environ.get("UCP_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
UCP = os.environ.get("UCP_BIN", "ucp")
REAL = ["autotp_llama_s1_fp32_tp2_dp1", "autotp_llama_s2_bf16_tp2_dp1", "autotp_llama_s2_fp32_tp2_dp2"]
GENERATED = ["s1_fp32_tp2", "s2_bf16_tp2_dp2", "s2_fp32_tp2_dp2_subparams", "s1_bf16_tp2_legacy_subparams"]


def run(*args):
    r = subprocess.run([UCP, *map(str, args)], capture_output=True, text=True, timeout=120)
    return r


def checkpoint(case):
    folder = "deepspeed_tp" if case in REAL else "tp"
    return SOURCE / "fixtures" / folder / case / "checkpoint"


def safetensors(path):
    """name -> (dtype, shape, bytes) of a .safetensors file (the format is a JSON header + data)."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    body = data[8 + n:]
    return {k: (v["dtype"], v["shape"], body[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}


@pytest.mark.parametrize("case", REAL + GENERATED)
def test_diff_of_the_tag_folder_and_deepspeeds_ucp_is_equal(case):
    ck = checkpoint(case)
    r = run("diff", ck / "global_step5", ck / "global_step5_universal", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report["a"]["kind"] == "zero" and report["b"]["kind"] == "universal"
    states = {(e["name"], e["state"]) for e in report["entries"]}
    assert {s for _, s in states} >= {"fp32", "exp_avg", "exp_avg_sq"}, states
    assert all(e["status"] == "equal" for e in report["entries"]), [e for e in report["entries"]
                                                                     if e["status"] != "equal"]


@pytest.mark.parametrize("case", REAL)
def test_export_of_the_tag_folder_equals_the_export_of_the_ucp(case, tmp_path):
    ck = checkpoint(case)
    for name, src in (("zero", ck / "global_step5"), ("ucp", ck / "global_step5_universal")):
        r = run("export", src, "--out", tmp_path / name, "--no-fsync")
        assert r.returncode == 0, r.stderr
    a = safetensors(tmp_path / "zero" / "model.safetensors")
    b = safetensors(tmp_path / "ucp" / "model.safetensors")
    assert sorted(a) == sorted(b) and len(a) >= 16
    for k in a:
        assert a[k] == b[k], f"{case}: {k} differs"
    assert a["lm_head.weight"][1] == [53, 24]  # the vocabulary rows DeepSpeed keeps, not the padded 54


@pytest.mark.parametrize("case", REAL)
def test_verify_inspect_and_zero_to_fp32_accept_the_tag_folder(case, tmp_path):
    ck = checkpoint(case)
    r = run("verify", ck)
    assert r.returncode == 0 and "(zero)" in r.stdout and "OK" in r.stdout, r.stdout + r.stderr
    r = run("inspect", ck, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["kind"] == "zero" and doc["topology"]["tp"] == 2
    q = next(p for p in doc["params"] if p["name"] == "model.layers.0.self_attn.o_proj.weight")
    assert q["shape"] == [24, 24] and "cat dim 1" in q["partitioning"], q
    r = run("zero-to-fp32", ck, tmp_path / "fp32")
    assert r.returncode == 0, r.stderr
    weights = safetensors_or_bin(tmp_path / "fp32")
    assert "model.embed_tokens.weight" in weights


def safetensors_or_bin(folder):
    files = sorted(p.name for p in folder.iterdir())
    assert "pytorch_model.bin" in files or "model.safetensors" in files, files
    r = run("inspect", folder, "--json")
    assert r.returncode == 0, r.stderr
    return {p["name"] for p in json.loads(r.stdout)["params"]}
