// ctest: the C++ runtime's checks on bad inputs, each a typed error with Python's message, and
// a Matter shared by threads. Runs on the fake backend (under AddressSanitizer too) and, where
// OpenVINO is built in, on files OpenVINO must refuse.
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <mutex>
#include <iostream>
#include <thread>
#include <vector>

#include "fake_backend.hpp"
#include "mattex/matter.hpp"

namespace {

int failures = 0;

// Expects `body` to throw a mattex::Error of `status` whose message contains `phrase`.
void expectError(const std::string& name, mattex::Status status, const std::string& phrase,
                 const std::function<void()>& body) {
  try {
    body();
    std::cout << "FAIL " << name << ": no error\n";
    ++failures;
  } catch (const mattex::Error& e) {
    const bool ok = e.status() == status && std::string(e.what()).find(phrase) != std::string::npos;
    std::cout << (ok ? "ok   " : "FAIL ") << name << ": " << e.kind() << ": " << e.what() << "\n";
    failures += !ok;
  } catch (const std::exception& e) {
    std::cout << "FAIL " << name << ": untyped " << e.what() << "\n";
    ++failures;
  }
}

void expect(const std::string& name, bool ok) {
  std::cout << (ok ? "ok   " : "FAIL ") << name << "\n";
  failures += !ok;
}

std::string temporaryFolder() {
  char pattern[] = "/tmp/mattex_runtime_check_XXXXXX";
  const char* made = mkdtemp(pattern);
  if (!made) throw std::runtime_error("mkdtemp failed");
  return made;
}

void write(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

}  // namespace

int main() {
  using mattex::Status;
  mattex::testing::registerFakeBackend();
  const std::string dir = temporaryFolder();
  const auto open = [](const std::string& path, mattex::Options options = {}) {
    return mattex::Matter::open(path, options);
  };
  const std::string model = mattex::testing::writeFakeModel(dir + "/m.fake", "float32");

  // Files.
  expectError("missing file", Status::ModelFile, "no such model file: " + dir + "/none.fake",
              [&] { open(dir + "/none.fake"); });
  expectError("a folder", Status::ModelFile, "(a folder)", [&] { open(dir); });
  write(dir + "/empty.fake", "");
  expectError("empty file", Status::ModelFile, "is empty (0 bytes)", [&] { open(dir + "/empty.fake"); });
  write(dir + "/m.txt", "text");
  expectError("unknown suffix", Status::Config, "m.txt: expected a .onnx model or a .engine/.plan engine",
              [&] { open(dir + "/m.txt"); });
  expectError("unknown backend", Status::Config, "unknown backend 'onnxruntime'", [&] {
    mattex::Options o;
    o.backend = "onnxruntime";
    open(model, o);
  });
  expectError("backend for other files", Status::Config, "backend openvino opens .onnx files, not m.fake", [&] {
    mattex::Options o;
    o.backend = "openvino";
    open(model, o);
  });
  expectError("truncated fake file", Status::ModelFile, "not a loadable fake model", [&] {
    write(dir + "/cut.fake", "dtype float32\nprofile 1 8");
    open(dir + "/cut.fake");
  });

  // Metadata.
  expectError("foreign inputs", Status::ModelFile, "has inputs ['image', 'bgr'], not a mattex model ['src', 'bgr']",
              [&] { open(mattex::testing::writeFakeModel(dir + "/in.fake", "float32", {}, {"image", "bgr"})); });
  expectError("malformed export_config", Status::ModelFile, "its mattex metadata 'export_config' is malformed",
              [&] { open(mattex::testing::writeFakeModel(dir + "/mc.fake", "float32", {{"export_config", "{nope"}})); });
  expectError("export_config not a dict", Status::ModelFile, "expected a JSON dict",
              [&] { open(mattex::testing::writeFakeModel(dir + "/ml.fake", "float32", {{"export_config", "[1]"}})); });
  expectError("malformed int", Status::ModelFile, "'export_config' is malformed (TypeError: height must be int, got \"tall\")",
              [&] { open(mattex::testing::writeFakeModel(dir + "/mi.fake", "float32", {{"config.height", "\"tall\""}})); });
  expectError("malformed bool", Status::ModelFile, "(TypeError: prevent_oversampling must be bool, got \"yes\")", [&] {
    open(mattex::testing::writeFakeModel(dir + "/mb.fake", "float32", {{"config.prevent_oversampling", "\"yes\""}}));
  });
  expectError("missing keys", Status::ModelFile, "its mattex metadata 'export_config' lacks backbone, opset",
              [&] { open(mattex::testing::writeFakeModel(dir + "/mk.fake", "float32", {{"config.backbone", mattex::testing::kRemove}, {"config.opset", mattex::testing::kRemove}})); });
  expectError("missing fields", Status::ModelFile, "its mattex metadata lacks weights",
              [&] { open(mattex::testing::writeFakeModel(dir + "/mw.fake", "float32", {{"weights", mattex::testing::kRemove}})); });
  {
    auto flat = open(mattex::testing::writeFakeModel(dir + "/flat.fake", "float32", {{"precision", "int8"}, {"backbone", mattex::testing::kRemove}}));
    expect("flat keys are copies, never read", flat->info().precision == "fp32");
  }
  expectError("dtype against the contract", Status::ModelFile, "its inputs are float16 but its mattex metadata says float32", [&] {
    open(mattex::testing::writeFakeModel(dir + "/dt.fake", "float16", {{"config.io_dtype", "\"float32\""}}));
  });
  expectError("int8 refused", Status::BackendUnavailable, "refuses int8",
              [&] { open(mattex::testing::writeFakeModel(dir + "/q.fake", "float32", {{"config.precision", "\"int8\""}})); });
  {
    auto plain = open(mattex::testing::writeFakeModel(dir + "/plain.fake", "float32", {}, {"src", "bgr"}, false));
    expect("a file without mattex metadata runs as fp32 float", !plain->info().mattexExport &&
                                                                  plain->info().precision == "fp32" &&
                                                                  plain->info().io == "float");
  }

  // Inputs.
  auto matter = open(model);
  std::vector<float> src(2 * 3 * 8 * 12, 0.5f), bgr(src.size(), 0.25f), pha(2 * 8 * 12), fgr(src.size());
  const auto run = [&](int64_t b, int64_t h, int64_t w) {
    matter->run(src.data(), bgr.data(), b, h, w, pha.data(), fgr.data());
  };
  expectError("batch 0", Status::InputShape, "need a batch of at least 1 and at least 4x4 pixels, got batch 0, 8x12",
              [&] { run(0, 8, 12); });
  expectError("negative batch", Status::InputShape, "got batch -1", [&] { run(-1, 8, 12); });
  expectError("under 4x4", Status::InputShape, "got batch 1, 2x12", [&] { run(1, 2, 12); });
  expectError("not divisible by 4", Status::InputShape, "height and width must be divisible by 4, got 8x10",
              [&] { run(1, 8, 10); });
  expectError("a huge size", Status::InputShape, "larger than any frame buffer", [&] { run(1, 1LL << 40, 4); });
  expectError("null src", Status::InvalidArgument, "src is a null pointer",
              [&] { matter->run(nullptr, bgr.data(), 1, 8, 12, pha.data(), fgr.data()); });
  expectError("null fgr", Status::InvalidArgument, "fgr is a null pointer",
              [&] { matter->run(src.data(), bgr.data(), 1, 8, 12, pha.data(), nullptr); });
  src[5] = NAN;
  src[6] = INFINITY;
  expectError("NaN and Inf", Status::InputValue, "src has 1 NaN and 1 Inf values: frames must be finite",
              [&] { run(1, 8, 12); });
  src[5] = 0.5f;
  src[6] = 0.5f;
  bgr[0] = 255.0f;
  expectError("0-255 frames", Status::InputValue, "bgr has values outside [0, 1] (min 0.25, max 255)",
              [&] { run(1, 8, 12); });
  {
    mattex::Options unchecked;
    unchecked.checkValues = false;
    auto trusting = open(model, unchecked);
    trusting->run(src.data(), bgr.data(), 1, 8, 12, pha.data(), fgr.data());
    expect("checkValues = false runs 0-255 frames", pha[0] == 1.0f);
  }
  bgr[0] = 0.25f;
  run(2, 8, 12);
  expect("run: pha and fgr", std::fabs(pha[0] - 0.25f) < 1e-6f && fgr[7] == 0.5f);

  const auto profiled = open(mattex::testing::writeFakeModel(dir + "/p.fake", "float32", {}, {"src", "bgr"}, true,
                                                             {mattex::Profile{{1, 8, 8}, {1, 8, 12}, {2, 16, 16}}}));
  expectError("outside the profiles", Status::InputShape,
              "src/bgr shape (batch 1, height 20, width 12) is outside the engine's profiles: batch 1..2, height 8..16, "
              "width 8..16",
              [&] { profiled->run(src.data(), bgr.data(), 1, 20, 12, pha.data(), fgr.data()); });

  // Threads: one Matter shared by four, and four with their own, all equal to one call alone.
  {
    std::vector<float> s(2 * 3 * 16 * 16), b(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
      s[i] = static_cast<float>((i * 37) % 101) / 100.0f;
      b[i] = static_cast<float>((i * 53) % 89) / 88.0f;
    }
    std::vector<float> pha0(2 * 16 * 16), fgr0(s.size());
    matter->run(s.data(), b.data(), 2, 16, 16, pha0.data(), fgr0.data());
    bool identical = true;
    std::mutex m;
    const auto work = [&](mattex::Matter* shared) {
      std::unique_ptr<mattex::Matter> own;
      if (!shared) own = open(model);
      mattex::Matter* use = shared ? shared : own.get();
      for (int k = 0; k < 20; ++k) {
        std::vector<float> p(pha0.size()), f(fgr0.size());
        use->run(s.data(), b.data(), 2, 16, 16, p.data(), f.data());
        std::lock_guard<std::mutex> lock(m);
        identical = identical && p == pha0 && f == fgr0;
      }
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) threads.emplace_back(work, matter.get());
    for (int t = 0; t < 4; ++t) threads.emplace_back(work, nullptr);
    for (auto& t : threads) t.join();
    expect("threads sharing a Matter or owning one agree", identical);
  }

#ifdef MATTEX_WITH_OPENVINO
  write(dir + "/text.onnx", "this is not an ONNX file at all");
  expectError("not ONNX (OpenVINO)", Status::ModelFile, "is not a loadable ONNX model (OpenVINO: ",
              [&] { open(dir + "/text.onnx"); });
  mattex::Options bad;
  bad.inferencePrecision = "f8";
  expectError("unknown inference precision", Status::Config, "unknown OpenVINO inference precision 'f8'; known: f32, bf16",
              [&] { open(dir + "/text.onnx", bad); });
#else
  write(dir + "/m.onnx", "bytes");
  expectError("OpenVINO not built in", Status::BackendUnavailable, "configure runtime/cpp with -DMATTEX_WITH_OPENVINO=ON",
              [&] { open(dir + "/m.onnx"); });
#endif

  std::system(("rm -rf '" + dir + "'").c_str());
  std::cout << (failures ? "FAILED: " : "passed: ") << failures << " failure(s)\n";
  return failures ? 1 : 0;
}
