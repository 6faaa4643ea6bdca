"""pytest setup for the `ucp` module: torch is made unimportable before anything imports ucp (the
module must never need it), and fixtures locate fixtures/deepspeed (UCP_SOURCE_DIR, set by ctest)."""
import os
import pathlib
import shutil
import sys

import pytest

sys.modules["torch"] = None  # `import torch` now raises ImportError, in ucp and everywhere else

SOURCE_DIR = pathlib.Path(os.environ.get("UCP_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
FIXTURES = SOURCE_DIR / "fixtures" / "deepspeed"

CASES = ["s1_fp32_dp2", "s1_fp32_dp4", "s1_bf16opt_dp4", "s2_fp32_dp2", "s2_fp32_dp4", "s2_bf16_dp2",
         "s3_fp32_dp2", "s3_fp32_dp4", "s3_fp32_1group_dp4", "autoep_mixtral_s2_fp32_dp4_ep2",
         "autoep_qwen3_s3_fp32_dp4_ep2", "s3_bf16_dp1", "s3_bf16_dp2", "s3_bf16_dp4", "s1_bf16_dp2"]


@pytest.fixture
def copy_tag(tmp_path):
    """Copies fixtures/deepspeed/<case>/<sub> into tmp_path and returns the copy's path."""
    def copy(case, sub="checkpoint/global_step5"):
        src = FIXTURES / case / sub
        dst = tmp_path / src.name
        shutil.copytree(src, dst)
        return dst
    return copy
