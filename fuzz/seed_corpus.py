#!/usr/bin/python3
"""Builds starting corpora for the libFuzzer targets (fuzz/README.md) from fixtures/hostile and a
few real fixture files: <out>/torch_file (whole .pt files), <out>/torch_pickle (their data.pkl
records) and <out>/safetensors; and, written here, <out>/dist_wire (frame streams) and
<out>/dist_journal (journals of the share dist_journal_fuzz.cc fixes).

  /usr/bin/python3 fuzz/seed_corpus.py /tmp/ucp-corpus
"""

import shutil
import struct
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


def frame(kind, payload):
    """A frame of converters/execute/dist_wire.h: magic 'UCPD' | type | length | payload."""
    return struct.pack("<IIQ", 0x44504355, kind, len(payload)) + payload


def journal_line(text):
    """A line of converters/execute/dist_journal.h: the text and its CRC-32 in 8 hex digits."""
    return f"{text} #{zlib.crc32(text.encode()):08x}\n"


def dist_seeds(dirs):
    # Byte 0 of a dist_wire input is the append size - 1.
    hello = frame(1, struct.pack("<IIIQ", 2, 1, 2, 0xABCDEF))
    report = frame(4, struct.pack("<III", 1, 2, 3) + struct.pack("<QI", 4096, 77))
    failed = frame(3, b"rank 1: disk full")
    for i, stream in enumerate([hello + frame(2, b"") + report + failed, hello, report * 3]):
        (dirs["dist_wire"] / f"{i:02d}_frames").write_bytes(bytes([i * 7]) + stream)
    header = journal_line(f"ucp-dist-journal 2 plan {1:016x} work {2:016x} rank 0 world 2")
    batches = journal_line("batch 0 11 4294967295") + journal_line("batch 2 0 1 2")
    written = journal_line("file 0 65536 3141592653")
    for i, text in enumerate([header + batches + written, header + batches[:-5], header]):
        (dirs["dist_journal"] / f"{i:02d}_journal").write_text(text)


def main(out):
    dirs = {name: out / name for name in ("torch_file", "torch_pickle", "safetensors",
                                          "dist_wire", "dist_journal")}
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
    dist_seeds(dirs)
    for name, d in dirs.items():
        print(f"{name}: {len(list(d.iterdir()))} files in {d}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ucp-corpus"))
