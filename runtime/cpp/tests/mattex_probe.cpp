// The C++ runtime driven from the Python suite (tests/runtime/cpp):
//   mattex_probe open MODEL [PRECISION]           -> "ok <backend> <precision> <io> <ioDtype> <arithmetic>"
//                                                    or "<ErrorKind>: <message>" (exit 1)
//   mattex_probe run MODEL DIR                    -> each case of DIR/cases ("KIND B H W", as c_api_check):
//                                                    DIR/<i>.pha.cpp.bin, <i>.fgr.cpp.bin from <i>.src.bin, <i>.bgr.bin
//   mattex_probe loop MODEL H W N                 -> "rss <kB after 100 frames> <kB after N>"
//   mattex_probe threads MODEL H W                -> "identical" when 4 threads sharing one Matter and 2
//                                                    with their own give what one call alone gives
//   mattex_probe open-threads MODEL N             -> as open, with Options::threads = N
//   mattex_probe open-no-threads MODEL            -> as open, in a process that cannot start a thread
//                                                    (root only: RLIMIT_NPROC 1 under the real uid of
//                                                    nobody, files still read as root)
//   mattex_probe alloc DIR H W                    -> "<ErrorKind>: <message>" (exit 1) of matteFrames on
//                                                    a float32 .fake file (DIR/m.fake) with the address
//                                                    space capped 16 MiB above the caller's buffers
#include <sys/fsuid.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>
#include <vector>

#include "fake_backend.hpp"
#include "test_frames.hpp"
#include "mattex/matter.hpp"


namespace {

template <typename T>
std::vector<T> readBinary(const std::string& path, size_t count) {
  std::vector<T> data(count);
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(count * sizeof(T)));
  if (!in) throw std::runtime_error("cannot read " + std::to_string(count) + " values from " + path);
  return data;
}

void writeBinary(const std::string& path, const std::vector<float>& data) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size() * sizeof(float)));
}

long residentKb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}


int openCommand(int argc, char** argv) {
  mattex::Options options;
  if (argc > 3) options.inferencePrecision = argv[3];
  auto matter = mattex::Matter::open(argv[2], options);
  const auto& info = matter->info();
  std::cout << "ok " << info.backend << " " << info.precision << " " << info.io << " " << info.ioDtype << " "
            << (info.arithmetic.empty() ? "-" : info.arithmetic) << "\n";
  return 0;
}

// Each case of DIR/cases ("KIND B H W") through one Matter, as c_api_check does through the C API.
int runCommand(char** argv) {
  const std::string dir = argv[3];
  auto matter = mattex::Matter::open(argv[2]);
  std::ifstream cases(dir + "/cases");
  std::string kind;
  int64_t b, h, w;
  for (int i = 0; cases >> kind >> b >> h >> w; ++i) {
    const std::string prefix = dir + "/" + std::to_string(i);
    const size_t n = static_cast<size_t>(b * h * w);
    std::vector<float> pha(n), fgr(3 * n);
    if (kind == "frames") {
      const auto src = readBinary<uint8_t>(prefix + ".src.bin", 3 * n);
      const auto bgr = readBinary<uint8_t>(prefix + ".bgr.bin", 3 * n);
      matter->matteFrames(src.data(), bgr.data(), b, h, w, pha.data(), fgr.data());
    } else {
      const auto src = readBinary<float>(prefix + ".src.bin", 3 * n), bgr = readBinary<float>(prefix + ".bgr.bin", 3 * n);
      matter->run(src.data(), bgr.data(), b, h, w, pha.data(), fgr.data());
    }
    writeBinary(prefix + ".pha.cpp.bin", pha);
    writeBinary(prefix + ".fgr.cpp.bin", fgr);
  }
  return 0;
}

int loopCommand(char** argv) {
  const int64_t h = std::atoll(argv[3]), w = std::atoll(argv[4]), count = std::atoll(argv[5]);
  auto matter = mattex::Matter::open(argv[2]);
  std::vector<float> src, bgr, pha(static_cast<size_t>(h * w)), fgr(3 * pha.size());
  mattex::testing::frames(1, h, w, src, bgr);
  long early = 0;
  for (int64_t i = 1; i <= count; ++i) {
    matter->run(src.data(), bgr.data(), 1, h, w, pha.data(), fgr.data());
    if (i == 100) early = residentKb();
  }
  std::cout << "rss " << early << " " << residentKb() << "\n";
  return 0;
}

int threadsCommand(char** argv) {
  const int64_t h = std::atoll(argv[3]), w = std::atoll(argv[4]);
  auto shared = mattex::Matter::open(argv[2]);
  std::vector<float> src, bgr, pha0(static_cast<size_t>(2 * h * w)), fgr0(3 * pha0.size());
  mattex::testing::frames(2, h, w, src, bgr);
  shared->run(src.data(), bgr.data(), 2, h, w, pha0.data(), fgr0.data());
  bool identical = true;
  std::mutex mutex;
  const auto work = [&](bool own) {
    std::unique_ptr<mattex::Matter> mine = own ? mattex::Matter::open(argv[2]) : nullptr;
    mattex::Matter* matter = own ? mine.get() : shared.get();
    for (int k = 0; k < 3; ++k) {
      std::vector<float> pha(pha0.size()), fgr(fgr0.size());
      matter->run(src.data(), bgr.data(), 2, h, w, pha.data(), fgr.data());
      std::lock_guard<std::mutex> lock(mutex);
      identical = identical && pha == pha0 && fgr == fgr0;
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) threads.emplace_back(work, t >= 4);
  for (auto& t : threads) t.join();
  std::cout << (identical ? "identical" : "different") << "\n";
  return identical ? 0 : 1;
}

int openThreadsCommand(char** argv) {
  mattex::Options options;
  options.threads = std::atoi(argv[3]);
  mattex::Matter::open(argv[2], options);
  std::cout << "ok\n";
  return 0;
}

// A process at its process/thread limit, as a user meets it (root is exempt from RLIMIT_NPROC,
// so the real uid becomes nobody's; the saved uid stays root so that the file-system uid can stay
// root and every file still reads).
int openNoThreadsCommand(char** argv) {
  const rlimit one{1, 1};
  if (::setrlimit(RLIMIT_NPROC, &one) != 0 || ::setresuid(65534, 65534, 0) != 0) {
    std::perror("cannot limit the process count");
    return 3;
  }
  ::setfsuid(0);
  std::thread probe;
  try {
    probe = std::thread([] {});
    probe.join();
    std::cerr << "a thread still started: the limit does not hold here\n";
    return 3;
  } catch (const std::system_error&) {  // the limit holds
  }
  mattex::Matter::open(argv[2]);
  std::cout << "ok\n";
  return 0;
}

long virtualKb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmSize:", 0) == 0) return std::atol(line.c_str() + 7);
  }
  return -1;
}

// A frame size that passes every check but whose conversion buffers this process cannot allocate.
int allocCommand(char** argv) {
  const std::string model = std::string(argv[2]) + "/m.fake";
  mattex::testing::writeFakeModel(model, "float32");
  const int64_t h = std::atoll(argv[3]), w = std::atoll(argv[4]);
  auto matter = mattex::Matter::open(model);
  const size_t n = static_cast<size_t>(h * w);
  std::vector<uint8_t> src(3 * n, 200), bgr(3 * n, 100);
  std::vector<float> pha(n), fgr(3 * n);
  const rlim_t cap = static_cast<rlim_t>(virtualKb() + 16 * 1024) * 1024;
  const rlimit limit{cap, cap};
  if (::setrlimit(RLIMIT_AS, &limit) != 0) return 3;
  matter->matteFrames(src.data(), bgr.data(), 1, h, w, pha.data(), fgr.data());
  std::cout << "ok\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  mattex::testing::registerFakeBackend();  // .fake files, for the suite's conversion tests
  const std::string command = argc > 1 ? argv[1] : "";
  try {
    if (command == "open" && argc >= 3) return openCommand(argc, argv);
    if (command == "run" && argc == 4) return runCommand(argv);
    if (command == "loop" && argc == 6) return loopCommand(argv);
    if (command == "threads" && argc == 5) return threadsCommand(argv);
    if (command == "open-threads" && argc == 4) return openThreadsCommand(argv);
    if (command == "open-no-threads" && argc == 3) return openNoThreadsCommand(argv);
    if (command == "alloc" && argc == 5) return allocCommand(argv);
  } catch (const mattex::Error& e) {
    std::cout << e.kind() << ": " << e.what() << "\n";
    return 1;
  }
  std::cerr << "usage: mattex_probe open|run|loop|threads|open-threads|open-no-threads|alloc ... (see the source)\n";
  return 2;
}
