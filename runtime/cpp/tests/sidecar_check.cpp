// Reads a sidecar and hashes its plan with the C++ runtime's code, for tests/test_cpp_sidecar.py.
//   sidecar_check ENGINE  ->  prints "<tensorrt_version> <cc major>.<minor> <profiles> <sha match>"
#include <iostream>

#include "mattex/matter.hpp"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  try {
    const auto s = mattex::Sidecar::load(argv[1]);
    const bool match = mattex::sha256File(argv[1]) == s.planSha256;
    std::cout << s.tensorrtVersion << " " << s.computeCapability[0] << "." << s.computeCapability[1]
              << " " << s.profiles.size() << " " << (match ? "match" : "mismatch") << " "
              << (s.profiles.at(0).accepts(1, 1080, 1920) ? "accepts" : "refuses") << "\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
