#!/usr/bin/python3
"""Builds starting corpora for the libFuzzer targets (fuzz/README.md) from fixtures/hostile and a
few real fixture files: <out>/torch_file (whole .pt files), <out>/torch_pickle (their data.pkl
records) and <out>/safetensors.

  /usr/bin/python3 fuzz/seed_corpus.py /tmp/ucp-corpus
"""

import shutil
import sys
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL_PT = [
    "s1_bf16opt_dp4/checkpoint/global_step5_universal/zero/ln_f.bias/fp32.pt",
    "s1_bf16opt_dp4/checkpoint/global_step5_universal/zero/ln_f.bias/step.pt",
    "s1_bf16opt_dp4/checkpoint/global_step5/mp_rank_00_model_states.pt",
    "s3_fp32_dp4/checkpoint/global_step5/zero_pp_rank_0_mp_rank_00_model_states.pt",
    "s3_fp32_dp4/checkpoint/global_step5/zero_pp_rank_0_mp_rank_00_optim_states.pt",
    "s2_fp32_dp2/checkpoint/global_step5/zero_pp_rank_0_mp_rank_00_optim_states.pt",
    "autoep_mixtral_s2_fp32_dp4_ep2/checkpoint/global_step5/layer_0_expert_0_mp_rank_00_model_states.pt",
]


def main(out):
    dirs = {name: out / name for name in ("torch_file", "torch_pickle", "safetensors")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    pts = [ROOT / "fixtures/deepspeed" / p for p in REAL_PT]
    pts += sorted((ROOT / "fixtures/hostile").glob("*.pt"))
    for i, pt in enumerate(pts):
        shutil.copy(pt, dirs["torch_file"] / f"{i:02d}_{pt.name}")
        try:
            with zipfile.ZipFile(pt) as z:
                for name in z.namelist():
                    if name.endswith("/data.pkl"):
                        (dirs["torch_pickle"] / f"{i:02d}_{pt.stem}.pkl").write_bytes(z.read(name))
        except (zipfile.BadZipFile, NotImplementedError, EOFError, ValueError, OSError, zlib.error):
            pass  # hostile archives are still whole-file seeds
    for st in sorted((ROOT / "fixtures/hostile").glob("*.safetensors")):
        shutil.copy(st, dirs["safetensors"] / st.name)
    for name, d in dirs.items():
        print(f"{name}: {len(list(d.iterdir()))} files in {d}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ucp-corpus"))
