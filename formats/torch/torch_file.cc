#include "formats/torch/torch_file.h"

#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "formats/base/status.h"
#include "formats/torch/pickle_tree_check.h"

namespace ucp::formats::torch {
namespace {

bool StartsWith(const Buffer& b, absl::string_view prefix) {
  return b.size() >= prefix.size() && std::memcmp(b.data(), prefix.data(), prefix.size()) == 0;
}

}  // namespace

absl::StatusOr<TorchFile> TorchFile::Open(std::shared_ptr<const ByteSource> source,
                                          const TorchReadOptions& options) {
  const std::string name = source->name();
  // Shorter than any zip's signature: a file cut short (a zero-byte shard), not another format.
  if (source->Size() < 4) {
    return absl::DataLossError(absl::StrCat(name, ": ", source->Size(),
                                            " bytes, too short for a torch.save file "
                                            "(truncated?)"));
  }
  uint64_t probe_size = 4;
  UCP_ASSIGN_OR_RETURN(Buffer head, source->ReadBuffer(0, probe_size));
  if (StartsWith(head, absl::string_view("\x80\x02\x8a\x0a", 4))) {
    return absl::UnimplementedError(absl::StrCat(
        name,
        ": legacy (non-zip) torch.save format (checkpoint_serialization=false) is not supported"));
  }
  if (!StartsWith(head, "PK\x03\x04")) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": not a torch.save file (no zip signature)"));
  }
  UCP_ASSIGN_OR_RETURN(zip::ZipReader zip, zip::ZipReader::Open(std::move(source), options.zip));
  if (zip.entries().empty()) return absl::DataLossError(absl::StrCat(name, ": empty zip archive"));
  // The archive root is the first member's directory; every member must live under it.
  const std::string& first = zip.entries().front().name;
  size_t slash = first.find('/');
  if (slash == std::string::npos || slash == 0) {
    return absl::DataLossError(
        absl::StrCat(name, ": member '", first, "' is not under an archive root folder"));
  }
  std::string root = first.substr(0, slash);
  for (const zip::ZipEntry& e : zip.entries()) {
    if (e.name.compare(0, slash + 1, first, 0, slash + 1) != 0) {
      return absl::DataLossError(
          absl::StrCat(name, ": member '", e.name, "' is outside the archive root '", root, "'"));
    }
  }
  const zip::ZipEntry* pkl = zip.Find(absl::StrCat(root, "/data.pkl"));
  if (pkl == nullptr)
    return absl::DataLossError(absl::StrCat(name, ": no ", root, "/data.pkl record"));
  if (pkl->size > options.max_pickle_bytes) {
    return absl::DataLossError(
        absl::StrCat(name, ": data.pkl is ", pkl->size, " bytes, over the limit"));
  }
  UCP_ASSIGN_OR_RETURN(Buffer pickle, zip.Read(*pkl));
  PickleTree tree{std::make_shared<ValueArena>(), nullptr};
  absl::StatusOr<const Value*> parsed = ParsePickle(pickle.span(), *tree.arena, options.pickle);
  if (!parsed.ok()) return WithContext(parsed.status(), absl::StrCat(name, ": data.pkl"));
  tree.root = *parsed;
  TorchFile file(std::move(zip), std::move(tree), std::move(root));
  UCP_RETURN_IF_ERROR(file.IndexStorages());
  return file;
}

absl::StatusOr<TorchFile> TorchFile::OpenPath(const std::string& path,
                                              const TorchReadOptions& options) {
  UCP_ASSIGN_OR_RETURN(std::shared_ptr<ByteSource> source, OpenFileSource(path));
  return Open(std::move(source), options);
}

absl::Status TorchFile::IndexStorages() {
  // Pre-order walk (children in file order); each storage once.
  absl::flat_hash_set<const Value*> seen_nodes;
  absl::flat_hash_set<const StorageRef*> seen_storages;
  std::vector<const Value*> stack{tree_.root};
  while (!stack.empty()) {
    const Value* v = stack.back();
    stack.pop_back();
    if (!seen_nodes.insert(v).second) continue;
    const StorageRef* s = v->is(ValueKind::kTensor)    ? v->tensor().storage
                          : v->is(ValueKind::kStorage) ? v->storage()
                                                       : nullptr;
    if (s != nullptr && seen_storages.insert(s).second) storages_.push_back(s);
    std::vector<const Value*> children;
    ForEachChild(*v, [&](const Value* c) { children.push_back(c); });
    stack.insert(stack.end(), children.rbegin(), children.rend());
  }
  for (const StorageRef* s : storages_) {
    std::string record = absl::StrCat(archive_root_, "/data/", s->key);
    const zip::ZipEntry* e = zip_.Find(record);
    if (e == nullptr)
      return absl::DataLossError(absl::StrCat(name(), ": storage record ", record, " is missing"));
    storage_entries_[s] = static_cast<size_t>(e - zip_.entries().data());
    uint64_t expected = static_cast<uint64_t>(s->numel) * DTypeSize(s->dtype);
    if (e->size != expected) {
      return absl::DataLossError(absl::StrCat(name(), ": storage record ", record, " has ", e->size,
                                              " bytes, the pickle says ", s->numel, " x ",
                                              DTypeName(s->dtype), " = ", expected));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<const zip::ZipEntry*> TorchFile::StorageEntry(const StorageRef& storage) const {
  auto it = storage_entries_.find(&storage);
  if (it == storage_entries_.end()) {
    return absl::NotFoundError(
        absl::StrCat(name(), ": storage '", storage.key, "' is not one of this file's"));
  }
  return &zip_.entries()[it->second];
}

absl::StatusOr<Buffer> TorchFile::StorageBytes(const StorageRef& storage) const {
  if (absl::StatusOr<const zip::ZipEntry*> e = StorageEntry(storage); e.ok()) return zip_.Read(**e);
  // A storage of another tree naming one of this file's records (a rewritten copy of the tree).
  const zip::ZipEntry* e = zip_.Find(absl::StrCat(archive_root_, "/data/", storage.key));
  if (e == nullptr) {
    return absl::NotFoundError(absl::StrCat(name(), ": no storage record data/", storage.key));
  }
  return zip_.Read(*e);
}

Buffer GatherStrided(const Buffer& storage, const TensorRef& t) {
  const int64_t elem = DTypeSize(t.dtype);
  const int64_t n = t.NumElements();
  std::vector<std::byte> out(static_cast<size_t>(n * elem));
  const int rank = t.shape.rank();
  std::vector<int64_t> index(rank, 0);
  const std::byte* base = storage.data() + t.storage_offset * elem;
  for (int64_t i = 0; i < n; ++i) {
    int64_t offset = 0;
    for (int d = 0; d < rank; ++d) offset += index[d] * t.stride[d];
    std::memcpy(out.data() + i * elem, base + offset * elem, elem);
    for (int d = rank - 1; d >= 0; --d) {
      if (++index[d] < t.shape.dim(d)) break;
      index[d] = 0;
    }
  }
  return Buffer::FromVector(std::move(out));
}

absl::StatusOr<Buffer> TorchFile::TensorBytes(const TensorRef& t) const {
  UCP_ASSIGN_OR_RETURN(Buffer storage, StorageBytes(*t.storage));
  const int64_t elem = DTypeSize(t.dtype);
  const int64_t n = t.NumElements();
  if (n == 0) return Buffer();
  // Bounds were checked when the pickle was parsed (view inside numel) and at Open (record size).
  if (t.IsContiguous()) return storage.Slice(t.storage_offset * elem, n * elem);
  // A view without overlap holds at most its storage's bytes; only overlapping ones can claim more.
  const uint64_t gathered = static_cast<uint64_t>(n) * elem;  // n <= 2^50, elem <= 8
  if (gathered > storage.size() && gathered > kMaxExpandedViewBytes) {
    return absl::DataLossError(absl::StrCat(name(), ": tensor of shape ", t.shape.ToString(),
                                            " is an overlapping view that would expand ",
                                            storage.size(), " stored bytes to ", gathered,
                                            " (limit ", kMaxExpandedViewBytes, ")"));
  }
  return GatherStrided(storage, t);
}

absl::Status TorchFile::Verify() const { return zip_.VerifyAll(); }

StorageBytesFn TorchFile::BytesFn() const {
  return [this](const StorageRef& s) { return StorageBytes(s); };
}

}  // namespace ucp::formats::torch
