// A backend for tests, compiled only into the test programs: it reads a small JSON file
// (`.fake`) holding what an ONNX file's graph and metadata_props would say, so the library's own
// code (metadata reader, checks, conversions, C API) runs under AddressSanitizer, where OpenVINO
// cannot be loaded. pha = mean over channels of |src - bgr| (clipped to 1), fgr = src, both as
// the float the file's input dtype holds.
//
//   {"inputs": ["src", "bgr"], "dtype": "float32" | "float16" | "uint8",
//    "metadata_props": {"export_config": "{...}", ...}, "profiles": [[min], [opt], [max]] (optional)}
#pragma once

#include <string>

namespace mattex::testing {

// Registers the backend "fake" for .fake files (once; later calls do nothing).
void registerFakeBackend();

// Writes a .fake file for a mattex export taking `dtype` inputs; `extraProps` is JSON object
// members appended to metadata_props (e.g. "\"precision\": \"int8\""), replacing the defaults.
std::string writeFakeModel(const std::string& path, const std::string& dtype, const std::string& extraProps = "",
                           const std::string& inputs = "[\"src\", \"bgr\"]", bool mattexExport = true,
                           const std::string& profiles = "");

}  // namespace mattex::testing
