// Small helpers shared by the kernels: argument checks with messages that name the argument,
// what was expected and what came.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace hdml {

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
