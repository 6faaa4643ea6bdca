#include "formats/hdf5/h5_writer.h"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "formats/base/status.h"
#include "formats/hdf5/h5_internal.h"
#include "formats/hdf5/zstd_filter.h"

namespace ucp::formats::hdf5 {
namespace {

using internal_hdf5::DatasetHandle;
using internal_hdf5::ErrorFromStack;
using internal_hdf5::FileHandle;
using internal_hdf5::Hdf5Scope;
using internal_hdf5::ObjectHandle;
using internal_hdf5::PropHandle;
using internal_hdf5::SpaceHandle;

constexpr uint64_t kMaxChunkBytes = uint64_t{1} << 30;

// Chunk shape: row-major, keeping trailing dims whole while the chunk stays within `chunk_bytes`;
// the first dim that does not fit is cut, and every dim before it gets 1.
std::vector<hsize_t> ChunkDims(const Shape& shape, int element_bytes, uint64_t chunk_bytes) {
  const uint64_t budget = std::max<uint64_t>(1, chunk_bytes / static_cast<uint64_t>(element_bytes));
  std::vector<hsize_t> chunk(static_cast<size_t>(shape.rank()));
  uint64_t elements = 1;
  for (int i = shape.rank() - 1; i >= 0; --i) {
    uint64_t take = std::min<uint64_t>(static_cast<uint64_t>(shape.dim(i)),
                                       std::max<uint64_t>(1, budget / elements));
    chunk[static_cast<size_t>(i)] = take;
    elements *= take;  // stays <= budget
  }
  return chunk;
}

// Copies a strided tensor into row-major order.
void Gather(const TensorView& tensor, size_t element_bytes, int dim, const std::byte* src,
            std::byte*& dst) {
  const int64_t count = tensor.shape.dim(dim);
  const int64_t step =
      tensor.strides[static_cast<size_t>(dim)] * static_cast<int64_t>(element_bytes);
  if (dim == tensor.shape.rank() - 1 && step == static_cast<int64_t>(element_bytes)) {
    std::memcpy(dst, src, static_cast<size_t>(count) * element_bytes);
    dst += static_cast<size_t>(count) * element_bytes;
    return;
  }
  for (int64_t i = 0; i < count; ++i) {
    if (dim == tensor.shape.rank() - 1) {
      std::memcpy(dst, src + i * step, element_bytes);
      dst += element_bytes;
    } else {
      Gather(tensor, element_bytes, dim + 1, src + i * step, dst);
    }
  }
}

absl::Status CheckTensor(const TensorView& tensor, int64_t num_bytes) {
  if (num_bytes > 0 && tensor.data == nullptr) {
    return absl::InvalidArgumentError("tensor has no data");
  }
  if (tensor.strides.empty()) return absl::OkStatus();
  if (static_cast<int>(tensor.strides.size()) != tensor.shape.rank()) {
    return absl::InvalidArgumentError(absl::StrCat("tensor has ", tensor.strides.size(),
                                                   " strides for rank ", tensor.shape.rank()));
  }
  for (int64_t stride : tensor.strides) {
    if (stride < 0) return absl::InvalidArgumentError("negative strides are not supported");
  }
  return absl::OkStatus();
}

// Whether `name` ("a/b/c") exists. A component that is not a group gives InvalidArgument.
absl::StatusOr<bool> PathExists(hid_t file, const std::string& name) {
  size_t end = 0;
  while (end != std::string::npos) {
    end = name.find('/', end + 1);
    std::string prefix = name.substr(0, end);
    htri_t exists = H5Lexists(file, prefix.c_str(), H5P_DEFAULT);
    if (exists < 0) {
      return ErrorFromStack(absl::StatusCode::kInvalidArgument, "looking up the path");
    }
    if (exists == 0) return false;
  }
  return true;
}

// Dataset creation properties: contiguous for scalars and empty tensors, otherwise chunked with
// [shuffle,] zstd.
absl::StatusOr<PropHandle> CreationProperties(const Shape& shape, int64_t num_elements, DType dtype,
                                              const WriteOptions& options) {
  PropHandle dcpl(H5Pcreate(H5P_DATASET_CREATE));
  bool ok = dcpl.valid() && H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER) >= 0;
  if (ok && shape.rank() > 0 && num_elements > 0) {
    std::vector<hsize_t> chunk = ChunkDims(shape, DTypeSize(dtype), options.chunk_bytes);
    const unsigned int level = static_cast<unsigned int>(options.zstd_level);
    ok =
        H5Pset_chunk(dcpl.get(), shape.rank(), chunk.data()) >= 0 &&
        (!options.shuffle || DTypeSize(dtype) == 1 || H5Pset_shuffle(dcpl.get()) >= 0) &&
        H5Pset_filter(dcpl.get(), internal_hdf5::kZstdFilterId, H5Z_FLAG_MANDATORY, 1, &level) >= 0;
  }
  if (!ok) return ErrorFromStack(absl::StatusCode::kInternal, "building dataset properties");
  return dcpl;
}

absl::Status FsyncPath(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("opening ", path));
  int result = ::fsync(fd);
  int fsync_errno = errno;
  ::close(fd);
  if (result != 0 && fsync_errno != EINVAL) {
    return ErrnoToStatus(fsync_errno, absl::StrCat("fsync ", path));
  }
  return absl::OkStatus();
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

struct H5Writer::State {
  std::string path;
  std::string temp_path;
  WriteOptions options;
  FileHandle file;
  bool committed = false;

  ~State() {
    if (committed) return;
    Hdf5Scope scope;
    file.Reset();
    ::unlink(temp_path.c_str());
  }
};

H5Writer::H5Writer(std::unique_ptr<State> state) : state_(std::move(state)) {}
H5Writer::H5Writer(H5Writer&&) noexcept = default;
H5Writer& H5Writer::operator=(H5Writer&&) noexcept = default;
H5Writer::~H5Writer() = default;

const std::string& H5Writer::path() const { return state_->path; }

absl::StatusOr<H5Writer> H5Writer::Create(const std::string& path, WriteOptions options) {
  Hdf5Scope scope;
  UCP_RETURN_IF_ERROR(scope.status());
  if (options.zstd_level < ZSTD_minCLevel() || options.zstd_level > ZSTD_maxCLevel()) {
    return absl::InvalidArgumentError(
        absl::StrCat("zstd level ", options.zstd_level, " out of range"));
  }
  if (options.chunk_bytes == 0 || options.chunk_bytes > kMaxChunkBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk_bytes ", options.chunk_bytes, " out of range"));
  }
  static std::atomic<uint64_t> counter{0};
  auto state = std::make_unique<State>();
  state->path = path;
  state->temp_path = absl::StrCat(path, ".tmp-", ::getpid(), "-", counter++);
  state->options = options;
  UCP_ASSIGN_OR_RETURN(PropHandle fapl, internal_hdf5::FileAccessProperties(true));
  state->file =
      FileHandle(H5Fcreate(state->temp_path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl.get()));
  if (!state->file.valid()) {
    absl::Status status =
        ErrorFromStack(absl::StatusCode::kUnavailable, absl::StrCat("creating ", state->temp_path));
    state->committed = true;  // nothing of ours to remove
    return status;
  }
  return H5Writer(std::move(state));
}

absl::Status H5Writer::CheckOpen() const {
  if (state_ == nullptr) return absl::FailedPreconditionError("writer was moved from");
  if (state_->committed || !state_->file.valid()) {
    return absl::FailedPreconditionError(
        absl::StrCat("file ", state_->path, ": already committed or closed"));
  }
  return absl::OkStatus();
}

absl::Status H5Writer::WriteTensor(absl::string_view dataset_path, const TensorView& tensor) {
  Hdf5Scope scope;
  UCP_RETURN_IF_ERROR(scope.status());
  UCP_RETURN_IF_ERROR(CheckOpen());
  const std::string context = absl::StrCat("file ", state_->path, ": dataset '", dataset_path, "'");
  absl::StatusOr<std::string> name = internal_hdf5::NormalizePath(dataset_path, false);
  if (!name.ok()) return WithContext(name.status(), context);
  absl::StatusOr<int64_t> num_elements = tensor.shape.NumElements();
  if (!num_elements.ok()) {
    return WithContext(absl::InvalidArgumentError(num_elements.status().message()), context);
  }
  const int64_t num_bytes = *num_elements * DTypeSize(tensor.dtype);
  UCP_RETURN_IF_ERROR_CTX(CheckTensor(tensor, num_bytes), context);
  absl::StatusOr<bool> exists = PathExists(state_->file.get(), *name);
  if (!exists.ok()) return WithContext(exists.status(), context);
  if (*exists) return absl::AlreadyExistsError(absl::StrCat(context, ": already exists"));

  const std::byte* data = tensor.data;
  std::vector<std::byte> gathered;
  if (!tensor.IsContiguous() && num_bytes > 0) {
    gathered.resize(static_cast<size_t>(num_bytes));
    std::byte* out = gathered.data();
    Gather(tensor, static_cast<size_t>(DTypeSize(tensor.dtype)), 0, tensor.data, out);
    data = gathered.data();
  }
  if (tensor.dtype == DType::kBool &&
      std::any_of(data, data + num_bytes, [](std::byte b) { return b > std::byte{1}; })) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": bool tensor holds a byte other than 0/1"));
  }
  absl::StatusOr<internal_hdf5::TypeHandle> type = internal_hdf5::StoredType(tensor.dtype);
  if (!type.ok()) return WithContext(type.status(), context);
  absl::StatusOr<PropHandle> dcpl =
      CreationProperties(tensor.shape, *num_elements, tensor.dtype, state_->options);
  if (!dcpl.ok()) return WithContext(dcpl.status(), context);
  std::vector<hsize_t> dims(tensor.shape.dims().begin(), tensor.shape.dims().end());
  SpaceHandle space(tensor.shape.rank() == 0
                        ? H5Screate(H5S_SCALAR)
                        : H5Screate_simple(tensor.shape.rank(), dims.data(), nullptr));
  PropHandle lcpl(H5Pcreate(H5P_LINK_CREATE));
  if (!space.valid() || !lcpl.valid() || H5Pset_create_intermediate_group(lcpl.get(), 1) < 0) {
    return ErrorFromStack(absl::StatusCode::kInternal, context);
  }
  DatasetHandle dataset(H5Dcreate2(state_->file.get(), name->c_str(), type->get(), space.get(),
                                   lcpl.get(), dcpl->get(), H5P_DEFAULT));
  if (!dataset.valid()) {
    return ErrorFromStack(absl::StatusCode::kInternal, absl::StrCat(context, ": creating"));
  }
  if (num_bytes > 0 &&
      H5Dwrite(dataset.get(), type->get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
    return ErrorFromStack(absl::StatusCode::kInternal, absl::StrCat(context, ": writing"));
  }
  return WithContext(internal_hdf5::WriteAttribute(dataset.get(), kDTypeAttribute,
                                                   std::string(DTypeName(tensor.dtype))),
                     context);
}

absl::Status H5Writer::SetAttribute(absl::string_view object_path, absl::string_view name,
                                    AttrValue value) {
  Hdf5Scope scope;
  UCP_RETURN_IF_ERROR(scope.status());
  UCP_RETURN_IF_ERROR(CheckOpen());
  const std::string context =
      absl::StrCat("file ", state_->path, ": object '", object_path, "': attribute '", name, "'");
  if (name == kDTypeAttribute) {
    return absl::InvalidArgumentError(absl::StrCat(context, ": reserved name"));
  }
  absl::StatusOr<std::string> object = internal_hdf5::NormalizePath(object_path, true);
  if (!object.ok()) return WithContext(object.status(), context);
  if (!object->empty()) {
    absl::StatusOr<bool> exists = PathExists(state_->file.get(), *object);
    if (!exists.ok()) return WithContext(exists.status(), context);
    if (!*exists) return absl::NotFoundError(absl::StrCat(context, ": no such group or dataset"));
  }
  ObjectHandle handle(
      H5Oopen(state_->file.get(), object->empty() ? "/" : object->c_str(), H5P_DEFAULT));
  if (!handle.valid()) return ErrorFromStack(absl::StatusCode::kInternal, context);
  return WithContext(internal_hdf5::WriteAttribute(handle.get(), name, value), context);
}

absl::Status H5Writer::Commit() {
  Hdf5Scope scope;
  UCP_RETURN_IF_ERROR(CheckOpen());
  State& s = *state_;
  if (s.file.Reset() < 0) {
    return ErrorFromStack(absl::StatusCode::kInternal,
                          absl::StrCat("file ", s.path, ": closing ", s.temp_path));
  }
  UCP_RETURN_IF_ERROR(FsyncPath(s.temp_path, O_RDONLY));
  if (::rename(s.temp_path.c_str(), s.path.c_str()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("renaming ", s.temp_path, " to ", s.path));
  }
  s.committed = true;
  return FsyncPath(DirName(s.path), O_RDONLY | O_DIRECTORY);
}

}  // namespace ucp::formats::hdf5
