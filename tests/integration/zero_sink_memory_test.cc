// The ZeRO sink from memory (converters/sinks/zero/memory_input.h, what the runtime's save will
// call): a real DeepSpeed run's state, described through the memory API with every value read
// from DeepSpeed's own UCP of it (fixtures/deepspeed/<case>/checkpoint/global_step5_universal:
// module weights and the model-states skeleton from its copied mp_rank_00 file, masters and moments
// from zero/<param>/*.pt, hyper-parameters from optimizer_state.pt, steps from step.pt), saved at
// the run's own topology, must equal the checkpoint DeepSpeed itself saved
// (…/checkpoint/global_step5) file by file, value by value (as tests/integration/reshard_test.cc
// compares goldens); and at another dp, a convert of it must give back DeepSpeed's UCP.
#include <array>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "converters/pipelines/convert.h"
#include "converters/pipelines/reshard.h"
#include "converters/sinks/zero/memory_input.h"
#include "formats/base/status.h"
#include "formats/torch/torch_file.h"
#include "gtest/gtest.h"
#include "tests/integration/convert_testutil.h"

namespace ucp {
namespace {

namespace fs = std::filesystem;
namespace sinks = converters::sinks;
using formats::torch::TorchFile;
using formats::torch::Value;
using nlohmann::json;

// A UCP folder's state, held as the memory checkpoint's owner.
struct UcpState {
  std::vector<std::shared_ptr<const TorchFile>> files;
  std::vector<std::array<Buffer, 4>> bytes;  // per MemoryParam: weight, fp32, exp_avg, exp_avg_sq
};

std::shared_ptr<const TorchFile> Open(const std::string& path, UcpState* state) {
  absl::StatusOr<TorchFile> f = TorchFile::OpenPath(path);
  EXPECT_TRUE(f.ok()) << f.status();
  if (!f.ok()) return nullptr;
  state->files.push_back(std::make_shared<const TorchFile>(*std::move(f)));
  return state->files.back();
}

Buffer Bytes(const TorchFile& f, const Value* tensor) {
  absl::StatusOr<Buffer> b = f.TensorBytes(tensor->tensor());
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? *b : Buffer();
}

// The memory checkpoint of a ZeRO-1/2 UCP: what a runtime holding that state would describe.
sinks::MemoryCheckpoint FromUcp(const std::string& ucp) {
  auto state = std::make_shared<UcpState>();
  sinks::MemoryCheckpoint ck;
  ck.name = "<memory: " + ucp + ">";
  std::shared_ptr<const TorchFile> model = Open(ucp + "/mp_rank_00_model_states.pt", state.get());
  std::shared_ptr<const TorchFile> opt = Open(ucp + "/zero/optimizer_state.pt", state.get());
  if (model == nullptr || opt == nullptr) return ck;
  const Value& root = model->root();
  ck.model_states = &root;
  ck.optimizer_scalars = &opt->root();
  std::set<std::string> buffers;
  for (const Value* n : root.Get("buffer_names")->items()) buffers.insert(n->str());
  const Value* shared = root.Get("shared_params");
  const Value* shapes = root.Get("param_shapes");
  std::map<std::string, int> group_of;
  for (size_t g = 0; g < shapes->items().size(); ++g) {
    for (const auto& [k, v] : shapes->items()[g]->entries())
      group_of[k->str()] = static_cast<int>(g);
  }
  std::map<std::string, int> index;
  for (const auto& [k, v] : root.Get("module")->entries()) {
    sinks::MemoryParam p;
    p.name = k->str();
    p.shape = v->tensor().shape;
    p.weight_dtype = v->tensor().dtype;
    std::array<Buffer, 4> b;
    b[0] = Bytes(*model, v);
    if (const Value* to = shared != nullptr ? shared->Get(p.name) : nullptr; to != nullptr) {
      p.role = sinks::MemoryParamRole::kTied;
      p.tied_to = to->str();
    } else if (group_of.count(p.name) > 0) {
      p.role = sinks::MemoryParamRole::kTrainable;
      p.group = group_of[p.name];
      const char* states[] = {"fp32", "exp_avg", "exp_avg_sq"};
      for (int s = 0; s < 3; ++s) {
        std::shared_ptr<const TorchFile> f =
            Open(absl::StrCat(ucp, "/zero/", p.name, "/", states[s], ".pt"), state.get());
        if (f != nullptr) b[s + 1] = Bytes(*f, f->root().Get("param"));
      }
    } else {
      p.role = buffers.count(p.name) > 0 ? sinks::MemoryParamRole::kBuffer
                                         : sinks::MemoryParamRole::kFrozen;
    }
    index[p.name] = static_cast<int>(ck.params.size());
    ck.params.push_back(std::move(p));
    state->bytes.push_back(std::move(b));
  }
  for (size_t g = 0; g < shapes->items().size(); ++g) {
    sinks::MemoryGroup group;
    group.hyperparameters = opt->root().Get("param_groups")->items()[g];
    for (const auto& [k, v] : shapes->items()[g]->entries())
      group.params.push_back(index[k->str()]);
    const std::string first = shapes->items()[g]->entries()[0].first->str();
    std::shared_ptr<const TorchFile> step =
        Open(absl::StrCat(ucp, "/zero/", first, "/step.pt"), state.get());
    if (step != nullptr) {
      group.step = &step->root();
      if (step->root().is(formats::torch::ValueKind::kTensor)) {
        const formats::torch::StorageRef* s = step->root().tensor().storage;
        ck.storages[s] = *step->StorageBytes(*s);
      }
    }
    ck.groups.push_back(std::move(group));
  }
  const UcpState* raw = state.get();
  ck.read = [raw](int param, sinks::MemoryTensor which, uint64_t offset,
                  absl::Span<std::byte> out) {
    const Buffer& b = raw->bytes[param][static_cast<int>(which)];
    if (offset + out.size() > b.size()) return absl::OutOfRangeError("read past a tensor");
    std::memcpy(out.data(), b.data() + offset, out.size());
    return absl::OkStatus();
  };
  ck.owner = state;
  return ck;
}

absl::StatusOr<converters::pipelines::ReshardResult> Save(const std::string& ucp, int dp, int stage,
                                                          const std::string& out) {
  UCP_ASSIGN_OR_RETURN(sinks::ZeroSinkInput input, sinks::ZeroSinkInputFromMemory(FromUcp(ucp)));
  sinks::ZeroTarget target;
  target.topology.dp = dp;
  target.zero_stage = stage;
  converters::execute::ExecuteOptions execute;
  execute.threads = 2;
  execute.fsync = false;
  return converters::pipelines::SaveZeroCheckpoint(input, target, out, execute);
}

std::set<std::string> Names(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

struct Case {
  std::string name;
  int dp;
  int stage;
};

class ZeroSinkMemoryTest : public ::testing::TestWithParam<Case> {};

TEST_P(ZeroSinkMemoryTest, EqualsDeepSpeedsOwnSave) {
  const Case& c = GetParam();
  const std::string root = testing::FixtureCase(c.name) + "/checkpoint";
  testing::ScratchDir scratch("zero_sink_memory");
  absl::StatusOr<converters::pipelines::ReshardResult> r =
      Save(root + "/global_step5_universal", c.dp, c.stage, scratch.path() + "/out");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tag, "global_step5");
  const std::string ours = scratch.path() + "/out/global_step5", golden = root + "/global_step5";
  EXPECT_EQ(Names(ours), Names(golden));
  int compared = 0;
  for (const std::string& name : Names(golden)) {
    SCOPED_TRACE(name);
    absl::StatusOr<json> a = testing::TorchFileDigest(ours + "/" + name);
    absl::StatusOr<json> b = testing::TorchFileDigest(golden + "/" + name);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    testing::NormalizeDigest(*a, "", {});
    testing::NormalizeDigest(*b, "", {});
    EXPECT_EQ(testing::FirstDifference(*a, *b), "");
    ++compared;
  }
  EXPECT_EQ(compared, c.dp + 1);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ZeroSinkMemoryTest,
                         ::testing::Values(Case{"s2_fp32_dp2", 2, 2}, Case{"s1_fp32_dp4", 4, 1},
                                           Case{"s2_bf16_dp2", 2, 2}),
                         [](const ::testing::TestParamInfo<Case>& p) { return p.param.name; });

// At another dp: ucp convert of the memory save gives back DeepSpeed's UCP, every state.
TEST(ZeroSinkMemoryTest, AtAnotherDpConvertsBackToDeepSpeedsUcp) {
  const std::string ucp =
      testing::FixtureCase("s2_fp32_dp2") + "/checkpoint/global_step5_universal";
  testing::ScratchDir scratch("zero_sink_memory_dp3");
  absl::StatusOr<converters::pipelines::ReshardResult> r =
      Save(ucp, 3, 2, scratch.path() + "/zero");
  ASSERT_TRUE(r.ok()) << r.status();
  converters::pipelines::ConvertOptions co;
  co.input = scratch.path() + "/zero";
  co.output = scratch.path() + "/ucp";
  co.execute.fsync = false;
  absl::StatusOr<converters::pipelines::ConvertResult> u = converters::pipelines::Convert(co);
  ASSERT_TRUE(u.ok()) << u.status();
  absl::StatusOr<testing::FolderComparison> cmp =
      testing::CompareFolders(co.output, ucp, "ucp_manifest.json");
  ASSERT_TRUE(cmp.ok()) << cmp.status();
  for (const std::string& p : cmp->problems) {
    if (p.find("mp_rank_00_model_states.pt") != std::string::npos) continue;  // dp_world_size
    if (p.rfind("zero/optimizer_state.pt: value tree differs at .dict['partition_count']", 0) == 0)
      continue;
    ADD_FAILURE() << p;
  }
  EXPECT_GT(cmp->identical.size() + cmp->tree_equal.size(), 10u);
}

// Inconsistent descriptions are refused, naming what is wrong.
TEST(ZeroSinkMemoryTest, RefusesInconsistentDescriptions) {
  const std::string ucp =
      testing::FixtureCase("s2_fp32_dp2") + "/checkpoint/global_step5_universal";
  sinks::MemoryCheckpoint ck = FromUcp(ucp);
  ck.groups[0].params.push_back(ck.groups[0].params[0]);  // listed twice
  absl::StatusOr<sinks::ZeroSinkInput> in = sinks::ZeroSinkInputFromMemory(std::move(ck));
  EXPECT_EQ(in.status().code(), absl::StatusCode::kInvalidArgument) << in.status();
  sinks::MemoryCheckpoint ck2 = FromUcp(ucp);
  ck2.storages.clear();  // the step tensors have no bytes
  in = sinks::ZeroSinkInputFromMemory(std::move(ck2));
  EXPECT_EQ(in.status().code(), absl::StatusCode::kInvalidArgument) << in.status();
  EXPECT_NE(in.status().message().find("has no bytes"), std::string::npos) << in.status();
  absl::StatusOr<sinks::ZeroSinkInput> ok = sinks::ZeroSinkInputFromMemory(FromUcp(ucp));
  ASSERT_TRUE(ok.ok()) << ok.status();
  sinks::ZeroTarget zero3;
  zero3.topology.dp = 2;
  zero3.zero_stage = 3;
  EXPECT_EQ(sinks::PlanZeroSink(*ok, zero3).status().code(), absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace ucp
