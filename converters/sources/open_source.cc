#include "converters/sources/open_source.h"

#include <utility>

#include "converters/sources/zero_source.h"
#include "formats/base/status.h"
#include "ucp/universal_source.h"
#include "ucp/weights_source.h"

namespace ucp::converters::sources {

absl::StatusOr<std::unique_ptr<ucp::Source>> OpenSniffed(const SniffedCheckpoint& sniffed,
                                                         const OpenSourceOptions& options) {
  switch (sniffed.kind) {
    case ucp::SourceKind::kZero: {
      UCP_ASSIGN_OR_RETURN(auto source, ZeroSource::Open(sniffed.path));
      return std::unique_ptr<ucp::Source>(std::move(source));
    }
    case ucp::SourceKind::kUniversal: {
      ucp::UniversalOpenOptions open;
      open.check_manifest_sizes = !options.partial;
      open.partial = options.partial;
      return ucp::OpenUniversalSource(sniffed.path, open);
    }
    default: return ucp::OpenWeightsSource(sniffed.path);
  }
}

absl::StatusOr<std::unique_ptr<ucp::Source>> OpenSource(const std::string& path,
                                                        const OpenSourceOptions& options) {
  UCP_ASSIGN_OR_RETURN(SniffedCheckpoint sniffed, SniffCheckpoint(path, options));
  return OpenSniffed(sniffed, options);
}

}  // namespace ucp::converters::sources
