#include "ucp/torch_frame.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "formats/base/byte_sink.h"
#include "formats/base/status.h"
#include "formats/torch/pickle_writer.h"
#include "formats/zip/zip_writer.h"

namespace ucp {
namespace {

// A ByteSink that keeps what the ZipWriter writes, except while `skipping`: payload bytes only
// advance the position and are never read. Lets ZipWriter frame a file whose payloads live
// elsewhere.
class FrameSink final : public ByteSink {
 public:
  absl::Status Append(absl::Span<const std::byte> bytes) override {
    if (!skipping_ && !bytes.empty()) {
      if (pieces_.empty() || pieces_.back().offset + pieces_.back().bytes.size() != size_) {
        pieces_.push_back(FramePiece{size_, {}});
      }
      pieces_.back().bytes.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
    size_ += bytes.size();
    return absl::OkStatus();
  }
  absl::Status WriteAt(uint64_t, absl::Span<const std::byte>) override {
    return absl::InternalError("FrameSink is append-only");
  }
  uint64_t Size() const override { return size_; }
  absl::Status Commit() override { return absl::OkStatus(); }
  const std::string& name() const override { return name_; }
  using ByteSink::Append;

  void set_skipping(bool skipping) { skipping_ = skipping; }
  std::vector<FramePiece> TakePieces() { return std::move(pieces_); }

 private:
  std::string name_ = "<torch frame>";
  uint64_t size_ = 0;
  bool skipping_ = false;
  std::vector<FramePiece> pieces_;
};

// Payloads are fed to the ZipWriter as spans of this zero block, which FrameSink never reads.
constexpr size_t kZeroBlockBytes = size_t{1} << 20;
absl::Span<const std::byte> ZeroBlock(size_t n) {
  static const std::vector<std::byte>* const zeros = new std::vector<std::byte>(kZeroBlockBytes);
  return {zeros->data(), std::min(n, kZeroBlockBytes)};
}

absl::Span<const std::byte> AsBytes(absl::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// torch <= 2.0 writes storages in string order of their keys: 0, 1, 10, 11, ..., 2.
std::vector<size_t> KeyOrder(size_t n) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [](size_t a, size_t b) { return absl::StrCat(a) < absl::StrCat(b); });
  return order;
}

// Runs the ZipWriter over a FrameSink. The record CRC is the ZipWriter's running combine of the
// pieces' CRCs: every piece but the last declares CRC 0 (combine(0, 0, n) = 0), the last declares
// the payload's CRC (combine(0, c, n) = c), so the record ends up with exactly `crcs[i]`.
absl::Status Frame(const std::string& root, const std::string& pickle,
                   absl::Span<const uint64_t> sizes, absl::Span<const uint32_t> crcs,
                   std::vector<uint64_t>* payload_offsets, uint64_t* file_size,
                   std::vector<FramePiece>* pieces) {
  FrameSink sink;
  formats::zip::ZipWriter zip(&sink);
  UCP_RETURN_IF_ERROR(zip.AddRecord(absl::StrCat(root, "/data.pkl"), AsBytes(pickle)));
  payload_offsets->assign(sizes.size(), 0);
  for (size_t i : KeyOrder(sizes.size())) {
    UCP_RETURN_IF_ERROR(zip.BeginRecord(absl::StrCat(root, "/data/", i), sizes[i]));
    (*payload_offsets)[i] = sink.Size();
    sink.set_skipping(true);
    for (uint64_t left = sizes[i]; left > 0;) {
      absl::Span<const std::byte> block = ZeroBlock(left);
      left -= block.size();
      UCP_RETURN_IF_ERROR(zip.AppendToRecord(block, left == 0 ? crcs[i] : 0));
    }
    sink.set_skipping(false);
    UCP_RETURN_IF_ERROR(zip.EndRecord());
  }
  UCP_RETURN_IF_ERROR(zip.AddRecord(absl::StrCat(root, "/version"), AsBytes("3\n")));
  UCP_RETURN_IF_ERROR(zip.Finish());
  *file_size = sink.Size();
  if (pieces != nullptr) *pieces = sink.TakePieces();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TorchFrame> LayoutTorchFrame(std::string archive_root, std::string pickle,
                                            std::vector<uint64_t> storage_sizes) {
  if (archive_root.empty() || archive_root.size() > 4096 ||
      archive_root.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("bad torch archive root '", archive_root, "'"));
  }
  TorchFrame frame;
  std::vector<uint32_t> zero_crcs(storage_sizes.size(), 0);
  std::vector<uint64_t> offsets;
  UCP_RETURN_IF_ERROR(
      Frame(archive_root, pickle, storage_sizes, zero_crcs, &offsets, &frame.file_size, nullptr));
  frame.storages.resize(storage_sizes.size());
  for (size_t i = 0; i < storage_sizes.size(); ++i) {
    frame.storages[i] =
        TorchFrame::Storage{absl::StrCat(archive_root, "/data/", i), storage_sizes[i], offsets[i]};
  }
  frame.archive_root = std::move(archive_root);
  frame.pickle = std::move(pickle);
  return frame;
}

absl::StatusOr<TorchFrame> FrameTorchFile(
    std::string archive_root, const formats::torch::Value& root,
    std::vector<const formats::torch::StorageRef*>* storages) {
  UCP_ASSIGN_OR_RETURN(formats::torch::PickledTree pickled, formats::torch::WritePickle(root));
  std::vector<uint64_t> sizes;
  sizes.reserve(pickled.storages.size());
  for (const formats::torch::StorageRef* s : pickled.storages) {
    if (s->numel < 0)
      return absl::InvalidArgumentError(absl::StrCat("storage ", s->key, ": negative numel"));
    sizes.push_back(static_cast<uint64_t>(s->numel) * DTypeSize(s->dtype));
  }
  if (storages != nullptr) *storages = pickled.storages;
  return LayoutTorchFrame(std::move(archive_root), std::move(pickled.bytes), std::move(sizes));
}

absl::StatusOr<std::vector<FramePiece>> RenderTorchFrame(const TorchFrame& frame,
                                                         absl::Span<const uint32_t> storage_crcs) {
  if (storage_crcs.size() != frame.storages.size()) {
    return absl::InvalidArgumentError(absl::StrCat(frame.archive_root, ": ", storage_crcs.size(),
                                                   " CRCs for ", frame.storages.size(),
                                                   " storages"));
  }
  std::vector<uint64_t> sizes, offsets;
  for (const TorchFrame::Storage& s : frame.storages) sizes.push_back(s.size);
  uint64_t file_size = 0;
  std::vector<FramePiece> pieces;
  UCP_RETURN_IF_ERROR(
      Frame(frame.archive_root, frame.pickle, sizes, storage_crcs, &offsets, &file_size, &pieces));
  if (file_size != frame.file_size) {
    return absl::InternalError(absl::StrCat(frame.archive_root, ": frame size changed from ",
                                            frame.file_size, " to ", file_size));
  }
  return pieces;
}

}  // namespace ucp
