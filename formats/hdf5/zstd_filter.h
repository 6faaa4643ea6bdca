// The zstd HDF5 filter (registered filter id 32015, the id HDF5Plugin-Zstandard and hdf5plugin
// use). Each chunk is stored as one zstd frame that records its content size and a content
// checksum. cd_values[0] is the compression level (a signed int stored as unsigned; 0 or absent
// means zstd's default); cd_values[1] is the uncompressed chunk size in bytes, filled in by the
// filter's set_local callback when a dataset is created.
//
// HDF5 1.10 tells a filter neither the chunk size nor the size it expects back, and it copies a
// full chunk out of whatever buffer the filter returns. So decompression only accepts a frame
// whose declared size equals the expected chunk size: the one set on this thread by
// ScopedExpectedChunkBytes (ucp's reader, which derives it from the dataset's chunk layout) or
// else cd_values[1] (other programs, through the plugin). Anything else fails the filter, which
// HDF5 reports as a read error; nothing is allocated beyond the expected size.
//
// The same code is linked into ucp_hdf5 (registered with H5Zregister) and into the HDF5 plugin
// libh5zstd.so (h5zstd_plugin.cc) that h5py and h5dump load through HDF5_PLUGIN_PATH. It uses
// only the HDF5 C API and zstd so the plugin stays small.
#pragma once

#include <hdf5.h>

#include <cstddef>

namespace ucp::internal_hdf5 {

inline constexpr H5Z_filter_t kZstdFilterId = 32015;
// The level used when cd_values carries none.
inline constexpr int kZstdDefaultLevel = 3;

// The filter class handed to H5Zregister and to HDF5's plugin loader.
const H5Z_class2_t* ZstdFilterClass();

// Registers the filter with this process's HDF5 once (thread-safe). Returns false if HDF5
// refused; the reason is on the HDF5 error stack of the thread that tried.
bool RegisterZstdFilter();

// The filter callback (H5Z_func_t), exposed for tests. Returns the number of valid bytes in
// *buf, or 0 on failure after pushing a message onto the HDF5 error stack.
size_t ZstdFilter(unsigned int flags, size_t cd_nelmts, const unsigned int cd_values[],
                  size_t nbytes, size_t* buf_size, void** buf);

// While alive, zstd decompression on this thread expects every chunk to inflate to exactly
// `bytes` (overriding cd_values[1]). Not nestable.
class ScopedExpectedChunkBytes {
 public:
  explicit ScopedExpectedChunkBytes(size_t bytes);
  ~ScopedExpectedChunkBytes();
  ScopedExpectedChunkBytes(const ScopedExpectedChunkBytes&) = delete;
  ScopedExpectedChunkBytes& operator=(const ScopedExpectedChunkBytes&) = delete;
};

}  // namespace ucp::internal_hdf5
