#include "formats/hdf5/zstd_filter.h"

#include <zstd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <mutex>

namespace ucp::internal_hdf5 {
namespace {

// Expected inflated chunk size set by ScopedExpectedChunkBytes; 0 when none.
thread_local size_t t_expected_chunk_bytes = 0;

// Pushes "zstd filter: <message>" onto the HDF5 error stack; returns the filter's failure value.
__attribute__((format(printf, 1, 2))) size_t Fail(const char* format, ...) {
  char message[256];
  va_list args;
  va_start(args, format);
  std::vsnprintf(message, sizeof(message), format, args);
  va_end(args);
  H5Epush2(H5E_DEFAULT, __FILE__, "ucp zstd filter", __LINE__, H5E_ERR_CLS, H5E_PLINE,
           H5E_CANTFILTER, "zstd filter: %s", message);
  return 0;
}

int LevelFrom(size_t cd_nelmts, const unsigned int cd_values[]) {
  if (cd_nelmts == 0) return kZstdDefaultLevel;
  int level = static_cast<int>(cd_values[0]);  // negative (fast) levels arrive as large unsigned
  if (level == 0) return kZstdDefaultLevel;
  return std::clamp(level, ZSTD_minCLevel(), ZSTD_maxCLevel());
}

size_t Compress(int level, size_t nbytes, size_t* buf_size, void** buf) {
  size_t bound = ZSTD_compressBound(nbytes);
  void* out = H5allocate_memory(bound, false);
  if (out == nullptr) return Fail("out of memory for %zu bytes", bound);
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  if (cctx == nullptr) {
    H5free_memory(out);
    return Fail("out of memory for a zstd context");
  }
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  size_t written = ZSTD_compress2(cctx, out, bound, *buf, nbytes);
  ZSTD_freeCCtx(cctx);
  if (ZSTD_isError(written)) {
    H5free_memory(out);
    return Fail("compressing %zu bytes failed: %s", nbytes, ZSTD_getErrorName(written));
  }
  H5free_memory(*buf);
  *buf = out;
  *buf_size = bound;
  return written;
}

size_t Decompress(size_t cd_nelmts, const unsigned int cd_values[], size_t nbytes, size_t* buf_size,
                  void** buf) {
  size_t expected = t_expected_chunk_bytes;
  if (expected == 0 && cd_nelmts >= 2) expected = cd_values[1];
  if (expected == 0) {
    return Fail("the chunk size is unknown (cd_values[1] absent: not written through this filter)");
  }
  unsigned long long declared = ZSTD_getFrameContentSize(*buf, nbytes);
  if (declared == ZSTD_CONTENTSIZE_ERROR) {
    return Fail("chunk of %zu bytes is not a zstd frame", nbytes);
  }
  if (declared == ZSTD_CONTENTSIZE_UNKNOWN) return Fail("zstd frame does not record its size");
  if (declared != expected) {
    return Fail("zstd frame declares %llu bytes but the chunk holds %zu", declared, expected);
  }
  size_t frame_bytes = ZSTD_findFrameCompressedSize(*buf, nbytes);
  if (ZSTD_isError(frame_bytes) || frame_bytes != nbytes) {
    return Fail("chunk of %zu bytes is not exactly one zstd frame", nbytes);
  }
  void* out = H5allocate_memory(expected, false);
  if (out == nullptr) return Fail("out of memory for %zu bytes", expected);
  size_t got = ZSTD_decompress(out, expected, *buf, nbytes);
  if (ZSTD_isError(got) || got != expected) {
    H5free_memory(out);
    return Fail("corrupt zstd chunk: %s", ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short");
  }
  H5free_memory(*buf);
  *buf = out;
  *buf_size = expected;
  return expected;
}

// set_local: records the uncompressed chunk size as cd_values[1]. Only the shuffle filter may
// come before zstd in the pipeline, because any other would change the size zstd sees.
herr_t SetLocal(hid_t dcpl, hid_t type, hid_t /*space*/) {
  hsize_t chunk[H5S_MAX_RANK];
  int rank = H5Pget_chunk(dcpl, H5S_MAX_RANK, chunk);
  size_t type_bytes = H5Tget_size(type);
  if (rank <= 0 || type_bytes == 0) {
    Fail("dataset is not chunked");
    return -1;
  }
  uint64_t bytes = type_bytes;
  for (int i = 0; i < rank; ++i) {
    if (__builtin_mul_overflow(bytes, chunk[i], &bytes) || bytes > UINT32_MAX) {
      Fail("chunk is larger than 4 GiB");
      return -1;
    }
  }
  int nfilters = H5Pget_nfilters(dcpl);
  for (int i = 0; i < nfilters; ++i) {
    unsigned flags = 0;
    size_t n = 0;
    H5Z_filter_t id =
        H5Pget_filter2(dcpl, static_cast<unsigned>(i), &flags, &n, nullptr, 0, nullptr, nullptr);
    if (id == kZstdFilterId) break;
    if (id != H5Z_FILTER_SHUFFLE) {
      Fail("only the shuffle filter may precede zstd (found filter %d)", static_cast<int>(id));
      return -1;
    }
  }
  unsigned flags = 0;
  unsigned values[8] = {};
  size_t n = 8;
  if (H5Pget_filter_by_id2(dcpl, kZstdFilterId, &flags, &n, values, 0, nullptr, nullptr) < 0) {
    return -1;
  }
  const unsigned int local[2] = {n >= 1 ? values[0] : 0u, static_cast<unsigned>(bytes)};
  return H5Pmodify_filter(dcpl, kZstdFilterId, flags, 2, local);
}

const H5Z_class2_t kZstdClass = {
    H5Z_CLASS_T_VERS, kZstdFilterId, 1, 1, "zstd", nullptr, SetLocal, ZstdFilter,
};

}  // namespace

const H5Z_class2_t* ZstdFilterClass() { return &kZstdClass; }

bool RegisterZstdFilter() {
  static std::once_flag once;
  static bool ok = false;
  std::call_once(once, [] { ok = H5Zregister(&kZstdClass) >= 0; });
  return ok;
}

size_t ZstdFilter(unsigned int flags, size_t cd_nelmts, const unsigned int cd_values[],
                  size_t nbytes, size_t* buf_size, void** buf) {
  if (buf == nullptr || *buf == nullptr || buf_size == nullptr || nbytes > *buf_size) {
    return Fail("bad buffer");
  }
  if (flags & H5Z_FLAG_REVERSE) return Decompress(cd_nelmts, cd_values, nbytes, buf_size, buf);
  return Compress(LevelFrom(cd_nelmts, cd_values), nbytes, buf_size, buf);
}

ScopedExpectedChunkBytes::ScopedExpectedChunkBytes(size_t bytes) { t_expected_chunk_bytes = bytes; }
ScopedExpectedChunkBytes::~ScopedExpectedChunkBytes() { t_expected_chunk_bytes = 0; }

}  // namespace ucp::internal_hdf5
