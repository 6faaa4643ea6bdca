#include "converters/deepspeed/gather.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "formats/base/status.h"

namespace ucp::converters::deepspeed {

absl::StatusOr<Buffer> ReadLocation(const CheckpointIndex& index, const TensorLocation& loc) {
  const TorchFile& tf = *index.files[loc.file].torch;
  const formats::zip::ZipEntry* entry = tf.zip().Find(loc.record);
  if (entry == nullptr || loc.record_offset > entry->size ||
      loc.num_bytes() > entry->size - loc.record_offset) {
    return absl::DataLossError(absl::StrCat(tf.name(), ": no bytes [", loc.record_offset, ", +",
                                            loc.num_bytes(), ") in record ", loc.record));
  }
  UCP_ASSIGN_OR_RETURN(Buffer record, tf.zip().Read(*entry));
  return record.Slice(loc.record_offset, loc.num_bytes());
}

absl::StatusOr<Buffer> GatherState(const CheckpointIndex& index, const Parameter& param,
                                   StateKind state, int mp_rank) {
  const ParamSlice& slice = param.slices.at(mp_rank);
  UCP_ASSIGN_OR_RETURN(int64_t local, slice.shape.NumElements());
  const int64_t numel = local * (param.is_expert() ? index.topology.ep : 1);
  const DType dtype = state == StateKind::kFp32 ? index.kind.master_dtype : index.kind.state_dtype;
  const size_t elem = DTypeSize(dtype);
  std::vector<std::byte> out(static_cast<size_t>(numel) * elem);
  for (const Fragment& f : slice.fragments) {
    const TensorLocation& loc = f.state(state);
    if (loc.dtype != dtype || f.merged_offset + f.numel > numel) {
      return absl::DataLossError(absl::StrCat("parameter '", param.name, "': fragment of dp rank ",
                                              f.dp_rank, " does not fit the ", DTypeName(dtype),
                                              " tensor of ", numel, " elements"));
    }
    UCP_ASSIGN_OR_RETURN(Buffer bytes, ReadLocation(index, loc));
    std::memcpy(out.data() + static_cast<size_t>(f.merged_offset) * elem, bytes.data(),
                bytes.size());
  }
  return Buffer::FromVector(std::move(out));
}

}  // namespace ucp::converters::deepspeed
