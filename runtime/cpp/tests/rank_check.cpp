// The C++ automatic backend choice against the ranks it shares with Python (mattex/shared_facts.json),
// for tests/runtime/cpp/test_cpp_facts.py.
//   rank_check              -> "<backend> <rank>" for each backend the library knows (-1: never automatic)
//   rank_check FILE.ranked  -> the message of the backend the automatic choice opened FILE with, after
//                              registering, for .ranked files: "absent" (rank 0, not built in),
//                              "second" (rank 2), "first" (rank 1) and "unranked", in that order.
#include <iostream>

#include "../src/backend.hpp"

namespace {

using mattex::detail::Backend;

template <const char* Name>
std::unique_ptr<Backend> openNamed(const std::string&, const mattex::Options&, const mattex::detail::Sidecar*) {
  throw mattex::ConfigError(std::string("opened by ") + Name);
}
constexpr char kSecond[] = "second", kFirst[] = "first", kUnranked[] = "unranked";

}  // namespace

int main(int argc, char** argv) {
  if (argc == 1) {
    for (const auto& entry : mattex::detail::backends()) std::cout << entry.name << " " << entry.rank << "\n";
    return 0;
  }
  namespace d = mattex::detail;
  d::registerBackend({"absent", {".ranked"}, "(never built)", nullptr, 0});
  d::registerBackend({"second", {".ranked"}, "", openNamed<kSecond>, 2});
  d::registerBackend({"first", {".ranked"}, "", openNamed<kFirst>, 1});
  d::registerBackend({"unranked", {".ranked"}, "", openNamed<kUnranked>, -1});
  try {
    mattex::Matter::open(argv[1]);
  } catch (const mattex::Error& e) {
    std::cout << e.kind() << ": " << e.what() << "\n";
  }
  return 0;
}
