// `ucp reshard` (converters/pipelines/reshard.h) against DeepSpeed's exact reshard goldens
// (fixtures/deepspeed/<case>/reshard_*/checkpoint/global_step5: DeepSpeed loaded the case's UCP at
// another dp / autoep_size and saved at once), for every case, from the UCP and from the original
// ZeRO folder; and the ZeRO-1 <-> ZeRO-2 stage changes against fixtures/deepspeed_stage (DeepSpeed
// loaded the UCP at the other stage and saved at once). Each golden file is compared as a value
// tree, tensors bitwise (dtype, shape, values as CRC-32 of their row-major bytes), first difference
// printed. Not compared:
//   * ds_config, ds_version (the manifest's `legitimately_differ`: written by whoever saves);
//   * storage records (keys, sizes, offsets: storage sharing is not part of the contract);
//   * ZeRO-3: the param-group keys DeepSpeed's ZeRO-3 universal load gets wrong (it copies param
//     group 0's name / weight_decay onto every group, deepspeed_behaviour in the manifests). ucp
//     writes each group's own values; those are checked equal to the source checkpoint's instead.
#include "converters/pipelines/reshard.h"

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/commands/reshard_command.h"
#include "converters/pipelines/convert.h"
#include "converters/verify/verify.h"
#include "formats/torch/torch_file.h"
#include "gtest/gtest.h"
#include "tests/integration/convert_testutil.h"
#include "ucp/staging_dir.h"

namespace ucp {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Case {
  std::string name;
  std::string golden;  // reshard_* folder
  int dp;
  int ep;  // 0: keep
  std::vector<std::string> deepspeed_bug_keys;
  int stage = -1;  // target ZeRO stage; >= 0: the golden is in fixtures/deepspeed_stage/<name>
  // A fixtures/deepspeed_extra case (native MoE): DeepSpeed has no UCP of it, so the UCP input is
  // ucp's own (`ucp convert` into the scratch folder), the one DeepSpeed loaded for the golden.
  bool extra = false;
  // A fixtures/deepspeed_tp case (real AutoTP, tp 2): the golden is resume_tp<T>_dp<D>, DeepSpeed's
  // re-save right after loading the UCP at that topology.
  bool tp = false;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name << " -> " << c.golden; }

std::string FixtureSet(const std::string& set, const std::string& name) {
  const char* root = std::getenv("UCP_SOURCE_DIR");
  return absl::StrCat(root != nullptr ? root : ".", "/fixtures/", set, "/", name);
}

std::string CaseRoot(const Case& c) {
  if (c.tp) return FixtureSet("deepspeed_tp", c.name);
  return c.extra ? FixtureSet("deepspeed_extra", c.name) : testing::FixtureCase(c.name);
}

std::string GoldenRoot(const Case& c) {
  return c.stage >= 0 && !c.extra ? FixtureSet("deepspeed_stage", c.name) : CaseRoot(c);
}

const std::string kPgName = "optimizer_state_dict/optimizer_state_dict/param_groups/*/name";
const std::string kPgWd = "optimizer_state_dict/optimizer_state_dict/param_groups/*/weight_decay";

const Case kCases[] = {
    {"s1_fp32_dp2", "reshard_dp4", 4, 0, {}},
    {"s1_fp32_dp4", "reshard_dp2", 2, 0, {}},
    {"s2_fp32_dp2", "reshard_dp4", 4, 0, {}},
    {"s2_fp32_dp4", "reshard_dp2", 2, 0, {}},
    {"s2_bf16_dp2", "reshard_dp4", 4, 0, {}},
    {"s1_bf16opt_dp4", "reshard_dp2", 2, 0, {}},
    {"autoep_mixtral_s2_fp32_dp4_ep2", "reshard_dp2_ep1", 2, 1, {}},
    {"autoep_mixtral_s2_fp32_dp4_ep2", "reshard_dp4_ep4", 4, 4, {}},
    {"s3_fp32_dp2", "reshard_dp4", 4, 0, {kPgName, kPgWd}},
    {"s3_fp32_dp4", "reshard_dp2", 2, 0, {kPgName, kPgWd}},
    {"s3_fp32_1group_dp4", "reshard_dp2", 2, 0, {}},
    // ZeRO-3 bf16: DeepSpeed names the optimizer files bf16_zero_pp_rank_* (the model files stay
    // zero_pp_rank_*).
    {"s3_bf16_dp1", "reshard_dp2", 2, 0, {kPgName, kPgWd}},
    {"s3_bf16_dp2", "reshard_dp4", 4, 0, {kPgName, kPgWd}},
    {"s3_bf16_dp4", "reshard_dp2", 2, 0, {kPgName, kPgWd}},
    // ZeRO-1 bf16 without BF16_Optimizer (DeepSpeedZeroOptimizer, bf16_zero_pp_rank_* files).
    {"s1_bf16_dp2", "reshard_dp4", 4, 0, {}},
    {"autoep_qwen3_s3_fp32_dp4_ep2", "reshard_dp2_ep2", 2, 2, {kPgName}},
    {"autoep_deepseek_v3_s1_fp32_dp4_ep4", "reshard_dp2_ep1", 2, 1, {}},
    {"autoep_qwen3_s2_fp32_dp2_ep1", "reshard_dp4_ep2", 4, 2, {}},
    {"autoep_mixtral_s3_fp32_dp4_ep2", "reshard_dp2_ep1", 2, 1, {kPgName}},
    {"autoep_mixtral_s2_bf16_dp4_ep2", "reshard_dp2_ep1", 2, 1, {}},
    // Stage changes (stage_change.h), with a BF16_Optimizer <-> DeepSpeedZeroOptimizer change and
    // AutoEP.
    {"s2_fp32_dp4", "reshard_dp2_s1", 2, 0, {}, 1},
    {"s1_fp32_dp4", "reshard_dp2_s2", 2, 0, {}, 2},
    {"s2_bf16_dp2", "reshard_dp4_s1", 4, 0, {}, 1},
    {"s1_bf16opt_dp4", "reshard_dp2_s2", 2, 0, {}, 2},
    {"autoep_qwen3_s2_fp32_dp2_ep1", "reshard_dp4_ep2_s1", 4, 2, {}, 1},
    {"autoep_deepseek_v3_s1_fp32_dp4_ep4", "reshard_dp2_ep2_s2", 2, 2, {}, 2},
    // Native DeepSpeed MoE (ep_size 2 fixed by the model), incl. expert files and a stage change.
    {"moe_s2_fp32_dp4_ep2", "reshard_dp2_ep2", 2, 0, {}, -1, true},
    {"moe_s2_fp32_dp4_ep2", "reshard_dp4_ep2", 4, 0, {}, -1, true},
    {"moe_s2_fp32_dp4_ep2", "reshard_dp8_ep2", 8, 0, {}, -1, true},
    {"moe_s2_fp32_dp4_ep2", "reshard_dp2_ep2_s1", 2, 0, {}, 1, true},
    // ZeRO-0 (no ZeRO) -> ZeRO-1/2: from the ZeRO-0 folder only (its UCP has no param_shapes).
    {"s0_fp32_dp2", "reshard_dp2_s1", 2, 0, {}, 1, true},
    {"s0_fp32_dp2", "reshard_dp4_s2", 4, 0, {}, 2, true},
    {"s0_bf16_dp2", "reshard_dp2_s2", 2, 0, {}, 2, true},
    // AutoTP tp 2 (each TP rank's slices re-partitioned over the new dp; from the UCP, cut by its
    // universal_checkpoint_info rules), against DeepSpeed's re-saves at tp 2.
    {"autotp_llama_s1_fp32_tp2_dp1", "resume_tp2_dp2", 2, 0, {}, -1, false, true},
    {"autotp_llama_s1_fp32_tp2_dp1", "resume_tp2_dp1", 1, 0, {}, -1, false, true},
    {"autotp_llama_s2_fp32_tp2_dp2", "resume_tp2_dp1", 1, 0, {}, -1, false, true},
    {"autotp_llama_s2_bf16_tp2_dp1", "resume_tp2_dp1", 1, 0, {}, -1, false, true},
    {"autotp_llama_s2_bf16_tp2_dp1", "resume_tp2_dp2", 2, 0, {}, -1, false, true},
};

// A whole file's bytes.
std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// param_groups of a digested ZeRO-3 optimizer file, as JSON.
json Zero3ParamGroups(const json& digest) {
  auto get = [](const json& d, const std::string& key) -> json {
    if (!d.is_object() || !d.contains("dict")) return nullptr;
    for (const json& kv : d.at("dict")) {
      if (kv[0] == key) return kv[1];
    }
    return nullptr;
  };
  return get(get(get(digest, "optimizer_state_dict"), "optimizer_state_dict"), "param_groups");
}

std::set<std::string> Names(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

void RunCase(const Case& c, bool from_ucp) {
  const std::string root = CaseRoot(c);
  testing::ScratchDir scratch("reshard");
  converters::pipelines::ReshardOptions o;
  o.input = root + (from_ucp ? "/checkpoint/global_step5_universal" : "/checkpoint");
  if (from_ucp && c.extra) {
    converters::pipelines::ConvertOptions co;
    co.input = root + "/checkpoint";
    co.output = scratch.path() + "/ucp";
    co.execute.fsync = false;
    absl::StatusOr<converters::pipelines::ConvertResult> u = converters::pipelines::Convert(co);
    ASSERT_TRUE(u.ok()) << u.status();
    o.input = co.output;
    if (c.name.rfind("s0_", 0) == 0) {  // a ZeRO-0 UCP says nothing of param groups: refused, named
      o.output = scratch.path() + "/out";
      o.dp = c.dp;
      o.zero_stage = c.stage;
      absl::StatusOr<converters::pipelines::ReshardResult> r = converters::pipelines::Reshard(o);
      EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
      EXPECT_NE(r.status().message().find("reshard the ZeRO-0 folder itself"), std::string::npos)
          << r.status();
      EXPECT_FALSE(fs::exists(o.output));
      return;
    }
  }
  o.output = scratch.path() + "/out";
  o.dp = c.dp;
  o.autoep_size = c.ep;
  o.zero_stage = c.stage;
  o.execute.threads = 2;
  o.execute.fsync = false;
  absl::StatusOr<converters::pipelines::ReshardResult> r = converters::pipelines::Reshard(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tag, "global_step5");
  if (c.stage >= 0) {
    EXPECT_EQ(r->info.zero_stage, c.stage);
  }
  std::ifstream latest(o.output + "/latest");
  std::stringstream tag;
  tag << latest.rdbuf();
  EXPECT_EQ(tag.str(), "global_step5");

  // `ucp verify` passes on what was written: fragments cover every parameter once, steps agree,
  // padding is zero, and the manifest's sizes and CRC-32s match.
  absl::StatusOr<converters::verify::VerifyReport> verified =
      converters::verify::VerifyCheckpoint(o.output);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(verified->ok()) << converters::verify::ReportToText(*verified);
  EXPECT_EQ(verified->kind, "zero");
  EXPECT_GT(verified->params_checked, 5);
  EXPECT_GT(verified->files_checked, 2);

  const std::string golden = GoldenRoot(c) + "/" + c.golden + "/checkpoint/global_step5";
  const std::string ours_dir = o.output + "/global_step5";
  EXPECT_EQ(Names(ours_dir), Names(golden));
  std::set<std::string> excluded = {"ds_config", "ds_version", "optimizer_state_dict/ds_version"};
  for (const std::string& k : c.deepspeed_bug_keys) excluded.insert(k);
  for (const std::string& name : Names(golden)) {
    SCOPED_TRACE(name);
    if (!fs::exists(ours_dir + "/" + name)) continue;  // reported by the name comparison
    if (name.find("_expert_") != std::string::npos) {  // native MoE expert files: byte-identical
      EXPECT_EQ(ReadFile(ours_dir + "/" + name), ReadFile(golden + "/" + name));
    }
    absl::StatusOr<json> a = testing::TorchFileDigest(ours_dir + "/" + name);
    absl::StatusOr<json> b = testing::TorchFileDigest(golden + "/" + name);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    if (!c.deepspeed_bug_keys.empty() && name.find("optim_states") != std::string::npos) {
      // The keys DeepSpeed's ZeRO-3 load gets wrong: ucp keeps every group's own values, the
      // source's. The source's rank-0 optimizer file: zero_pp_rank_0_... or, in bf16 runs,
      // bf16_zero_pp_rank_0_...
      std::string src_optim =
          root + "/checkpoint/global_step5/zero_pp_rank_0_mp_rank_00_optim_states.pt";
      if (!fs::exists(src_optim)) {
        src_optim =
            root + "/checkpoint/global_step5/bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt";
      }
      absl::StatusOr<json> src = testing::TorchFileDigest(src_optim);
      ASSERT_TRUE(src.ok()) << src.status();
      json want = Zero3ParamGroups(*src);
      // ...except that an AutoEP expert group is named after its EP group, ep_size_<target ep>.
      for (json& g : want) {
        for (json& kv : g["dict"]) {
          if (c.ep > 0 && kv[0] == "name" && kv[1].get<std::string>().rfind("ep_size_", 0) == 0) {
            kv[1] = absl::StrCat("ep_size_", c.ep);
          }
        }
      }
      EXPECT_EQ(Zero3ParamGroups(*a), want);
      EXPECT_FALSE(Zero3ParamGroups(*a).is_null());
    }
    testing::NormalizeDigest(*a, "", excluded);
    testing::NormalizeDigest(*b, "", excluded);
    EXPECT_EQ(testing::FirstDifference(*a, *b), "");
  }
}

class ReshardTest : public ::testing::TestWithParam<Case> {};

TEST_P(ReshardTest, FromUcpMatchesDeepSpeedGolden) { RunCase(GetParam(), /*from_ucp=*/true); }
TEST_P(ReshardTest, FromZeroFolderMatchesDeepSpeedGolden) {
  RunCase(GetParam(), /*from_ucp=*/false);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ReshardTest, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& p) {
                           return p.param.name + "_" + p.param.golden;
                         });

// Topologies without a golden (odd dp, more padding, other ep): ZeRO → reshard → convert gives back
// DeepSpeed's own UCP of the source, every state bitwise. Only the model-states file (dp_world_size
// and, for AutoEP, the layer records follow the target) and optimizer_state.pt's partition_count
// may differ.
struct RoundTrip {
  std::string name;
  int dp;
  int ep;
};

void PrintTo(const RoundTrip& c, std::ostream* os) {
  *os << c.name << " dp " << c.dp << " ep " << c.ep;
}

class ReshardRoundTripTest : public ::testing::TestWithParam<RoundTrip> {};

TEST_P(ReshardRoundTripTest, ConvertOfReshardEqualsDeepSpeedUcp) {
  const RoundTrip& c = GetParam();
  const std::string root = testing::FixtureCase(c.name);
  testing::ScratchDir scratch("reshard_rt");
  converters::pipelines::ReshardOptions o;
  o.input = root + "/checkpoint";
  o.output = scratch.path() + "/zero";
  o.dp = c.dp;
  o.autoep_size = c.ep;
  o.execute.threads = 2;
  o.execute.fsync = false;
  absl::StatusOr<converters::pipelines::ReshardResult> r = converters::pipelines::Reshard(o);
  ASSERT_TRUE(r.ok()) << r.status();
  converters::pipelines::ConvertOptions co;
  co.input = o.output;
  co.output = scratch.path() + "/ucp";
  co.execute.threads = 2;
  co.execute.fsync = false;
  absl::StatusOr<converters::pipelines::ConvertResult> u = converters::pipelines::Convert(co);
  ASSERT_TRUE(u.ok()) << u.status();
  absl::StatusOr<testing::FolderComparison> cmp = testing::CompareFolders(
      co.output, root + "/checkpoint/global_step5_universal", "ucp_manifest.json");
  ASSERT_TRUE(cmp.ok()) << cmp.status();
  for (const std::string& p : cmp->problems) {
    if (p.find("mp_rank_00_model_states.pt") != std::string::npos) continue;
    // partition_count = [dp] * groups (§5.3); DeepSpeed's own round trip differs there too.
    if (p.rfind("zero/optimizer_state.pt: value tree differs at .dict['partition_count']", 0) == 0)
      continue;
    ADD_FAILURE() << p;
  }
  EXPECT_GT(cmp->identical.size() + cmp->tree_equal.size(), 10u);
}

INSTANTIATE_TEST_SUITE_P(Topologies, ReshardRoundTripTest,
                         ::testing::Values(RoundTrip{"s2_fp32_dp2", 3, 0},
                                           RoundTrip{"s1_fp32_dp4", 7, 0},
                                           RoundTrip{"s2_bf16_dp2", 5, 0},
                                           RoundTrip{"s1_bf16opt_dp4", 8, 0},
                                           RoundTrip{"autoep_mixtral_s2_fp32_dp4_ep2", 8, 2},
                                           RoundTrip{"autoep_mixtral_s2_fp32_dp4_ep2", 6, 1}),
                         [](const ::testing::TestParamInfo<RoundTrip>& p) {
                           return absl::StrCat(p.param.name, "_dp", p.param.dp, "_ep", p.param.ep);
                         });

// tp 2 -> tp 1 (DeepSpeed cannot load a tp-2 UCP at tp 1, so there is no golden): from DeepSpeed's
// UCP of each real AutoTP run, at dp 1 and 2. `ucp verify` passes; converting the result gives
// DeepSpeed's UCP back, every state bitwise (only the model-states files and partition_count
// differ); the module holds the whole fp32 masters in the module's dtype (bf16: rounded to nearest
// even, as torch's copy_ does).
float Bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000u;
  std::memcpy(&x, &u, 4);
  return x;
}

// Every trainable module entry of `model` is its UCP fp32 master (in the entry's dtype).
int CheckModuleIsTheMasters(const formats::torch::TorchFile& model, const std::string& ucp) {
  int checked = 0;
  for (const auto& [k, v] : model.root().Get("module")->entries()) {
    absl::StatusOr<formats::torch::TorchFile> fp32 =
        formats::torch::TorchFile::OpenPath(ucp + "/zero/" + k->str() + "/fp32.pt");
    if (!fp32.ok()) continue;  // not trainable
    absl::StatusOr<Buffer> master = fp32->TensorBytes(fp32->root().Get("param")->tensor());
    absl::StatusOr<Buffer> weight = model.TensorBytes(v->tensor());
    EXPECT_TRUE(master.ok() && weight.ok());
    if (!master.ok() || !weight.ok()) return checked;
    const size_t n = master->size() / 4;
    EXPECT_EQ(v->tensor().NumElements(), static_cast<int64_t>(n)) << k->str();
    for (size_t i = 0; i < n && v->tensor().NumElements() == static_cast<int64_t>(n); ++i) {
      float m, w = 0;
      std::memcpy(&m, master->data() + 4 * i, 4);
      if (v->tensor().dtype == DType::kBF16) {
        uint16_t h;
        std::memcpy(&h, weight->data() + 2 * i, 2);
        const uint32_t bits = static_cast<uint32_t>(h) << 16;
        std::memcpy(&w, &bits, 4);
        m = Bf16(m);
      } else {
        std::memcpy(&w, weight->data() + 4 * i, 4);
      }
      if (w != m) {
        ADD_FAILURE() << k->str() << "[" << i << "]: " << w << " != " << m;
        break;
      }
    }
    ++checked;
  }
  return checked;
}

TEST(ReshardTpTest, Tp2ToTp1FromTheUcpGivesTheUcpBack) {
  for (const char* name : {"autotp_llama_s1_fp32_tp2_dp1", "autotp_llama_s2_fp32_tp2_dp2",
                           "autotp_llama_s2_bf16_tp2_dp1"}) {
    for (int dp : {1, 2}) {
      SCOPED_TRACE(absl::StrCat(name, " dp ", dp));
      const std::string ucp =
          FixtureSet("deepspeed_tp", name) + "/checkpoint/global_step5_universal";
      testing::ScratchDir scratch("reshard_tp1");
      converters::pipelines::ReshardOptions o;
      o.input = ucp;
      o.output = scratch.path() + "/zero";
      o.dp = dp;
      o.tp = 1;
      o.execute.fsync = false;
      absl::StatusOr<converters::pipelines::ReshardResult> r = converters::pipelines::Reshard(o);
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->info.tp_size, 1);
      const std::string tag = o.output + "/global_step5";
      EXPECT_EQ(Names(tag).count("mp_rank_01_model_states.pt"), 0u);
      absl::StatusOr<converters::verify::VerifyReport> verified =
          converters::verify::VerifyCheckpoint(o.output);
      ASSERT_TRUE(verified.ok()) << verified.status();
      EXPECT_TRUE(verified->ok()) << converters::verify::ReportToText(*verified);
      converters::pipelines::ConvertOptions co;
      co.input = o.output;
      co.output = scratch.path() + "/ucp";
      co.execute.fsync = false;
      absl::StatusOr<converters::pipelines::ConvertResult> u = converters::pipelines::Convert(co);
      ASSERT_TRUE(u.ok()) << u.status();
      absl::StatusOr<testing::FolderComparison> cmp =
          testing::CompareFolders(co.output, ucp, "ucp_manifest.json");
      ASSERT_TRUE(cmp.ok()) << cmp.status();
      for (const std::string& p : cmp->problems) {
        if (p.find("_model_states.pt") != std::string::npos) continue;
        if (p.rfind("zero/optimizer_state.pt: value tree differs at .dict['partition_count']", 0) ==
            0)
          continue;
        ADD_FAILURE() << p;
      }
      EXPECT_GT(cmp->identical.size() + cmp->tree_equal.size(), 60u);
      absl::StatusOr<formats::torch::TorchFile> model =
          formats::torch::TorchFile::OpenPath(tag + "/mp_rank_00_model_states.pt");
      ASSERT_TRUE(model.ok()) << model.status();
      EXPECT_EQ(model->root().Get("mp_world_size")->int_value(), 1);
      EXPECT_EQ(CheckModuleIsTheMasters(*model, ucp), 21);
    }
  }
  // From the ZeRO folder a tp change is refused, pointing at the UCP.
  converters::pipelines::ReshardOptions o;
  o.input = FixtureSet("deepspeed_tp", "autotp_llama_s1_fp32_tp2_dp1") + "/checkpoint";
  o.dp = 1;
  o.tp = 1;
  absl::StatusOr<converters::pipelines::PlannedReshard> p = converters::pipelines::PlanReshard(o);
  EXPECT_EQ(p.status().code(), absl::StatusCode::kUnimplemented) << p.status();
  EXPECT_NE(p.status().message().find("reshard its UCP"), std::string::npos) << p.status();
}

TEST(ReshardRefusalTest, InfeasibleTargetsAreRefusedUpFront) {
  const std::string root = testing::FixtureCase("autoep_mixtral_s2_fp32_dp4_ep2");
  testing::ScratchDir scratch("reshard_refuse");
  converters::pipelines::ReshardOptions o;
  o.input = root + "/checkpoint/global_step5_universal";
  o.output = scratch.path() + "/out";
  o.execute.fsync = false;
  o.dp = 4;
  o.autoep_size = 3;  // divides neither the 4 experts nor dp 4
  absl::StatusOr<converters::pipelines::ReshardResult> r = converters::pipelines::Reshard(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  o.autoep_size = 0;
  o.zero_stage = 3;
  r = converters::pipelines::Reshard(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find("ZeRO-2 checkpoint, target ZeRO-3: not supported"),
            std::string::npos)
      << r.status();
  o.zero_stage = 0;
  r = converters::pipelines::Reshard(o);
  EXPECT_NE(r.status().message().find("ZeRO-0 keeps the whole optimizer"), std::string::npos)
      << r.status();
  o.zero_stage = 4;
  r = converters::pipelines::Reshard(o);
  EXPECT_NE(r.status().message().find("ZeRO stage 4 does not exist"), std::string::npos)
      << r.status();
  // ZeRO-3 -> 1/2, from the UCP and from the ZeRO folder.
  for (const char* input : {"/checkpoint/global_step5_universal", "/checkpoint"}) {
    o.input = testing::FixtureCase("s3_fp32_dp4") + input;
    o.zero_stage = 2;
    r = converters::pipelines::Reshard(o);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    EXPECT_NE(r.status().message().find("ZeRO-3 checkpoint, target ZeRO-2: not supported"),
              std::string::npos)
        << r.status();
  }
  // Native MoE: the model fixes ep_size.
  o.input = FixtureSet("deepspeed_extra", "moe_s2_fp32_dp4_ep2") + "/checkpoint";
  o.zero_stage = -1;
  o.dp = 4;
  o.autoep_size = 4;
  r = converters::pipelines::Reshard(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_NE(r.status().message().find("the model fixes its ep_size"), std::string::npos)
      << r.status();
  EXPECT_FALSE(fs::exists(o.output));
  EXPECT_FALSE(fs::exists(ucp::StagingPathFor(o.output)));
}

TEST(ReshardCommandTest, DryRunWritesNothingAndErrorsAreOneLine) {
  const std::string root = testing::FixtureCase("s2_fp32_dp2");
  testing::ScratchDir scratch("reshard_cli");
  cli::ReshardCommandOptions o;
  o.input = root + "/checkpoint/global_step5_universal";
  o.output = scratch.path() + "/out";
  o.dp = 3;
  o.dry_run = true;
  std::ostringstream out, err;
  EXPECT_EQ(cli::RunReshard(o, out, err), 0) << err.str();
  EXPECT_NE(out.str().find("global_step5 (dry run: nothing written)"), std::string::npos)
      << out.str();
  EXPECT_FALSE(fs::exists(o.output));
  o.dry_run = false;
  o.autoep_size = 2;  // no AutoEP layers
  std::ostringstream out2, err2;
  EXPECT_EQ(cli::RunReshard(o, out2, err2), 2);  // a target that cannot work: a usage error
  EXPECT_EQ(err2.str().rfind("error: ", 0), 0u) << err2.str();
  EXPECT_NE(err2.str().find("no AutoEP layers"), std::string::npos) << err2.str();
  EXPECT_FALSE(fs::exists(o.output));
}

// issue 16 #4: `--dp 1000000` (even --dry-run) grew to 6 GB planning a million ranks. Absurd
// targets are refused from counts alone, before any per-rank structure exists, naming the
// numbers; usage errors exit 2. Every stage and both inputs.
TEST(ReshardCommandTest, AbsurdTargetsAreUsageErrors) {
  testing::ScratchDir scratch("reshard_absurd");
  for (const char* input : {"s2_fp32_dp2:checkpoint", "s3_fp32_dp2:checkpoint",
                            "s1_fp32_dp4:checkpoint/global_step5_universal",
                            "autoep_mixtral_s2_fp32_dp4_ep2:checkpoint"}) {
    for (bool dry_run : {true, false}) {
      SCOPED_TRACE(absl::StrCat(input, dry_run ? " --dry-run" : ""));
      cli::ReshardCommandOptions o;
      const std::pair<std::string, std::string> where = absl::StrSplit(input, ':');
      o.input = testing::FixtureCase(where.first) + "/" + where.second;
      o.output = scratch.path() + "/out";
      o.dp = 1000000;
      o.dry_run = dry_run;
      std::ostringstream out, err;
      EXPECT_EQ(cli::RunReshard(o, out, err), 2);
      EXPECT_EQ(err.str().rfind("error: target dp 1000000: ", 0), 0u) << err.str();
      EXPECT_NE(err.str().find(" MiB of plan metadata"), std::string::npos) << err.str();
      EXPECT_EQ(out.str(), "");
      EXPECT_FALSE(fs::exists(o.output));
      EXPECT_FALSE(fs::exists(o.output + ".partial"));
    }
  }
  // Past what a Topology holds at all.
  cli::ReshardCommandOptions o;
  o.input = testing::FixtureCase("s2_fp32_dp2") + "/checkpoint";
  o.output = scratch.path() + "/out";
  o.dp = 1 << 21;
  o.dry_run = true;
  std::ostringstream out, err;
  EXPECT_EQ(cli::RunReshard(o, out, err), 2);
  EXPECT_NE(err.str().find("dp 2097152 is not in [1, 1048576]"), std::string::npos) << err.str();
  // A large but real target still plans (and --memory-limit raises the metadata limit).
  o.dp = 2048;
  std::ostringstream out2, err2;
  EXPECT_EQ(cli::RunReshard(o, out2, err2), 0) << err2.str();
}

}  // namespace
}  // namespace ucp
