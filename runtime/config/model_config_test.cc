#include "runtime/config/model_config.h"

#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ucp::runtime {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

json TinyLm() {
  return json{{"model_type", "tinylm"},  {"vocab_size", 61},       {"hidden_size", 24},
              {"intermediate_size", 56}, {"num_hidden_layers", 2}, {"max_position_embeddings", 8}};
}

json Llama() {
  return json{{"architectures", {"LlamaForCausalLM"}},
              {"model_type", "llama"},
              {"vocab_size", 32000},
              {"hidden_size", 256},
              {"intermediate_size", 688},
              {"num_hidden_layers", 4},
              {"num_attention_heads", 8},
              {"num_key_value_heads", 2},
              {"max_position_embeddings", 2048},
              {"rms_norm_eps", 1e-5},
              {"rope_theta", 500000.0},
              {"hidden_act", "silu"},
              {"rope_scaling", nullptr},
              {"bos_token_id", 1},
              {"tie_word_embeddings", false},
              {"torch_dtype", "bfloat16"}};
}

absl::Status ErrorOf(const json& config) {
  absl::StatusOr<ModelConfig> parsed = ParseModelConfig(config);
  EXPECT_FALSE(parsed.ok()) << config.dump();
  return parsed.ok() ? absl::OkStatus() : parsed.status();
}

TEST(ModelConfigTest, TinyLm) {
  absl::StatusOr<ModelConfig> m = ParseModelConfig(TinyLm());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->is_tinylm());
  EXPECT_EQ(m->vocab_size, 61);
  EXPECT_EQ(m->hidden_size, 24);
  EXPECT_EQ(m->intermediate_size, 56);
  EXPECT_EQ(m->num_hidden_layers, 2);
  EXPECT_EQ(m->max_position_embeddings, 8);
  EXPECT_TRUE(m->tie_word_embeddings);
  EXPECT_EQ(m->raw, TinyLm());
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "max_position_embeddings"}) {
    json missing = TinyLm();
    missing.erase(key);
    EXPECT_THAT(ErrorOf(missing).message(), HasSubstr(std::string("`") + key + "` is required"));
    json zero = TinyLm();
    zero[key] = 0;
    EXPECT_THAT(ErrorOf(zero).message(), HasSubstr(std::string("`") + key + "` must be in"));
  }
  json typed = TinyLm();
  typed["hidden_size"] = "24";
  EXPECT_THAT(ErrorOf(typed).message(), HasSubstr("`hidden_size` must be an integer"));
}

TEST(ModelConfigTest, LlamaDefaultsAndValues) {
  absl::StatusOr<ModelConfig> m = ParseModelConfig(Llama());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->num_attention_heads, 8);
  EXPECT_EQ(m->num_key_value_heads, 2);
  EXPECT_EQ(m->head_dim, 32);
  EXPECT_DOUBLE_EQ(m->rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(m->rope_theta, 500000.0);
  EXPECT_FALSE(m->tie_word_embeddings);
  EXPECT_FALSE(m->attention_bias);
  EXPECT_FALSE(m->qk_norm);
  EXPECT_EQ(m->torch_dtype, "bfloat16");
  json mha = Llama();
  mha.erase("num_key_value_heads");
  EXPECT_EQ(ParseModelConfig(mha)->num_key_value_heads, 8);
}

TEST(ModelConfigTest, QwenFamilies) {
  json qwen3 = Llama();
  qwen3["model_type"] = "qwen3";
  qwen3["head_dim"] = 64;  // qwen3 decouples head_dim from hidden/heads
  absl::StatusOr<ModelConfig> m = ParseModelConfig(qwen3);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->qk_norm);
  EXPECT_EQ(m->head_dim, 64);
  json qwen2 = Llama();
  qwen2["model_type"] = "qwen2";
  m = ParseModelConfig(qwen2);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->attention_bias);
  EXPECT_FALSE(m->qk_norm);
}

TEST(ModelConfigTest, DenseValidation) {
  json c = Llama();
  c["num_key_value_heads"] = 3;
  EXPECT_THAT(ErrorOf(c).message(),
              HasSubstr("`num_key_value_heads` 3 does not divide `num_attention_heads` 8"));
  c = Llama();
  c["num_attention_heads"] = 7;
  EXPECT_THAT(ErrorOf(c).message(), HasSubstr("`num_attention_heads` 7 does not divide"));
  c = Llama();
  c.erase("num_attention_heads");
  EXPECT_THAT(ErrorOf(c).message(), HasSubstr("`num_attention_heads` is required"));
  c = Llama();
  c["hidden_act"] = "gelu";
  EXPECT_EQ(ErrorOf(c).code(), absl::StatusCode::kUnimplemented);
  c = Llama();
  c["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  absl::Status s = ErrorOf(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("`rope_scaling`"));
  c = Llama();
  c["model_type"] = "gpt2";
  EXPECT_THAT(ErrorOf(c).message(), HasSubstr("model_type \"gpt2\" is not supported"));
}

TEST(ModelConfigTest, AbsurdSizes) {
  json c = TinyLm();
  c["vocab_size"] = int64_t{1} << 41;
  EXPECT_THAT(ErrorOf(c).message(), HasSubstr("`vocab_size` must be in [1, 2^40]"));
  c = TinyLm();
  c["vocab_size"] = int64_t{1} << 30;
  c["hidden_size"] = int64_t{1} << 20;
  EXPECT_THAT(ErrorOf(c).message(), HasSubstr("the embedding would have"));
  c = Llama();
  c["num_attention_heads"] = int64_t{1} << 30;
  c["num_key_value_heads"] = 1;
  c["head_dim"] = int64_t{1} << 30;
  EXPECT_THAT(ErrorOf(c).message(), HasSubstr("the attention heads would have"));
}

TEST(ModelConfigTest, LoadNamesTheFile) {
  const std::string path = ::testing::TempDir() + "/model_config_bad.json";
  json c = TinyLm();
  c.erase("vocab_size");
  std::ofstream(path) << c.dump();
  absl::Status s = LoadModelConfig(path).status();
  EXPECT_THAT(s.message(), HasSubstr(path));
  EXPECT_THAT(s.message(), HasSubstr("`vocab_size` is required"));
  const std::string good = ::testing::TempDir() + "/model_config_good.json";
  std::ofstream(good) << TinyLm().dump();
  EXPECT_TRUE(LoadModelConfig(good).ok());
}

}  // namespace
}  // namespace ucp::runtime
