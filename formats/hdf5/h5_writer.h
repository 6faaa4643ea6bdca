// H5Writer: writes tensors into one HDF5 file as chunked, zstd-compressed datasets (filter
// 32015, see zstd_filter.h), with attributes on datasets, groups and the root. Output is atomic:
// the file is built at "<path>.tmp-<pid>-<n>" and renamed onto `path` by Commit(); a writer
// destroyed without Commit() removes its temp file. Layout and attribute names: README.md.
//
//   UCP_ASSIGN_OR_RETURN(H5Writer writer, H5Writer::Create("model.h5"));
//   UCP_RETURN_IF_ERROR(writer.WriteTensor("layers/0/weight", view));
//   UCP_RETURN_IF_ERROR(writer.SetAttribute("/", "step", int64_t{100}));
//   UCP_RETURN_IF_ERROR(writer.Commit());
//
// Not thread-safe: use one writer from one thread at a time.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "formats/base/tensor_view.h"
#include "formats/hdf5/h5_types.h"

namespace ucp::formats::hdf5 {

class H5Writer {
 public:
  // Creates the temp file beside `path`. InvalidArgument for bad options; Unavailable when the
  // file cannot be created.
  static absl::StatusOr<H5Writer> Create(const std::string& path, WriteOptions options = {});

  H5Writer(H5Writer&&) noexcept;
  H5Writer& operator=(H5Writer&&) noexcept;
  ~H5Writer();

  // Writes `tensor` (any strides) as dataset `dataset_path` ("a/b/weight"; missing groups are
  // created) with attribute ucp_dtype. InvalidArgument for a bad path or tensor (including bool
  // bytes other than 0/1), AlreadyExists if the name is taken, FailedPrecondition after Commit,
  // Internal for HDF5 failures.
  absl::Status WriteTensor(absl::string_view dataset_path, const TensorView& tensor);

  // Sets (or replaces) attribute `name` on `object_path`: "/" for the root, or an existing group
  // or dataset. NotFound if the object does not exist; InvalidArgument for the reserved name
  // ucp_dtype, a NUL in a string, or a value over kMaxAttributeBytes.
  absl::Status SetAttribute(absl::string_view object_path, absl::string_view name, AttrValue value);

  // Closes the file, fsyncs it and renames it onto the target path. Errors from HDF5 (Internal)
  // or the file system (errno mapping); FailedPrecondition if already committed.
  absl::Status Commit();

  const std::string& path() const;

 private:
  struct State;
  explicit H5Writer(std::unique_ptr<State> state);
  absl::Status CheckOpen() const;
  std::unique_ptr<State> state_;
};

}  // namespace ucp::formats::hdf5
