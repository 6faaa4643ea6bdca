#!/usr/bin/python3
"""check_zero2_checkpoint.py CKPT_TAG_DIR [UCP_DIR]: torch.load every file make_zero2_checkpoint
wrote (Debian's /usr/bin/python3 with torch 1.13; DeepSpeed's pickled classes are stubbed), check
the ZeRO-2 layout (paddings, slice mappings, fp32 partitions == module weights, tied head), and,
given UCP_DIR (`ucp convert`'s output), that every parameter's fp32/exp_avg/exp_avg_sq equals the
concatenated partitions. Prints OK and exits 0, else raises."""
import enum, glob, os, sys, types

import torch


def stub_deepspeed():
    class LossScaler:
        pass

    class ZeroStageEnum(int, enum.Enum):
        disabled = 0
        optimizer_states = 1
        gradients = 2
        weights = 3

    class fragment_address:
        pass

    for name, attrs in {"deepspeed.runtime.fp16.loss_scaler": {"LossScaler": LossScaler},
                        "deepspeed.runtime.zero.config": {"ZeroStageEnum": ZeroStageEnum},
                        "deepspeed.utils.tensor_fragment": {"fragment_address": fragment_address}}.items():
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
        for k, v in attrs.items():
            setattr(sys.modules[name], k, v)


def main():
    stub_deepspeed()
    tag = sys.argv[1]
    ms = torch.load(os.path.join(tag, "mp_rank_00_model_states.pt"), map_location="cpu")
    dp = ms["dp_world_size"]
    shards = [torch.load(os.path.join(tag, f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt"), map_location="cpu")
              ["optimizer_state_dict"] for r in range(dp)]
    assert len(glob.glob(os.path.join(tag, "zero_pp_rank_*_optim_states.pt"))) == dp
    module = ms["module"]
    assert torch.equal(module["head.weight"], module["embed.weight"])
    assert ms["shared_params"] == {"head.weight": "embed.weight"}
    full = {}
    for g, shapes in enumerate(ms["param_shapes"]):
        states = {}
        for key in ("fp32", "exp_avg", "exp_avg_sq"):
            parts = []
            for r, s in enumerate(shards):
                assert s["partition_count"][g] == dp and s["zero_stage"] == 2
                if key == "fp32":
                    t = s["single_partition_of_fp32_groups"][g]
                    assert t.numel() == s["base_optimizer_state"]["state"][g]["exp_avg"].numel() - s["group_paddings"][g]
                else:
                    t = s["base_optimizer_state"]["state"][g][key]
                parts.append(t)
            states[key] = torch.cat(parts)
        offset = 0
        for name, shape in shapes.items():
            n = shape.numel()
            full[name] = {k: v[offset:offset + n].view(shape) for k, v in states.items()}
            assert torch.equal(full[name]["fp32"], module[name]), name
            offset += n
        assert all((s["base_optimizer_state"]["state"][g]["exp_avg_sq"] >= 0).all() for s in shards)
        for r, s in enumerate(shards):  # slice mappings cover [0, partition - padding) in order
            covered = sum(a.__dict__["numel"] for a in s["param_slice_mappings"][g].values())
            assert covered == s["single_partition_of_fp32_groups"][g].numel(), (r, g)
    assert torch.equal(ms["frozen_param_fragments"]["pos"], module["pos"])
    if len(sys.argv) > 2:
        ucp = os.path.join(sys.argv[2], "zero")
        for name, st in full.items():
            for key, want in st.items():
                got = torch.load(os.path.join(ucp, name, key + ".pt"), map_location="cpu")["param"]
                assert torch.equal(got, want), (name, key)
    print(f"OK: {len(full)} params, dp={dp}, {sum(v['fp32'].numel() for v in full.values())} elements")


if __name__ == "__main__":
    main()
