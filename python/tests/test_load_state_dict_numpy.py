"""ucp.load_state_dict without torch: numpy arrays equal to DeepSpeed's zero_to_fp32.py output read
by ucp's own torch-file reader (tests/python_package/test_load_state_dict.py compares with
torch.load)."""
import numpy as np
import pytest

import ucp
from conftest import FIXTURES

CASES = sorted(c.name for c in FIXTURES.iterdir() if (c / "fp32" / "pytorch_model.bin").is_file())


@pytest.mark.parametrize("case", CASES)
def test_numpy_state_dict_equals_zero_to_fp32(case):
    ref = ucp.open(FIXTURES / case / "fp32" / "pytorch_model.bin")
    ours = ucp.load_state_dict(FIXTURES / case / "checkpoint")
    assert list(ours) == [p.name for p in ref.params]
    for name, array in ours.items():
        expected = ref.tensor(name)
        assert array.dtype == expected.dtype and np.array_equal(array, expected), name
    tied = [(a, b) for a in ours for b in ours if a < b and ours[a] is ours[b]]
    assert tied, "the tied embedding is one array under both names"
