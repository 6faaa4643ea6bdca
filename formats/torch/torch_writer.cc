#include "formats/torch/torch_writer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "formats/base/status.h"
#include "formats/torch/pickle_writer.h"
#include "formats/zip/zip_writer.h"

namespace ucp::formats::torch {

absl::Status WriteTorchFile(ByteSink& sink, const Value& root, const TorchWriteOptions& options,
                            const StorageBytesFn& bytes_of) {
  UCP_ASSIGN_OR_RETURN(PickledTree pickled, WritePickle(root));
  const std::string& prefix = options.archive_root;
  zip::ZipWriter zip(&sink);
  UCP_RETURN_IF_ERROR(zip.AddRecord(
      absl::StrCat(prefix, "/data.pkl"),
      {reinterpret_cast<const std::byte*>(pickled.bytes.data()), pickled.bytes.size()}));
  // torch <= 2.0 writes storages in string order of their keys: 0, 1, 10, 11, ..., 2.
  std::vector<size_t> order(pickled.storages.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [](size_t a, size_t b) { return absl::StrCat(a) < absl::StrCat(b); });
  for (size_t i : order) {
    const StorageRef& s = *pickled.storages[i];
    Buffer bytes;
    if (s.bytes) {
      bytes = *s.bytes;
    } else if (bytes_of) {
      UCP_ASSIGN_OR_RETURN(bytes, bytes_of(s));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("storage ", s.key, " has no bytes"));
    }
    uint64_t expected = static_cast<uint64_t>(s.numel) * DTypeSize(s.dtype);
    if (bytes.size() != expected) {
      return absl::InvalidArgumentError(
          absl::StrCat("storage ", s.key, " has ", bytes.size(), " bytes, expected ", expected));
    }
    UCP_RETURN_IF_ERROR(zip.AddRecord(absl::StrCat(prefix, "/data/", i), bytes.span()));
  }
  UCP_RETURN_IF_ERROR(zip.AddRecord(absl::StrCat(prefix, "/version"),
                                    {reinterpret_cast<const std::byte*>("3\n"), 2}));
  return zip.Finish();
}

absl::Status SaveTorchFile(const std::string& path, const Value& root,
                           const StorageBytesFn& bytes_of) {
  std::string stem = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
  if (size_t dot = stem.rfind('.'); dot != std::string::npos && dot > 0) stem.resize(dot);
  UCP_ASSIGN_OR_RETURN(std::unique_ptr<ByteSink> sink, CreateFileSink(path));
  UCP_RETURN_IF_ERROR_CTX(WriteTorchFile(*sink, root, {stem}, bytes_of), path);
  return sink->Commit();
}

}  // namespace ucp::formats::torch
