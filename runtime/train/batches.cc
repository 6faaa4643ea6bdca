#include "runtime/train/batches.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "formats/base/status.h"
#include "runtime/data/sampler.h"
#include "runtime/data/token_data.h"
#include "runtime/train/recipe.h"

namespace ucp::runtime {
namespace {

using MicroBatches = std::vector<std::pair<at::Tensor, at::Tensor>>;

// Rows of micro-batch k of `rank` in the global batch.
int64_t FirstRow(int64_t k, int64_t micro, int rank, int world) {
  return (k * world + rank) * micro;
}

class RecipeBatches : public BatchSource {
 public:
  RecipeBatches(uint64_t seed, int64_t vocab, int64_t seq_len)
      : seed_(seed), vocab_(vocab), seq_len_(seq_len) {}
  std::string description() const override { return absl::StrCat("recipe:", seed_); }
  absl::StatusOr<MicroBatches> RankMicroBatches(int64_t step, int64_t global_batch, int64_t micro,
                                                int rank, int world) override {
    at::Tensor tokens = RecipeBatch(seed_, step, global_batch, vocab_, seq_len_);
    MicroBatches out;
    for (int64_t k = 0; k * micro * world < global_batch; ++k) {
      at::Tensor rows = tokens.narrow(0, FirstRow(k, micro, rank, world), micro);
      out.emplace_back(rows.narrow(1, 0, seq_len_).contiguous(),
                       rows.narrow(1, 1, seq_len_).contiguous());
    }
    return out;
  }

 private:
  uint64_t seed_;
  int64_t vocab_, seq_len_;
};

class TokenBatches : public BatchSource {
 public:
  TokenBatches(std::unique_ptr<TokenData> data, uint64_t seed, int64_t vocab, int64_t seq_len)
      : data_(std::move(data)), seed_(seed), vocab_(vocab), seq_len_(seq_len) {}
  std::string description() const override { return data_->description(); }
  absl::StatusOr<MicroBatches> RankMicroBatches(int64_t step, int64_t global_batch, int64_t micro,
                                                int rank, int world) override {
    MicroBatches out;
    for (int64_t k = 0; k * micro * world < global_batch; ++k) {
      at::Tensor rows = at::empty({micro, seq_len_ + 1}, at::TensorOptions().dtype(at::kLong));
      absl::Span<int64_t> span(rows.data_ptr<int64_t>(), static_cast<size_t>(rows.numel()));
      UCP_RETURN_IF_ERROR(
          ReadBatch(*data_, seed_, step, FirstRow(k, micro, rank, world), micro, seq_len_, span));
      UCP_RETURN_IF_ERROR(CheckVocab(span, vocab_, *data_));
      out.emplace_back(rows.narrow(1, 0, seq_len_).contiguous(),
                       rows.narrow(1, 1, seq_len_).contiguous());
    }
    return out;
  }

 private:
  std::unique_ptr<TokenData> data_;
  uint64_t seed_;
  int64_t vocab_, seq_len_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<BatchSource>> OpenBatches(const std::string& spec,
                                                         const std::string& dtype, uint64_t seed,
                                                         int64_t vocab, int64_t seq_len) {
  if (absl::StartsWith(spec, "recipe:")) {
    uint64_t s = 0;
    if (!absl::SimpleAtoi(spec.substr(7), &s))
      return absl::InvalidArgumentError(
          absl::StrCat("--data ", spec, ": recipe:SEED needs an integer seed"));
    return std::unique_ptr<BatchSource>(new RecipeBatches(s, vocab, seq_len));
  }
  TokenDataOptions o;
  o.dtype = dtype;
  UCP_ASSIGN_OR_RETURN(std::unique_ptr<TokenData> data, OpenTokenData(spec, o));
  UCP_RETURN_IF_ERROR(CheckWindow(data->num_tokens(), seq_len));
  return std::unique_ptr<BatchSource>(new TokenBatches(std::move(data), seed, vocab, seq_len));
}

}  // namespace ucp::runtime
