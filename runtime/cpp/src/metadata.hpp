// What a file's metadata says it takes (private): an ONNX file's metadata_props, read with the
// rules of mattex.metadata.ExportMetadata.from_props, and its graph's inputs.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "mattex/matter.hpp"

namespace mattex::detail {

// Fills info.mattexExport, precision, io, sizeMultiple from `props` (no export_config: not a
// mattex export, which still runs when its inputs are src and bgr). ModelFileError for a
// malformed or incomplete mattex metadata, naming the key; `source` names the file.
void readMetadata(const std::map<std::string, std::string>& props, const std::string& source, ModelInfo& info);

// ModelFileError unless the graph's inputs are exactly src and bgr.
void requireInputs(const std::vector<std::string>& names, const std::string& source);

// ModelFileError unless the graph's input dtype ("float32", "float16", "uint8") is what the
// metadata's I/O contract says; then sets info.ioDtype (and info.io from it).
void settleInputDtype(const std::string& graphDtype, const std::string& source, ModelInfo& info);

// Whether `text` is valid UTF-8 (OpenVINO hands metadata over as bytes).
bool isUtf8(const std::string& text);

}  // namespace mattex::detail
