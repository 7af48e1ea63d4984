// A shared message (mattex_facts.hpp, from mattex/shared_facts.json) with its {name} placeholders
// filled, as Python's str.format fills them (mattex.facts.message): the one text both runtimes say.
#pragma once

#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>

namespace mattex::detail {

inline std::string fillMessage(const char* text, std::initializer_list<std::pair<const char*, std::string>> values) {
  std::string out;
  for (const char* p = text; *p;) {
    const char* close = *p == '{' ? std::char_traits<char>::find(p, std::char_traits<char>::length(p), '}') : nullptr;
    if (!close) {
      out += *p++;
      continue;
    }
    const std::string name(p + 1, close);
    const auto* value = static_cast<const std::pair<const char*, std::string>*>(nullptr);
    for (const auto& v : values) {
      if (name == v.first) value = &v;
    }
    // A placeholder nobody fills is a mistake in the shared facts or in the caller (Python: KeyError).
    if (!value) throw std::logic_error("shared message placeholder {" + name + "} is not filled: " + text);
    out += value->second;
    p = close + 1;
  }
  return out;
}

}  // namespace mattex::detail
