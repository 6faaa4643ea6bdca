// Vocabulary of ucp's HDF5 format (formats/hdf5, see README.md there for the byte-level layout):
// attribute values, writer options, the description of a stored dataset, and the limits the
// reader enforces on sizes it takes from a file.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "formats/base/dtype.h"
#include "formats/base/shape.h"

namespace ucp::formats::hdf5 {

// An attribute: a scalar 64-bit integer, a scalar double, a UTF-8 string (no NUL bytes) or a
// 1-D array of 64-bit integers. Other HDF5 attributes found in a file are not reported.
using AttrValue = std::variant<int64_t, double, std::string, std::vector<int64_t>>;
// Attributes of one object, sorted by name.
using AttrList = std::vector<std::pair<std::string, AttrValue>>;

// The attribute naming the ucp DType (DTypeName) on every dataset ucp writes. Reserved.
inline constexpr char kDTypeAttribute[] = "ucp_dtype";

struct WriteOptions {
  int zstd_level = 3;              // zstd level, 1..22 (negative: zstd's fast levels)
  uint64_t chunk_bytes = 1 << 20;  // target uncompressed bytes per chunk, 1 B .. 1 GiB
  bool shuffle = true;             // HDF5 byte shuffle before zstd (elements wider than 1 byte)
};

// What H5Reader::Open lists for a dataset. Its attributes are read on demand with
// H5Reader::Attributes(path): Open reads no attribute values but ucp_dtype.
struct DatasetInfo {
  std::string path;  // "a/b/weight": no leading '/'
  DType dtype = DType::kF32;
  Shape shape;
};

// Limits on what a file may claim; exceeding one is DataLoss.
inline constexpr int64_t kMaxDatasetBytes = int64_t{1} << 38;    // 256 GiB for one tensor
inline constexpr int64_t kMaxObjects = int64_t{1} << 20;         // groups + datasets in a file
inline constexpr int64_t kMaxAttributeBytes = int64_t{1} << 20;  // one attribute's value
inline constexpr int64_t kMaxAttributesPerObject = 4096;
// Bytes of one dataset that no stored chunk, contiguous block or compact data backs (HDF5 would
// read them as the fill value), checked before H5Reader allocates: a tiny file cannot make it
// allocate the declared size of chunks it does not hold.
inline constexpr int64_t kMaxFillBytes = int64_t{64} << 20;  // 64 MiB

}  // namespace ucp::formats::hdf5
