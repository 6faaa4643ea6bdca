"""ucp.load_state_dict against DeepSpeed's own zero_to_fp32.py output (fixtures/deepspeed/*/fp32,
loaded with torch.load): same keys, order, dtypes, values, and a tied parameter shared as in
DeepSpeed's dict. Needs Debian's torch (UCP_PYTHON) and the build tree's module on PYTHONPATH."""
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
import ucp  # noqa: E402

FIXTURES = Path(os.environ.get("UCP_SOURCE_DIR", Path(__file__).resolve().parents[2])) / "fixtures" / "deepspeed"
CASES = sorted(c.name for c in FIXTURES.iterdir()
               if (c / "fp32" / "pytorch_model.bin").is_file())


def shared(state):
    return sorted((a, b) for a in state for b in state
                  if a < b and state[a].data_ptr() == state[b].data_ptr())


def test_there_are_cases():
    assert len(CASES) >= 12, CASES


@pytest.mark.parametrize("case", CASES)
def test_equals_zero_to_fp32(case):
    ref = torch.load(FIXTURES / case / "fp32" / "pytorch_model.bin", map_location="cpu")
    ours = ucp.load_state_dict(FIXTURES / case / "checkpoint")
    assert list(ours) == list(ref)
    for name, tensor in ref.items():
        assert ours[name].dtype == tensor.dtype, name
        assert torch.equal(ours[name], tensor), name
    assert shared(ours) == shared(ref) != []


def test_dtype_cast():
    ours = ucp.load_state_dict(FIXTURES / "s2_fp32_dp2" / "checkpoint", dtype="bf16")
    ref = torch.load(FIXTURES / "s2_fp32_dp2" / "fp32" / "pytorch_model.bin", map_location="cpu")
    for name, tensor in ref.items():
        assert ours[name].dtype == torch.bfloat16
        assert torch.equal(ours[name], tensor.to(torch.bfloat16)), name
