// A backend for tests, compiled only into the test programs: it reads a small text file
// (`.fake`) holding what an ONNX file's graph and metadata_props would say, so the library's own
// code (metadata reader, checks, conversions, C API) runs under AddressSanitizer, where OpenVINO
// cannot be loaded. pha = mean over channels of |src - bgr| (clipped to 1), fgr = src, both as
// the float the file's input dtype holds. One fact per line (no JSON: its templates cost each
// sanitizer build seconds):
//
//   dtype float32|float16|uint8
//   inputs src bgr
//   profile 1 8 8  1 8 12  2 16 16      (optional: min, opt, max batch/height/width)
//   prop export_config {"io": "float"}  (a metadata_props entry: key, then the rest of the line)
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "mattex/matter.hpp"

namespace mattex::testing {

// Registers the backend "fake" for .fake files (once; later calls do nothing).
void registerFakeBackend();

// metadata_props entries replacing a mattex export's defaults, or (named `config.KEY`, a JSON
// value) entries of its export configuration; kRemove deletes the key.
using Props = std::vector<std::pair<std::string, std::string>>;
inline const std::string kRemove = "\x01remove";

// Writes a .fake file for a mattex export (or, with mattexExport false, a file without mattex
// metadata) taking `dtype` inputs.
std::string writeFakeModel(const std::string& path, const std::string& dtype, const Props& props = {},
                           const std::vector<std::string>& inputs = {"src", "bgr"}, bool mattexExport = true,
                           const std::vector<Profile>& profiles = {});

}  // namespace mattex::testing
