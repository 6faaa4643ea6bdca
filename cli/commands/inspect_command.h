// `ucp inspect FILE`: what is inside one file of any format ucp reads (formats/registry.h). The
// torch.save value tree with tensors as dtype + shape, safetensors headers, HDF5 datasets; with
// --values N the first N elements of each tensor, with --json a machine-readable document, with
// --verify every record read and checked (CRC-32 and sizes).
#pragma once

#include <ostream>
#include <string>

namespace ucp::cli {

struct InspectOptions {
  std::string path;
  int values = 0;  // elements shown per tensor
  bool json = false;
  bool verify = false;
  int max_items = 50;  // entries shown per container in the text view (0 = all)
};

// Returns the process exit code: 0 ok, 1 error (one "error: ..." line on `err`).
int RunInspect(const InspectOptions& options, std::ostream& out, std::ostream& err);

}  // namespace ucp::cli
