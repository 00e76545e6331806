// libtorch's Kineto profiler for `pstl bench --kernels` (src/bench/kernels.rs): start
// it (CPU operators, plus CUDA kernels on CUDA), and on stop hand every event to a
// callback. Errors come back as strdup'ed messages (free with pstl_prof_free).
#include <torch/csrc/autograd/profiler_kineto.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

namespace prof = torch::autograd::profiler;
namespace impl = torch::profiler::impl;

extern "C" {

typedef void (*pstl_prof_event)(void* ctx, const char* name, int32_t on_cuda,
                                uint64_t thread, uint64_t start_ns, uint64_t end_ns);

char* pstl_prof_start(int32_t cuda) {
  try {
    std::set<impl::ActivityType> acts{impl::ActivityType::CPU};
    if (cuda) acts.insert(impl::ActivityType::CUDA);
    impl::ProfilerConfig cfg(impl::ProfilerState::KINETO);
    prof::prepareProfiler(cfg, acts);
    prof::enableProfiler(cfg, acts);
    return nullptr;
  } catch (const std::exception& e) {
    return strdup(e.what());
  }
}

char* pstl_prof_stop(void* ctx, pstl_prof_event cb) {
  try {
    auto result = prof::disableProfiler();
    for (const auto& e : result->events()) {
      int32_t on_cuda = e.deviceType() == c10::DeviceType::CUDA ? 1 : 0;
      cb(ctx, e.name().c_str(), on_cuda, e.startThreadId(), e.startNs(), e.endNs());
    }
    return nullptr;
  } catch (const std::exception& e) {
    return strdup(e.what());
  }
}

void pstl_prof_free(char* s) { free(s); }
}
