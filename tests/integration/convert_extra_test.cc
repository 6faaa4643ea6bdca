// End-to-end on fixtures/deepspeed_extra: layouts DeepSpeed's own ds_to_universal.py cannot
// convert (ZeRO-0: no optimizer shards; native DeepSpeed MoE: it crashes merging local experts).
// There is no DeepSpeed UCP to compare with, so the UCP tensors are compared bit for bit with the
// values in the checkpoint itself: ZeRO-0 against the model-states file's module / master weights
// and torch optimizer state; native MoE against the expert files and the flat ZeRO-2 partitions.
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "converters/pipelines/convert.h"
#include "formats/deepspeed/value_access.h"
#include "formats/torch/torch_file.h"
#include "gtest/gtest.h"
#include "tests/integration/convert_testutil.h"
#include "ucp/manifest.h"

namespace ucp::testing {
namespace {

using converters::pipelines::Convert;
using converters::pipelines::ConvertOptions;
using formats::deepspeed::GetByInt;
using formats::torch::TensorRef;
using formats::torch::TorchFile;
using formats::torch::Value;
using formats::torch::ValueKind;

std::string Extra(const std::string& name) {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  return absl::StrCat(root != nullptr ? root : ".", "/fixtures/deepspeed_extra/", name);
}

std::string ConvertCase(const std::string& name, const ScratchDir& scratch) {
  ConvertOptions o;
  o.input = Extra(name) + "/checkpoint/global_step5";
  o.output = scratch.path() + "/global_step5_universal";
  o.execute.threads = 2;
  o.execute.fsync = false;
  auto r = Convert(o);
  EXPECT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(ucp::VerifyDirectory(o.output).ok());
  return o.output;
}

TorchFile Open(const std::string& path) {
  auto f = TorchFile::OpenPath(path);
  EXPECT_TRUE(f.ok()) << path << ": " << f.status();
  return *std::move(f);
}

std::string Bytes(const TorchFile& f, const Value* v) {
  EXPECT_TRUE(v != nullptr && v->is(ValueKind::kTensor));
  auto b = f.TensorBytes(v->tensor());
  EXPECT_TRUE(b.ok()) << b.status();
  return std::string(b->AsStringView());
}

// The ZeRO-0 fixtures' parameters in optimizer order: the harness's group 0 (>= 2-D weights) then
// group 1 (the rest), each in named_parameters() order; `pos` is frozen, head.weight tied.
std::vector<std::string> Zero0Names() {
  std::vector<std::string> n = {"embed.weight"};
  for (int b = 0; b < 2; ++b) {
    for (const char* f : {"fc1", "fc2"}) n.push_back(absl::StrCat("blocks.", b, ".", f, ".weight"));
  }
  n.push_back("head_bias");
  for (int b = 0; b < 2; ++b) {
    for (const char* x : {"ln.weight", "ln.bias", "fc1.bias", "fc2.bias"}) {
      n.push_back(absl::StrCat("blocks.", b, ".", x));
    }
  }
  n.push_back("ln_f.weight");
  n.push_back("ln_f.bias");
  return n;
}

class Zero0Test : public ::testing::TestWithParam<const char*> {};

TEST_P(Zero0Test, UcpEqualsTheModelStatesFile) {
  const std::string name = GetParam();
  const bool bf16 = name.find("bf16") != std::string::npos;
  ScratchDir scratch(name);
  const std::string ucp = ConvertCase(name, scratch);
  TorchFile model = Open(Extra(name) + "/checkpoint/global_step5/mp_rank_00_model_states.pt");
  const Value* optimizer = model.root().Get("optimizer");
  ASSERT_NE(optimizer, nullptr);
  const Value* torch_state = bf16 ? optimizer->Get("optimizer_state_dict") : optimizer;
  ASSERT_NE(torch_state, nullptr);
  const Value* state = torch_state->Get("state");
  const Value* groups = torch_state->Get("param_groups");
  const std::vector<std::string> names = Zero0Names();
  size_t i = 0;
  for (size_t g = 0; g < groups->items().size(); ++g) {
    const Value* params = groups->items()[g]->Get("params");
    for (size_t j = 0; j < params->items().size(); ++j, ++i) {
      ASSERT_LT(i, names.size());
      const std::string dir = absl::StrCat(ucp, "/zero/", names[i], "/");
      const Value* s = GetByInt(*state, params->items()[j]->int_value());
      ASSERT_NE(s, nullptr);
      const Value* master = bf16 ? optimizer->Get("fp32_groups")->items()[g]->items()[j]
                                 : model.root().Get("module")->Get(names[i]);
      const std::pair<const char*, const Value*> expected[] = {
          {"fp32", master}, {"exp_avg", s->Get("exp_avg")}, {"exp_avg_sq", s->Get("exp_avg_sq")}};
      for (const auto& [stem, want] : expected) {
        TorchFile f = Open(dir + stem + ".pt");
        const Value* cat_dim = f.root().Get("cat_dim");
        ASSERT_TRUE(cat_dim != nullptr && cat_dim->int_value() == 0) << dir << stem;
        const Value* param = f.root().Get("param");
        ASSERT_NE(param, nullptr);
        EXPECT_EQ(param->tensor().shape, want->tensor().shape) << dir << stem;
        EXPECT_EQ(param->tensor().dtype, DType::kF32) << dir << stem;
        EXPECT_EQ(Bytes(f, param), Bytes(model, want)) << dir << stem;
      }
      TorchFile step = Open(dir + "step.pt");
      EXPECT_EQ(Bytes(step, &step.root()), Bytes(model, s->Get("step"))) << dir;
    }
  }
  EXPECT_EQ(i, names.size());
  // Frozen and tied parameters have no optimizer state, hence no folder (as in DeepSpeed's UCP).
  EXPECT_FALSE(std::filesystem::exists(ucp + "/zero/pos"));
  EXPECT_FALSE(std::filesystem::exists(ucp + "/zero/head.weight"));
  // optimizer_state.pt: what DeepSpeed's ZeRO-1/2 loader reads (ds_version, param_groups).
  TorchFile os = Open(ucp + "/zero/optimizer_state.pt");
  const Value* version = os.root().Get("ds_version");
  ASSERT_TRUE(version != nullptr && version->is(ValueKind::kStr));
  EXPECT_EQ(version->str(), model.root().Get("ds_version")->str());
  const Value* pg = os.root().Get("param_groups");
  ASSERT_TRUE(pg != nullptr && pg->is_sequence());
  ASSERT_EQ(pg->items().size(), 2u);
  EXPECT_EQ(pg->items()[0]->Get("name")->str(), "decay");
  EXPECT_EQ(pg->items()[1]->Get("weight_decay")->float_value(), 0.0);
  EXPECT_TRUE(std::filesystem::exists(ucp + "/mp_rank_00_model_states.pt"));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Zero0Test, ::testing::Values("s0_fp32_dp2", "s0_bf16_dp2"));

// Native MoE, ZeRO-2, dp 4, ep 2 (expert-DP 2: EP rank e holds dp ranks e and e + 2), 4 experts in
// blocks.1.moe, 2 local experts per EP rank, each expert an MLP with Linear `0` and `2`.
TEST(NativeMoeTest, ExpertTensorsStackEpRanksAndEqualTheCheckpoint) {
  ScratchDir scratch("native_moe");
  const std::string ucp = ConvertCase("moe_s2_fp32_dp4_ep2", scratch);
  const std::string tag = Extra("moe_s2_fp32_dp4_ep2") + "/checkpoint/global_step5/";
  const std::string prefix = "blocks.1.moe.deepspeed_moe.experts.deepspeed_experts.";
  std::vector<TorchFile> shards;
  for (int dp = 0; dp < 4; ++dp) {
    shards.push_back(Open(absl::StrCat(tag, "zero_pp_rank_", dp, "_mp_rank_00_optim_states.pt")));
  }
  // Flat groups 2 (weights) and 3 (biases) hold the experts in param_shapes order:
  // local 0 Linear 0, local 0 Linear 2, local 1 Linear 0, local 1 Linear 2.
  const int64_t sizes[2][2] = {{44 * 20, 20 * 44}, {44, 20}};
  for (int kind = 0; kind < 2; ++kind) {
    const char* suffix = kind == 0 ? "weight" : "bias";
    // Each EP rank's flat partitions of this group, in expert-DP order, per state.
    for (const char* stem : {"fp32", "exp_avg", "exp_avg_sq"}) {
      std::string flat[2];
      for (int ep = 0; ep < 2; ++ep) {
        for (int edp = 0; edp < 2; ++edp) {
          const TorchFile& shard = shards[edp * 2 + ep];
          const Value* osd = shard.root().Get("optimizer_state_dict");
          const Value* v =
              std::string(stem) == "fp32"
                  ? osd->Get("single_partition_of_fp32_groups")->items()[2 + kind]
                  : GetByInt(*osd->Get("base_optimizer_state")->Get("state"), 2 + kind)->Get(stem);
          flat[ep] += Bytes(shard, v);
        }
      }
      int64_t offset = 0;
      for (int local = 0; local < 2; ++local) {
        for (int layer = 0; layer < 2; ++layer) {
          const std::string rest = absl::StrCat(layer == 0 ? "0." : "2.", suffix);
          const std::string path =
              absl::StrCat(ucp, "/zero/", prefix, local, ".", rest, "/", stem, ".pt");
          TorchFile f = Open(path);
          EXPECT_TRUE(f.root().Get("is_expert_param")->bool_value()) << path;
          EXPECT_EQ(f.root().Get("ep_num_experts")->int_value(), 2) << path;
          EXPECT_EQ(f.root().Get("cat_dim")->int_value(), 0) << path;
          const Value* param = f.root().Get("param");
          ASSERT_EQ(param->tensor().shape.dim(0), 2) << path;
          const std::string got = Bytes(f, param);
          const int64_t n = sizes[kind][layer] * 4;
          ASSERT_EQ(got.size(), static_cast<size_t>(2 * n)) << path;
          for (int ep = 0; ep < 2; ++ep) {
            EXPECT_EQ(got.substr(ep * n, n), flat[ep].substr(offset, n))
                << path << " ep rank " << ep;
            if (std::string(stem) != "fp32") continue;
            // fp32 training: the expert file of global expert ep * 2 + local holds the same
            // weights.
            const int global = ep * 2 + local;
            TorchFile expert =
                Open(absl::StrCat(tag, "layer_0_expert_", global, "_mp_rank_00_model_states.pt"));
            const Value* weights = expert.root().Get(absl::StrCat(prefix, global, ".", rest));
            EXPECT_EQ(got.substr(ep * n, n), Bytes(expert, weights)) << path << " ep rank " << ep;
          }
          offset += n;
        }
      }
    }
  }
  // Dense parameters are ordinary ZeRO-2 UCP entries equal to the module weights.
  TorchFile model = Open(tag + "mp_rank_00_model_states.pt");
  for (const char* dense :
       {"embed.weight", "blocks.1.moe.deepspeed_moe.gate.wg.weight", "head_bias"}) {
    TorchFile f = Open(absl::StrCat(ucp, "/zero/", dense, "/fp32.pt"));
    EXPECT_EQ(f.root().Get("is_expert_param"), nullptr) << dense;
    EXPECT_EQ(Bytes(f, f.root().Get("param")), Bytes(model, model.root().Get("module")->Get(dense)))
        << dense;
  }
  TorchFile step = Open(absl::StrCat(ucp, "/zero/", prefix, "1.0.weight/step.pt"));
  ASSERT_TRUE(step.root().is(ValueKind::kTensor));
  // Expert files are not part of a UCP (DeepSpeed's universal load reads only zero/).
  EXPECT_FALSE(std::filesystem::exists(ucp + "/layer_0_expert_0_mp_rank_00_model_states.pt"));
}

}  // namespace
}  // namespace ucp::testing
