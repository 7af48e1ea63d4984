// Reads a sidecar and hashes its plan with the C++ runtime's code, for tests/test_cpp_sidecar.py.
//   sidecar_check ENGINE
//     -> "<backend> <tensorrt_version> <cc major>.<minor> <profiles> <sha match> <accepts 1x1080x1920>"
//   sidecar_check ENGINE BACKEND VERSION MAJOR MINOR GPU
//     -> "runs" or the environment check's error (exit 1)
#include <iostream>
#include <string>

#include "../src/sidecar.hpp"

int main(int argc, char** argv) {
  if (argc != 2 && argc != 7) return 2;
  try {
    const auto s = mattex::detail::Sidecar::load(argv[1]);
    if (argc == 7) {
      mattex::detail::checkEnvironment(s, argv[2], argv[3], std::stoi(argv[4]), std::stoi(argv[5]), argv[6]);
      std::cout << "runs\n";
      return 0;
    }
    const bool match = mattex::detail::sha256File(argv[1]) == s.planSha256;
    std::cout << s.backend << " " << s.tensorrtVersion << " " << s.computeCapability[0] << "."
              << s.computeCapability[1] << " " << s.profiles.size() << " " << (match ? "match" : "mismatch")
              << " " << (s.profiles.at(0).accepts(1, 1080, 1920) ? "accepts" : "refuses") << "\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
