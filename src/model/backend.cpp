// libtorch settings and probes that tch does not expose (src/model/backend.rs):
// - TF32 for cuBLAS fp32 matmuls (PyTorch's torch.backends.cuda.matmul.allow_tf32);
// - dropping a parameter's gradient (`zero_grad(set_to_none=True)`);
// - an operator counter on this thread (RecordFunction callbacks), the cheap proxy for
//   kernel launches that `examples/op_count.rs` prints.
// Only C types cross the boundary; no C++ exception escapes.
#include <ATen/Context.h>
#include <ATen/record_function.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

namespace {

// Operators that only allocate, make views or read metadata: they launch no kernel,
// so they neither count as leaves nor, by themselves, make their caller a non-leaf.
bool is_free(const char* name) {
  static const std::unordered_set<std::string> free_ops = {
      "aten::empty", "aten::empty_strided", "aten::empty_like", "aten::new_empty",
      "aten::new_empty_strided", "aten::view", "aten::_reshape_alias", "aten::reshape",
      "aten::as_strided", "aten::permute", "aten::transpose", "aten::t", "aten::expand",
      "aten::expand_as", "aten::select", "aten::slice", "aten::unsqueeze", "aten::squeeze",
      "aten::detach", "aten::alias", "aten::_unsafe_view", "aten::resize_", "aten::unbind",
      "aten::split", "aten::split_with_sizes", "aten::chunk", "aten::narrow", "aten::mT",
      "aten::diagonal", "aten::lift_fresh", "aten::view_as", "aten::flatten",
      "aten::contiguous", "aten::to", "aten::_to_copy", "aten::result_type",
      "aten::is_same_size", "aten::_has_compatible_shallow_copy_type", "aten::set_",
      "aten::resolve_conj", "aten::resolve_neg", "aten::detach_", "detach_", "detach",
      "aten::squeeze_", "aten::unsqueeze_", "aten::as_strided_",
  };
  // The autograd engine's frames wrap each backward node's operators.
  return free_ops.count(name) > 0 || std::strncmp(name, "autograd::", 10) == 0;
}

// Per-thread counting state: the ops seen and whether the op at each nesting depth has
// called another op (an op that does not is a "leaf", the one that does the work).
struct Counter {
  std::map<std::string, std::pair<int64_t, int64_t>> ops;  // name -> (all, leaves)
  std::vector<bool> has_child;
  bool active = false;
  at::CallbackHandle handle = 0;
};

thread_local Counter counter;

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  if (!counter.has_child.empty() && !is_free(fn.name())) counter.has_child.back() = true;
  counter.has_child.push_back(false);
  counter.ops[fn.name()].first += 1;
  return nullptr;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext*) {
  if (counter.has_child.empty()) return;
  bool child = counter.has_child.back();
  counter.has_child.pop_back();
  if (is_free(fn.name())) {
    // A free op that did work through a child (`contiguous` copying) passes it up.
    if (child && !counter.has_child.empty()) counter.has_child.back() = true;
  } else if (!child) {
    counter.ops[fn.name()].second += 1;
  }
}

}  // namespace

extern "C" {

void pstl_backend_set_tf32_matmul(int on) {
  at::globalContext().setAllowTF32CuBLAS(on != 0);
}

// Drop the gradient of a tensor (PyTorch's `zero_grad(set_to_none=True)`).
void pstl_backend_clear_grad(at::Tensor* t) { t->mutable_grad().reset(); }

int pstl_backend_tf32_matmul() { return at::globalContext().allowTF32CuBLAS() ? 1 : 0; }

// Start counting the aten operators this thread runs (and the autograd engine runs for
// it: thread-local callbacks travel with the engine's tasks). Returns 1 if already on.
int pstl_backend_count_start() {
  if (counter.active) return 1;
  counter.ops.clear();
  counter.has_child.clear();
  counter.handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(on_start, on_end)
          .needsInputs(false)
          .scopes({at::RecordScope::FUNCTION}));
  counter.active = true;
  return 0;
}

// Stop counting; returns "name\tall\tleaves\n" lines (malloc'd, free with
// pstl_backend_free), or null when counting was off.
char* pstl_backend_count_stop() {
  if (!counter.active) return nullptr;
  at::removeCallback(counter.handle);
  counter.active = false;
  std::string out;
  for (const auto& [name, n] : counter.ops) {
    out += name + "\t" + std::to_string(n.first) + "\t" + std::to_string(n.second) + "\n";
  }
  counter.ops.clear();
  char* s = static_cast<char*>(std::malloc(out.size() + 1));
  if (s) std::memcpy(s, out.c_str(), out.size() + 1);
  return s;
}

void pstl_backend_free(char* s) { std::free(s); }

}  // extern "C"
