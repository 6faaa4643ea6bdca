// Every verb's --json document against docs/json.md (schema_version 1): each documented field is
// there with its type, lists are lists, dtypes are formats/base/dtype.h names, and a failure is
// {"schema_version", "command", "error"} on stdout as well as the "error:" line on stderr.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cli/commands/checkpoint_commands.h"
#include "cli/commands/convert_command.h"
#include "cli/commands/export_command.h"
#include "cli/commands/inspect_command.h"
#include "cli/commands/reshard_command.h"
#include "cli/commands/verify_command.h"
#include "formats/base/scratch_dir_testutil.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace ucp::cli {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

std::string Case(const std::string& rel) {
  return std::string(std::getenv("UCP_SOURCE_DIR")) + "/fixtures/deepspeed/" + rel;
}

// A scratch folder per test.
class JsonSchema : public ::testing::Test {
 protected:
  std::string Tmp(const std::string& name) const { return scratch_.File(name); }

 private:
  testutil::ScratchDir scratch_;
};

// Runs `run(out, err)` and parses stdout as one JSON document; `code` is the expected exit code.
template <typename Fn>
Json Document(Fn run, int code = 0) {
  std::ostringstream out, err;
  EXPECT_EQ(run(out, err), code) << err.str();
  Json j = Json::parse(out.str(), nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << out.str();
  return j;
}

// `field: type` pairs; type is one of string, number, bool, array, object, or "T|null".
void ExpectFields(const Json& j, const std::vector<std::pair<std::string, std::string>>& fields) {
  for (const auto& [name, type] : fields) {
    ASSERT_TRUE(j.contains(name)) << "missing '" << name << "' in " << j.dump().substr(0, 400);
    const Json& v = j[name];
    const bool nullable = type.size() > 5 && type.substr(type.size() - 5) == "|null";
    if (nullable && v.is_null()) continue;
    const std::string t = nullable ? type.substr(0, type.size() - 5) : type;
    const bool ok = (t == "string" && v.is_string()) || (t == "number" && v.is_number()) ||
                    (t == "bool" && v.is_boolean()) || (t == "array" && v.is_array()) ||
                    (t == "object" && v.is_object());
    EXPECT_TRUE(ok) << "'" << name << "' should be " << type << ", is " << v.dump().substr(0, 200);
  }
}

void ExpectEnvelope(const Json& j, const std::string& command) {
  EXPECT_EQ(j.value("schema_version", 0), 1);
  EXPECT_EQ(j.value("command", ""), command);
  EXPECT_FALSE(j.contains("error")) << j.dump();
}

void ExpectError(const Json& j, const std::string& command, const std::string& text) {
  EXPECT_EQ(j.value("schema_version", 0), 1);
  EXPECT_EQ(j.value("command", ""), command);
  EXPECT_THAT(j.value("error", ""), ::testing::HasSubstr(text));
}

const std::vector<std::string> kDTypes = {"f64", "f32", "f16", "bf16", "f8e4m3", "f8e5m2",
                                          "i64", "i32", "i16", "i8",   "u8",     "bool"};
void ExpectDType(const Json& v) { EXPECT_THAT(kDTypes, ::testing::Contains(v.get<std::string>())); }

TEST_F(JsonSchema, InspectTorchFile) {
  InspectOptions o{.path = Case("s2_fp32_dp2/checkpoint/global_step5/mp_rank_00_model_states.pt"),
                   .json = true,
                   .verify = true};
  const Json j = Document([&](auto& out, auto& err) { return RunInspect(o, out, err); });
  ExpectEnvelope(j, "inspect");
  ExpectFields(j, {{"file", "string"},
                   {"format", "string"},
                   {"size", "number"},
                   {"archive_root", "string"},
                   {"num_records", "number"},
                   {"num_storages", "number"},
                   {"storage_bytes", "number"},
                   {"verified", "bool"},
                   {"tree", "object"},
                   {"records", "array"}});
  EXPECT_EQ(j["format"], "torch");
  ASSERT_EQ(j["records"].size(), j["num_records"].get<size_t>());
  ExpectFields(j["records"][0], {{"name", "string"},
                                 {"offset", "number"},
                                 {"size", "number"},
                                 {"crc32", "string"},
                                 {"ok", "bool"}});
  EXPECT_EQ(j["records"][0]["crc32"].get<std::string>().size(), 8u);
  o.path = Tmp("missing.pt");
  ExpectError(Document([&](auto& out, auto& err) { return RunInspect(o, out, err); }, 1), "inspect",
              "missing.pt");
}

// The shard notes and warnings export prints on stderr are in its JSON document too.
TEST_F(JsonSchema, ExportNotesAndWarnings) {
  ExportCommandOptions e;
  e.input = Case("s2_fp32_dp2/checkpoint");
  e.json = e.no_fsync = true;
  e.output = Tmp("one_shard");
  e.max_shard_size = "1GB";
  const Json one = Document([&](auto& out, auto& err) { return RunExport(e, out, err); });
  ASSERT_EQ(one["notes"].size(), 1u) << one.dump();
  EXPECT_NE(one["notes"][0].get<std::string>().find("everything fits one shard"),
            std::string::npos);
  EXPECT_TRUE(one["warnings"].empty());
  e.output = Tmp("small_shards");
  e.max_shard_size = "1KB";
  const Json small = Document([&](auto& out, auto& err) { return RunExport(e, out, err); });
  ASSERT_FALSE(small["warnings"].empty()) << small.dump();
  EXPECT_NE(small["warnings"][0].get<std::string>().find("exceeds --max-shard-size"),
            std::string::npos);
}

TEST_F(JsonSchema, InspectWeightsFilesAndExport) {
  for (const char* format : {"safetensors", "hdf5"}) {
    ExportCommandOptions e;
    e.input = Case("s2_bf16_dp2/checkpoint");
    e.output = Tmp(format);
    e.format = format;
    e.json = e.no_fsync = true;
    const Json x = Document([&](auto& out, auto& err) { return RunExport(e, out, err); });
    ExpectEnvelope(x, "export");
    ExpectFields(x, {{"output", "string"},
                     {"files", "array"},
                     {"num_tensors", "number"},
                     {"bytes", "number"},
                     {"source_kind", "string"},
                     {"dry_run", "bool"},
                     {"step", "number|null"},
                     {"seconds", "number|null"},
                     {"notes", "array"},
                     {"warnings", "array"}});
    InspectOptions o{.path = e.output + "/" + x["files"][0].get<std::string>(), .json = true};
    const Json j = Document([&](auto& out, auto& err) { return RunInspect(o, out, err); });
    ExpectEnvelope(j, "inspect");
    ExpectFields(j, {{"file", "string"}, {"format", "string"}, {"verified", "bool"}});
    const char* list = std::string(format) == "hdf5" ? "datasets" : "tensors";
    ExpectFields(j, {{list, "array"}});
    ExpectFields(j[list][0], {{"dtype", "string"}, {"shape", "array"}});
    ExpectDType(j[list][0]["dtype"]);
  }
}

TEST_F(JsonSchema, InspectCheckpoint) {
  InspectCheckpointOptions o;
  o.path = Case("autoep_mixtral_s2_bf16_dp4_ep2/checkpoint");
  o.json = true;
  const Json j = Document([&](auto& out, auto& err) { return RunInspectCheckpoint(o, out, err); });
  ExpectEnvelope(j, "inspect");
  ExpectFields(j, {{"kind", "string"},
                   {"path", "string"},
                   {"tag", "string"},
                   {"step", "number|null"},
                   {"zero_stage", "number"},
                   {"optimizer_wrapper", "string"},
                   {"topology", "object"},
                   {"master_dtype", "string"},
                   {"param_groups", "array"},
                   {"params", "array"},
                   {"totals", "object"}});
  ExpectDType(j["master_dtype"]);
  ExpectFields(j["topology"],
               {{"dp", "number"}, {"tp", "number"}, {"pp", "number"}, {"ep", "number"}});
  for (const Json& p : j["params"]) {
    ExpectFields(p, {{"name", "string"},
                     {"shape", "array"},
                     {"dtype", "string|null"},
                     {"role", "string"},
                     {"states", "array"},
                     {"param_group", "number"},
                     {"partitioning", "string"},
                     {"expert", "bool"}});
    if (p["dtype"].is_string()) ExpectDType(p["dtype"]);
  }
  ExpectFields(j["totals"], {{"trainable", "number"},
                             {"frozen", "number"},
                             {"buffers", "number"},
                             {"tied", "number"},
                             {"experts", "number"},
                             {"trainable_numel", "number"},
                             {"fp32_bytes", "number"},
                             {"exp_avg_bytes", "number"},
                             {"exp_avg_sq_bytes", "number"}});
}

// The plan document of convert and reshard --dry-run, and the frozen-parameter count both agree on
// (s2 records one frozen parameter, `pos`, in frozen_param_shapes).
TEST_F(JsonSchema, ConvertAndReshardPlansAndResults) {
  ConvertCommandOptions c;
  c.input = Case("s2_fp32_dp2/checkpoint");
  c.output = Tmp("ucp");
  c.json = c.dry_run = c.no_fsync = true;
  const Json plan = Document([&](auto& out, auto& err) { return RunConvert(c, out, err); });
  ExpectEnvelope(plan, "convert");
  ExpectFields(plan, {{"dry_run", "bool"},
                      {"output", "string"},
                      {"info", "object"},
                      {"sources", "array"},
                      {"files", "array"},
                      {"total_bytes", "number"},
                      {"copy_bytes", "number"},
                      {"num_ops", "number"}});
  ExpectFields(plan["info"], {{"pipeline", "string"},
                              {"zero_stage", "number"},
                              {"dp_size", "number"},
                              {"master_dtype", "string"},
                              {"params", "number"},
                              {"frozen_params", "number"},
                              {"notes", "array"}});
  ExpectDType(plan["info"]["master_dtype"]);
  EXPECT_EQ(plan["info"]["frozen_params"], 1);
  c.dry_run = false;
  const Json done = Document([&](auto& out, auto& err) { return RunConvert(c, out, err); });
  ExpectEnvelope(done, "convert");
  ExpectFields(done, {{"dry_run", "bool"},
                      {"output", "string"},
                      {"num_files", "number"},
                      {"bytes", "number"},
                      {"seconds", "number"},
                      {"zero_stage", "number"}});

  for (const std::string& src : {c.input, c.output}) {  // the ZeRO folder and its UCP
    ReshardCommandOptions r;
    r.input = src;
    r.output = Tmp("r4");
    r.dp = 4;
    r.json = r.dry_run = r.no_fsync = true;
    const Json rplan = Document([&](auto& out, auto& err) { return RunReshard(r, out, err); });
    ExpectEnvelope(rplan, "reshard");
    ExpectFields(rplan, {{"dry_run", "bool"},
                         {"output", "string"},
                         {"tag", "string"},
                         {"info", "object"},
                         {"files", "array"}});
    EXPECT_EQ(rplan["info"]["frozen_params"], plan["info"]["frozen_params"]) << src;
  }
  ReshardCommandOptions r;
  r.input = c.input;
  r.output = Tmp("r4");
  r.dp = 4;
  r.json = r.no_fsync = true;
  const Json rdone = Document([&](auto& out, auto& err) { return RunReshard(r, out, err); });
  ExpectEnvelope(rdone, "reshard");
  ExpectFields(rdone, {{"dry_run", "bool"},
                       {"output", "string"},
                       {"tag", "string"},
                       {"num_files", "number"},
                       {"bytes", "number"},
                       {"dp", "number"}});
  ExpectError(Document([&](auto& out, auto& err) { return RunReshard(r, out, err); }, 1), "reshard",
              "already exists");
}

TEST_F(JsonSchema, ZeroToFp32) {
  ExportCommandOptions z;
  z.zero_to_fp32 = true;
  z.input = Case("s2_fp32_dp2/checkpoint");
  z.output = Tmp("fp32");
  z.json = z.no_fsync = true;
  const Json j = Document([&](auto& out, auto& err) { return RunExport(z, out, err); });
  ExpectEnvelope(j, "zero-to-fp32");
  EXPECT_EQ(j["files"], Json({"pytorch_model.bin"}));
  EXPECT_EQ(j["num_tensors"], 18);
}

TEST_F(JsonSchema, Diff) {
  DiffCommandOptions d;
  d.a = Case("s2_fp32_dp4/checkpoint");
  d.b = Case("s2_fp32_dp2/checkpoint");
  d.json = true;
  const Json j = Document([&](auto& out, auto& err) { return RunDiff(d, out, err); }, 1);
  ExpectEnvelope(j, "diff");
  ExpectFields(j, {{"a", "object"},
                   {"b", "object"},
                   {"atol", "number"},
                   {"equal", "bool"},
                   {"weights_only", "bool"},
                   {"params_compared", "number"},
                   {"states_compared", "number"},
                   {"counts", "object"},
                   {"entries", "array"}});
  ExpectFields(j["a"], {{"path", "string"}, {"kind", "string"}});
  for (const Json& e : j["entries"]) {
    ExpectFields(
        e,
        {{"name", "string"}, {"state", "string"}, {"status", "string"}, {"weights_only", "bool"}});
    if (e["status"] == "different" || e["status"] == "within_tolerance") {
      ExpectFields(e, {{"max_abs_diff", "number"},
                       {"max_rel_diff", "number"},
                       {"num_different", "number"},
                       {"numel", "number"}});
    }
  }
  int total = 0;
  for (const auto& [status, n] : j["counts"].items()) total += n.get<int>();
  EXPECT_EQ(total, static_cast<int>(j["entries"].size()));
  d.b = Tmp("nothing");
  ExpectError(Document([&](auto& out, auto& err) { return RunDiff(d, out, err); }, 1), "diff",
              "nothing");
  d.b = Case("s2_fp32_dp2/checkpoint");
  d.states = {"moments"};
  ExpectError(Document([&](auto& out, auto& err) { return RunDiff(d, out, err); }, 2), "diff",
              "--states");
}

TEST_F(JsonSchema, Verify) {
  VerifyCommandOptions v;
  v.path = Case("s3_fp32_dp2/checkpoint");
  v.json = true;
  const Json j = Document([&](auto& out, auto& err) { return RunVerify(v, out, err); });
  ExpectEnvelope(j, "verify");
  ExpectFields(j, {{"path", "string"},
                   {"kind", "string"},
                   {"ok", "bool"},
                   {"complete", "bool"},
                   {"files_checked", "number"},
                   {"params_checked", "number"},
                   {"notes", "array"},
                   {"problems", "array"},
                   {"skipped", "array"}});
  v.path = Tmp("nothing");
  ExpectError(Document([&](auto& out, auto& err) { return RunVerify(v, out, err); }, 1), "verify",
              "no such file or folder");
}

}  // namespace
}  // namespace ucp::cli
