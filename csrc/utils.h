// Small helpers shared by the kernels: argument checks with messages that name the argument,
// what was expected and what came, and the choice of instruction set for the CPU kernels.
#pragma once

#include <ATen/ATen.h>

#include <string>

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(__CUDACC__)
// The CPU kernels carry x86 variants compiled with target attributes (the build has no -march
// flags) and pick one at run time with cpu_isa().
#define HDML_X86_DISPATCH 1
#include <ATen/Version.h>
#endif

namespace hdml {

// The instruction sets the CPU kernels have variants for, narrowest first.
//   kAvx2:   AVX2, FMA, BMI1 and BMI2 (x86-64-v3; F16C comes with it).
//   kAvx512: kAvx2 and AVX-512 F, VL, BW and DQ.
enum class CpuIsa { kBaseline, kAvx2, kAvx512 };

#ifndef __CUDACC__
// The widest instruction set that this CPU runs and that ATen's CPU capability allows, decided
// once per process. ATen's capability honours ATEN_CPU_CAPABILITY (default, avx2, avx512), so
// that variable selects the kernels' variants as it selects torch's own. (Not declared in CUDA
// sources: one definition for every C++ source that uses it.)
inline CpuIsa cpu_isa() {
#ifdef HDML_X86_DISPATCH
  static const CpuIsa isa = [] {
    const std::string capability = at::get_cpu_capability();
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                      __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
    if (capability == "AVX512" && avx512) return CpuIsa::kAvx512;
    if ((capability == "AVX512" || capability == "AVX2") && avx2) return CpuIsa::kAvx2;
    return CpuIsa::kBaseline;
  }();
  return isa;
#else
  return CpuIsa::kBaseline;
#endif
}
#endif  // __CUDACC__

inline std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (d) s += ", ";
    s += std::to_string(t.size(d));
  }
  return s + "]";
}

#define HDML_CHECK_DIM(t, name, ndim)                                                       \
  TORCH_CHECK((t).dim() == (ndim), name " should be a ", ndim, "-D tensor, got ", (t).dim(), \
              "-D with shape ", ::hdml::shape_str(t))

#define HDML_CHECK_FLOATING(t, name)                                                          \
  TORCH_CHECK(at::isFloatingType((t).scalar_type()), name " should be a floating-point tensor, " \
              "got ", (t).scalar_type())

#define HDML_CHECK_SAME_DEVICE(a, name_a, b, name_b)                                          \
  TORCH_CHECK((a).device() == (b).device(), name_a " and " name_b " should be on the same "   \
              "device, got ", (a).device(), " and ", (b).device())

#define HDML_CHECK_SAME_DTYPE(a, name_a, b, name_b)                                           \
  TORCH_CHECK((a).scalar_type() == (b).scalar_type(), name_a " and " name_b " should have the " \
              "same dtype, got ", (a).scalar_type(), " and ", (b).scalar_type())

}  // namespace hdml
