"""`ucp convert` of the tensor-parallel fixtures (fixtures/tp, made by fixtures/generate/make_tp_fixtures.py)
against the UCP tensors computed there from deepspeed-formats.md §5.1/§5.2 (expected.npz/.json).

Every zero/<param>/<state>.pt is loaded with Debian's torch 1.13 (+ ds_stubs.py) and compared bitwise:
dict keys and their order, cat_dim / param_n_sub_params / vocab_tensor / sub_param_shape values, the
tensor's dtype, shape, contiguity and bytes (and for vocabulary views the whole merged storage, padding
rows included). Also step.pt, zero/optimizer_state.pt (§5.3) and the byte copies of the model files.
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
import ds_stubs  # noqa: E402

ds_stubs.install()

SOURCE = pathlib.Path(os.environ.get("UCP_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
UCP = os.environ.get("UCP_BIN", "ucp")
TP_DIR = SOURCE / "fixtures" / "tp"
CASES = sorted(p.name for p in TP_DIR.iterdir() if (p / "expected.json").is_file())


def raw(t):
    return t.detach().contiguous().numpy().tobytes()


@pytest.fixture(scope="module", params=CASES)
def converted(request, tmp_path_factory):
    case = request.param
    out = tmp_path_factory.mktemp(case) / "global_step5_universal"
    tag = TP_DIR / case / "checkpoint" / "global_step5"
    r = subprocess.run([UCP, "convert", str(tag), str(out), "--no-fsync"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    expected = json.loads((TP_DIR / case / "expected.json").read_text())
    arrays = np.load(TP_DIR / case / "expected.npz")
    return case, tag, out, expected, arrays


def test_every_param_state_matches_the_formulas(converted):
    case, _, out, expected, arrays = converted
    names = sorted(p.name for p in (out / "zero").iterdir() if p.is_dir())
    assert names == sorted(expected["params"])
    for name, e in expected["params"].items():
        for state in ("fp32", "exp_avg", "exp_avg_sq"):
            d = torch.load(out / "zero" / name / f"{state}.pt", map_location="cpu")
            where = f"{case} {name}/{state}"
            assert isinstance(d, dict), where
            assert list(d.keys()) == e["keys"], f"{where}: keys {list(d)}"
            for key in ("cat_dim", "param_n_sub_params", "vocab_tensor"):
                if key in e:
                    assert d[key] == e[key] and type(d[key]) is type(e[key]), f"{where}: {key} {d[key]!r}"
            if "sub_param_shape" in e:
                s = vars(d["sub_param_shape"])
                assert list(s) == ["patterns", "shape", "partition_dim"], where
                assert s["patterns"] == e["sub_param_shape"]["patterns"], where
                assert [list(x) if isinstance(x, tuple) else x for x in s["shape"]] == e["sub_param_shape"]["shape"]
                assert isinstance(s["shape"][0], tuple), where  # the widths tuple stays a tuple
                assert s["partition_dim"] == e["sub_param_shape"]["partition_dim"], where
            t = d["param"]
            want = arrays[f"{name}/{state}"]
            assert t.dtype == torch.float32, where
            assert list(t.shape) == list(want.shape) == e["shape"], where
            assert t.is_contiguous() and t.storage_offset() == 0, where
            assert raw(t) == want.tobytes(), f"{where}: bytes differ"
            assert t.requires_grad == (state == "fp32"), where
            if f"{name}/{state}.storage" in arrays:  # vocabulary view: the storage keeps the padding rows
                storage = np.array(t.storage().tolist(), dtype=np.float32)
                assert storage.tobytes() == arrays[f"{name}/{state}.storage"].tobytes(), where
            else:
                assert len(t.storage()) == t.numel(), where


def test_averaged_minus_zero_becomes_plus_zero(converted):
    _, _, out, expected, _ = converted
    t = torch.load(out / "zero" / "ln_f.weight" / "fp32.pt")["param"]
    assert raw(t[:1]) == np.float32(0.0).tobytes()  # -0.0 on both ranks; DeepSpeed's 0 + s0 gives +0.0


def test_step_optimizer_state_and_model_files(converted):
    case, tag, out, expected, _ = converted
    for name in expected["params"]:
        step = torch.load(out / "zero" / name / "step.pt")
        assert torch.is_tensor(step) and step.item() == expected["step"] and step.dim() == 0
    osd = torch.load(out / "zero" / "optimizer_state.pt")
    assert osd["partition_count"] == [expected["dp"]] * 2
    assert osd["group_paddings"] == [0, 0]
    assert [g["name"] for g in osd["param_groups"]] == ["decay", "no_decay"]
    for tp in range(expected["tp"]):
        f = f"mp_rank_{tp:02d}_model_states.pt"
        assert (out / f).read_bytes() == (tag / f).read_bytes(), f
    assert not any(p.name.endswith("optim_states.pt") for p in out.iterdir())


def test_files_equal_deepspeeds_own_conversion(converted):
    """checkpoint/global_step5_universal is DeepSpeed's ds_to_universal output (fixtures/tp/README.md)."""
    from test_convert_interop import Compare
    case, tag, out, _, _ = converted
    theirs = tag.parent / "global_step5_universal"
    files = sorted(p.relative_to(theirs) for p in theirs.rglob("*.pt"))
    assert files == sorted(p.relative_to(out) for p in out.rglob("*.pt"))
    for rel in files:
        Compare()(torch.load(out / rel), torch.load(theirs / rel), f"{case}/{rel}")
        if rel.name != "optimizer_state.pt":  # DeepSpeed's re-save pickles ZeroStageEnum by name on Python 3.11.2
            assert (out / rel).read_bytes() == (theirs / rel).read_bytes(), f"{case}/{rel}"
