// The Python entry point of hdml_ext._C. `import hdml_ext._C` loads this shared library, which
// runs the static operator registrations (csrc/ops.cpp and the backends). The module itself
// carries no functions: the ops live under torch.ops.hdml. C++ users of the CMake build load
// the library without this file (torch::ops via dlopen / torch.ops.load_library).

#include <Python.h>

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",
      "hdml_ext kernels: registers the torch.ops.hdml operators",
      -1,
      nullptr,
  };
  return PyModule_Create(&module_def);
}
