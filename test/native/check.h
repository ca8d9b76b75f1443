// A minimal test harness for the native core: CHECK records failures, TEST registers a
// case, main runs them all and exits non-zero on any failure.
#pragma once
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace check {
struct Case {
  const char* name;
  std::function<void()> fn;
};
inline std::vector<Case>& cases() {
  static std::vector<Case> c;
  return c;
}
inline int& failures() {
  static int f = 0;
  return f;
}
struct Register {
  Register(const char* n, std::function<void()> f) { cases().push_back({n, std::move(f)}); }
};
}  // namespace check

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "  FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);   \
      check::failures()++;                                                       \
    }                                                                            \
  } while (0)

#define TEST(name)                                             \
  static void test_##name();                                   \
  static check::Register reg_##name(#name, test_##name);       \
  static void test_##name()
