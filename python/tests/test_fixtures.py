"""ucp.open over every DeepSpeed fixture: the ZeRO folder (read in place), DeepSpeed's own UCP folder
and zero_to_fp32's pytorch_model.bin, every state of every parameter against reference.npz."""
import json
import os
import pathlib
import re
import subprocess

import numpy as np
import pytest

import ucp
from conftest import CASES, FIXTURES


def reference(case):
    npz = np.load(FIXTURES / case / "reference.npz")
    states = {}  # (name, state) -> array, from the UCP files DeepSpeed wrote
    weights = {}  # name -> array, from zero_to_fp32's pytorch_model.bin
    for key in npz.files:
        kind, rest = key.split("/", 1)
        if kind == "ucp":
            name, state = rest.rsplit("/", 1)
            if state != "step":
                states[(name, state)] = npz[key]
        elif kind == "fp32":
            weights[rest] = npz[key]
    return states, weights


def manifest(case):
    return json.loads((FIXTURES / case / "manifest.json").read_text())


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("sub", ["checkpoint", "checkpoint/global_step5_universal"])
def test_every_state_matches_reference(case, sub):
    ckpt = ucp.open(str(FIXTURES / case / sub))
    assert ckpt.kind == ("zero" if sub == "checkpoint" else "universal")
    states, _ = reference(case)
    names = {name for name, _ in states}
    assert names <= set(ckpt.names())
    for (name, state), want in states.items():
        got = ckpt.tensor(name, state)
        param = ckpt[name]
        assert got.shape == tuple(param.shape)
        assert got.dtype == want.dtype, (name, state)
        # ZeRO-3 UCP files hold flat tensors; ucp always answers with the merged shape.
        assert got.size == want.size, (name, state)
        np.testing.assert_array_equal(got.reshape(-1), want.reshape(-1), err_msg=f"{case} {sub} {name} {state}")


@pytest.mark.parametrize("case", CASES)
def test_zero_metadata(case):
    ckpt = ucp.open(str(FIXTURES / case / "checkpoint"))
    m = manifest(case)
    assert ckpt.step == m["steps"]
    assert ckpt.topology["dp"] == m["world_size"]
    assert ckpt.topology["zero_stage"] in (1, 2, 3)
    assert ckpt.tag == "global_step5"
    assert len(ckpt) == len(ckpt.params) > 0
    for p in ckpt.params:
        assert p.name in ckpt
        assert isinstance(p.shape, tuple)
        assert p.numel == int(np.prod(p.shape))
        assert "fp32" in p.states
        assert p.partitioning
        if p.role == "trainable":
            assert p.dtype == "f32" and p.states == ["fp32", "exp_avg", "exp_avg_sq"]
    assert ckpt.topology["ep"] == (2 if case.startswith("autoep") else 1)
    assert ckpt.topology["zero_stage"] == int(re.search(r"(?:^|_)s(\d)_", case).group(1))
    experts = [p for p in ckpt.params if p.expert]
    assert bool(experts) == case.startswith("autoep")
    for p in experts:
        assert p.shape[0] == p.num_experts


@pytest.mark.parametrize("case", [c for c in CASES if (FIXTURES / c / "fp32" / "pytorch_model.bin").exists()])
def test_zero_to_fp32_bin(case):
    ckpt = ucp.open(str(FIXTURES / case / "fp32" / "pytorch_model.bin"))
    assert ckpt.kind == "bin"
    _, weights = reference(case)
    assert set(weights) <= set(ckpt.names())
    for name, want in weights.items():
        got = ckpt.tensor(name)
        assert got.shape == want.shape
        if ckpt[name].dtype == "bf16":  # s2_bf16_dp2's frozen `pos`: raw bits unless upcast
            assert got.dtype == np.uint16
            got = ckpt.tensor(name, upcast=True)
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got.view(np.uint32) & 0xFFFF, 0)
        np.testing.assert_array_equal(got, want)


def test_diff_zero_vs_its_universal_checkpoint_is_equal():
    zero = ucp.open(str(FIXTURES / "s2_fp32_dp2" / "checkpoint"))
    universal = ucp.open(str(FIXTURES / "s2_fp32_dp2" / "checkpoint" / "global_step5_universal"))
    report = zero.diff(universal)
    assert report.equal and not report, [e for e in report.differences]
    assert report.params_compared == len(universal)
    assert report.states_compared >= 3 * 16
    assert all(e.status == "equal" for e in report.entries)
    assert report.to_json()


def test_diff_names_values_that_changed():
    before = ucp.open(str(FIXTURES / "s2_fp32_dp4" / "checkpoint"))
    after = ucp.open(str(FIXTURES / "s2_fp32_dp4" / "resume_dp2" / "checkpoint"))  # 3 steps later
    report = before.diff(after, states=["fp32"], compare_steps=False)
    assert not report.equal and report
    changed = {(e.name, e.state) for e in report.differences}
    assert ("embed.weight", "fp32") in changed
    assert all(e.status == "different" and e.max_abs_diff > 0 for e in report.differences)
    assert {e.state for e in report.entries} == {"fp32"}
    assert all(0 < e.num_different <= e.numel and 0 < e.max_rel_diff for e in report.differences)
    assert report.counts["different"] == len(report.differences)
    assert not report.weights_only and not any(e.weights_only for e in report.entries)
    with pytest.raises(ValueError):
        before.diff(after, states=["momentum"])


def test_dtypes_are_the_cli_json_names():
    """One dtype vocabulary: Param.dtype and topology['master_dtype'] are what `ucp inspect --json` prints."""
    binary = pathlib.Path(os.environ["UCP_BINARY_DIR"]) / "cli" / "ucp"
    for case in ("s2_bf16_dp2", "s1_bf16opt_dp4"):
        path = str(FIXTURES / case / "checkpoint")
        doc = json.loads(subprocess.run([str(binary), "inspect", "--json", path], check=True, capture_output=True,
                                        text=True).stdout)
        ckpt = ucp.open(path)
        assert ckpt.topology["master_dtype"] == doc["master_dtype"] == "f32"
        assert {p.name: p.dtype for p in ckpt.params} == {p["name"]: p["dtype"] or "" for p in doc["params"]}
        assert "bf16" in {p.dtype for p in ckpt.params} or case == "s1_bf16opt_dp4"
