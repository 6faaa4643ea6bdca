// H5Reader: reads tensors and attributes from an HDF5 file written by H5Writer or by other
// programs (h5py, with or without compression). Open() lists every dataset (path, DType, shape)
// up front; Attributes() reads one object's attribute values when asked, and Read()/ReadInto()
// read one dataset at a time as contiguous row-major bytes. Files are untrusted: sizes are
// checked against the limits in h5_types.h and against the storage the file holds before
// anything is allocated, and a damaged chunk, an unavailable filter or a non-HDF5 file is a
// Status. (libhdf5 itself is not hardened against damaged metadata that carries no checksum, as
// in h5py's default layout: see README.md, "Safety".)
//
// DType: from the ucp_dtype attribute when it is a fixed-length string, as H5Writer writes it (it
// must agree with the stored HDF5 type); otherwise, also for a variable-length ucp_dtype, which
// Open() does not read, inferred from the HDF5 type (IEEE floats, bf16/f8e5m2 floats, integers,
// h5py's bool enum). Datasets of any other type make Open fail with Unimplemented. Open() reads
// no other attribute value.
//
// Only hard links are followed (soft and external links are not listed). Thread-compatible: const
// methods may run concurrently (Debian's HDF5 is built thread-safe and serializes its calls).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "formats/base/tensor_view.h"
#include "formats/hdf5/h5_types.h"

namespace ucp::formats::hdf5 {

class H5Reader {
 public:
  // NotFound (or another errno mapping) if `path` cannot be opened; InvalidArgument if it is not
  // an HDF5 file; DataLoss if it is damaged (truncated, bad metadata, too many objects);
  // Unimplemented for a dataset whose type ucp cannot represent.
  static absl::StatusOr<H5Reader> Open(const std::string& path);

  H5Reader(H5Reader&&) noexcept;
  H5Reader& operator=(H5Reader&&) noexcept;
  ~H5Reader();

  const std::string& path() const;
  // Every dataset, depth-first with each group's members in name order.
  const std::vector<DatasetInfo>& datasets() const;
  // The dataset at `dataset_path` (a leading '/' is ignored), or nullptr.
  const DatasetInfo* Find(absl::string_view dataset_path) const;
  // Attributes of the root ("/" or ""), a group or a dataset (without a dataset's ucp_dtype),
  // read from the file on each call. NotFound for anything else; DataLoss naming the file and
  // object for an attribute that cannot be read.
  absl::StatusOr<AttrList> Attributes(absl::string_view object_path) const;

  // Reads a whole dataset into a new buffer. NotFound; DataLoss for a size over kMaxDatasetBytes,
  // more than kMaxFillBytes not backed by stored data, allocated chunks that could not decode to
  // their size from the bytes stored, a filter that is not available, a chunk that does not
  // decode, or bool bytes other than 0/1; Unimplemented for a filter pipeline zstd cannot be
  // bounded in, virtual datasets and external storage; ResourceExhausted if the buffer cannot be
  // allocated. All checks come before the allocation.
  absl::StatusOr<SharedTensor> Read(absl::string_view dataset_path) const;
  // Like Read, into `out`, which must hold exactly the dataset's bytes (else InvalidArgument).
  absl::Status ReadInto(absl::string_view dataset_path, absl::Span<std::byte> out) const;

 private:
  struct State;
  explicit H5Reader(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace ucp::formats::hdf5
