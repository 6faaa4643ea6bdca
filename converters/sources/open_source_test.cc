// Every fixture case read three ways gives the same tensors: the ZeRO folder in place, DeepSpeed's
// own UCP of it, and (dense cases) zero_to_fp32's pytorch_model.bin; the reshard goldens (DeepSpeed
// re-saving the UCP at another topology) read in place equal the UCP too.
#include "converters/sources/open_source.h"

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "converters/sources/zero_source.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp::converters::sources {
namespace {

namespace fs = std::filesystem;
using ucp::ParamRole;
using ucp::ParamState;
using ucp::Source;
using ucp::SourceKind;

std::string Fixtures() { return std::string(std::getenv("UCP_SOURCE_DIR")) + "/fixtures"; }
std::string FixtureDir() { return Fixtures() + "/deepspeed"; }

// fixtures/deepspeed/<case>, or fixtures/<set>/<case> for "<set>/<case>".
std::string CaseDir(const std::string& name) {
  return name.find('/') == std::string::npos ? FixtureDir() + "/" + name : Fixtures() + "/" + name;
}

// Every case with DeepSpeed's own UCP: fixtures/deepspeed, the real AutoTP runs (deepspeed_tp)
// and the generated TP cases (tp, averaged and sub-parameter merges).
std::vector<std::string> Cases() {
  std::vector<std::string> cases;
  for (const std::string set : {"deepspeed", "deepspeed_tp", "tp"}) {
    for (const auto& e : fs::directory_iterator(Fixtures() + "/" + set)) {
      if (!fs::exists(e.path() / "checkpoint" / "global_step5_universal")) continue;
      const std::string name = e.path().filename().string();
      cases.push_back(set == "deepspeed" ? name : set + "/" + name);
    }
  }
  std::sort(cases.begin(), cases.end());
  return cases;
}

std::unique_ptr<Source> MustOpen(const std::string& path, OpenSourceOptions options = {}) {
  absl::StatusOr<std::unique_ptr<Source>> s = OpenSource(path, options);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : nullptr;
}

std::vector<std::byte> Bytes(const Source& s, const ucp::ParamMeta& p, ParamState state) {
  std::vector<std::byte> out(ucp::StateNumBytes(p, state));
  absl::Status st = s.ReadState(p, state, absl::MakeSpan(out));
  EXPECT_TRUE(st.ok()) << st;
  return out;
}

// Every parameter of `b` (of the compared roles) is in `a` with equal shape, dtype and bytes.
void ExpectSameStates(const Source& a, const Source& b, const std::string& what,
                      bool weights_only = false) {
  int compared = 0;
  for (const ucp::ParamMeta& pb : b.params()) {
    const ucp::ParamMeta* pa = a.Find(pb.name);
    ASSERT_NE(pa, nullptr) << what << ": " << pb.name << " missing";
    EXPECT_EQ(pa->shape, pb.shape) << what << ": " << pb.name;
    for (int s = 0; s < ucp::kNumParamStates; ++s) {
      const auto state = static_cast<ParamState>(s);
      if (!pb.has_state(state) || (weights_only && state != ParamState::kFp32)) continue;
      ASSERT_TRUE(pa->has_state(state))
          << what << ": " << pb.name << " " << ucp::ParamStateName(state);
      EXPECT_EQ(pa->state(state)->dtype, pb.state(state)->dtype) << what << ": " << pb.name;
      EXPECT_TRUE(Bytes(a, *pa, state) == Bytes(b, pb, state))
          << what << ": " << pb.name << " " << ucp::ParamStateName(state) << " differs";
      ++compared;
    }
  }
  EXPECT_GT(compared, 0) << what;
}

class SourcesOverFixtures : public ::testing::TestWithParam<std::string> {};

TEST_P(SourcesOverFixtures, ZeroFolderEqualsDeepSpeedsUcp) {
  const std::string root = CaseDir(GetParam()) + "/checkpoint";
  auto zero = MustOpen(root + "/global_step5");
  auto ucp = MustOpen(root + "/global_step5_universal");
  ASSERT_TRUE(zero && ucp);
  EXPECT_EQ(zero->kind(), SourceKind::kZero);
  EXPECT_EQ(ucp->kind(), SourceKind::kUniversal);
  EXPECT_EQ(zero->info().step, 5);
  EXPECT_EQ(ucp->info().step, 5);
  // Same parameter set (trainable, frozen, buffers, tied) both ways.
  std::vector<std::string> zn, un;
  for (const auto& p : zero->params()) zn.push_back(p.name);
  for (const auto& p : ucp->params()) un.push_back(p.name);
  std::sort(zn.begin(), zn.end());
  std::sort(un.begin(), un.end());
  EXPECT_EQ(zn, un);
  ExpectSameStates(*zero, *ucp, GetParam());
  for (const auto& p : zero->params()) {
    if (p.role == ParamRole::kTrainable) {
      EXPECT_TRUE(p.step.has_value()) << p.name;
      EXPECT_EQ(p.step.value_or(0), 5.0) << p.name;
      EXPECT_TRUE(p.has_state(ParamState::kExpAvg) && p.has_state(ParamState::kExpAvgSq)) << p.name;
    }
  }
  EXPECT_EQ(zero->info().param_groups.size(), ucp->info().param_groups.size());
}

TEST_P(SourcesOverFixtures, SaveFolderOpensTheLatestTag) {
  auto zero = MustOpen(CaseDir(GetParam()) + "/checkpoint");
  ASSERT_TRUE(zero);
  EXPECT_EQ(zero->kind(), SourceKind::kZero);
  EXPECT_EQ(zero->info().tag, "global_step5");
  // deepspeed_tp kept no latest_universal.
  if (!fs::exists(CaseDir(GetParam()) + "/checkpoint/latest_universal")) return;
  OpenSourceOptions prefer;
  prefer.prefer_universal = true;
  auto ucp = MustOpen(CaseDir(GetParam()) + "/checkpoint", prefer);
  ASSERT_TRUE(ucp);
  EXPECT_EQ(ucp->kind(), SourceKind::kUniversal);
}

TEST_P(SourcesOverFixtures, ZeroToFp32OutputEqualsTheMasterWeights) {
  const std::string bin = CaseDir(GetParam()) + "/fp32/pytorch_model.bin";
  if (!fs::exists(bin))
    GTEST_SKIP() << "zero_to_fp32 failed on this case (recorded in its manifest)";
  auto weights = MustOpen(bin);
  auto zero = MustOpen(CaseDir(GetParam()) + "/checkpoint/global_step5");
  ASSERT_TRUE(weights && zero);
  EXPECT_EQ(weights->kind(), SourceKind::kTorchWeights);
  ExpectSameStates(*zero, *weights, GetParam() + " vs pytorch_model.bin", /*weights_only=*/true);
}

// reshard_*: DeepSpeed re-saving the UCP at another topology; deepspeed_tp's resume_tp*_dp*: its
// save right after loading the UCP at tp T x dp D (global_step5), before training on.
TEST_P(SourcesOverFixtures, ReshardGoldensReadInPlaceEqualTheUcp) {
  auto ucp = MustOpen(CaseDir(GetParam()) + "/checkpoint/global_step5_universal");
  ASSERT_TRUE(ucp);
  int goldens = 0;
  for (const auto& e : fs::directory_iterator(CaseDir(GetParam()))) {
    const std::string name = e.path().filename().string();
    const bool resave =
        name.rfind("resume_tp", 0) == 0 && fs::exists(e.path() / "checkpoint" / "global_step5");
    if (name.rfind("reshard_", 0) != 0 && !resave) continue;
    auto golden = MustOpen((e.path() / "checkpoint" / "global_step5").string());
    ASSERT_TRUE(golden);
    ExpectSameStates(*golden, *ucp, e.path().string());
    ++goldens;
  }
  if (goldens == 0) GTEST_SKIP() << "no reshard golden";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SourcesOverFixtures, ::testing::ValuesIn(Cases()),
                         [](const auto& test) {
                           std::string name = test.param;
                           std::replace(name.begin(), name.end(), '/', '_');
                           return name;
                         });

// ReadStateRange over every parameter and state of a ZeRO-2 folder (parameters span fragments of
// several ranks' files) and its UCP: every range equals the same bytes of ReadState.
TEST(OpenSource, ReadStateRangeEqualsTheWholeTensorsBytes) {
  const std::string root =
      std::string(std::getenv("UCP_SOURCE_DIR")) + "/fixtures/deepspeed/s2_fp32_dp2/checkpoint";
  for (const std::string& path : {root, root + "/global_step5_universal"}) {
    SCOPED_TRACE(path);
    std::unique_ptr<Source> s = MustOpen(path);
    ASSERT_NE(s, nullptr);
    for (const ucp::ParamMeta& p : s->params()) {
      for (ParamState state : {ParamState::kFp32, ParamState::kExpAvg, ParamState::kExpAvgSq}) {
        if (!p.has_state(state)) continue;
        const std::vector<std::byte> whole = Bytes(*s, p, state);
        for (uint64_t off : {uint64_t{0}, uint64_t{4}, whole.size() / 3, whole.size() - 4}) {
          for (uint64_t len : {uint64_t{4}, whole.size() / 2, whole.size() - off}) {
            if (off + len > whole.size()) continue;
            std::vector<std::byte> part(len);
            ASSERT_TRUE(s->ReadStateRange(p, state, off, absl::MakeSpan(part)).ok());
            EXPECT_TRUE(std::equal(part.begin(), part.end(), whole.begin() + off))
                << p.name << " " << off << "+" << len;
          }
        }
        std::vector<std::byte> past(8);
        EXPECT_EQ(s->ReadStateRange(p, state, whole.size() - 4, absl::MakeSpan(past)).code(),
                  absl::StatusCode::kInvalidArgument);
      }
    }
  }
}

TEST(OpenSource, ErrorsNameThePath) {
  auto missing = OpenSource("/nonexistent/ckpt");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), ::testing::HasSubstr("/nonexistent/ckpt"));
  auto not_ckpt = OpenSource(std::string(std::getenv("UCP_SOURCE_DIR")) + "/docs");
  EXPECT_EQ(not_ckpt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(not_ckpt.status().message(), ::testing::HasSubstr("not a checkpoint"));
}

}  // namespace
}  // namespace ucp::converters::sources
