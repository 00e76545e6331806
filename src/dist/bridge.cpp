// pstl's bridge to libtorch's c10d: a TCPStore-backed process group (Gloo for CPU
// tensors; NCCL for CUDA tensors when compiled with PSTL_NCCL) and the collectives pstl
// needs, on tch tensors (`at::Tensor*`). Only opaque pointers and C types cross the
// boundary; every C++ exception becomes an error string the caller frees.
// Also the one non-c10d call tch lacks: Adam's fused multi-tensor kernel (`pstl_fused_adam`).
#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>
#ifdef PSTL_NCCL
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <algorithm>
#include <atomic>
#include <limits>
#include <unordered_map>
#include <vector>

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> gloo;
#ifdef PSTL_NCCL
  c10::intrusive_ptr<c10d::Backend> nccl;
#endif
  // The ProcessGroup wrapper c10d::Reducer needs (built on first use).
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  int rank;
  int world;
  std::chrono::milliseconds timeout;
  // Bytes of the tensors pstl all-reduced and received from all-gathers (not counting
  // the Reducer's gradient buckets).
  std::atomic<int64_t> reduced{0};
  std::atomic<int64_t> gathered{0};

  c10::intrusive_ptr<c10d::ProcessGroup> process_group(bool cuda) {
    if (!pg) {
      pg = c10::make_intrusive<c10d::ProcessGroup>(store, rank, world);
      pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, gloo);
      pg->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
    }
#ifdef PSTL_NCCL
    if (cuda) {
      backend_for(at::empty({0}, at::TensorOptions().device(at::kCUDA)));
      pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, nccl);
      pg->setDefaultBackend(c10d::ProcessGroup::BackendType::NCCL);
    }
#endif
#ifndef PSTL_NCCL
    if (cuda) throw std::runtime_error("CUDA parameters, but pstl was built without NCCL");
#endif
    return pg;
  }

  c10d::Backend& backend_for(const at::Tensor& t) {
#ifdef PSTL_NCCL
    if (t.is_cuda()) {
      if (!nccl) {
        auto opts = c10d::ProcessGroupNCCL::Options::create();
        opts->timeout = timeout;
        auto prefixed = c10::make_intrusive<c10d::PrefixStore>("nccl/", store);
        nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, rank, world, opts);
      }
      return *nccl;
    }
#endif
    if (t.is_cuda()) {
      throw std::runtime_error("CUDA tensor, but pstl was built without NCCL");
    }
    return *gloo;
  }

  void wait(const c10::intrusive_ptr<c10d::Work>& work, const char* what) {
    if (!work->wait(timeout)) {
      throw std::runtime_error(std::string(what) + " did not complete");
    }
  }
};

char* dup_error(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out) std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

template <typename F>
int guarded(char** err, F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    if (err) *err = dup_error(e.what());
  } catch (...) {
    if (err) *err = dup_error("unknown C++ exception");
  }
  return 1;
}

Group* as_group(int64_t h) { return reinterpret_cast<Group*>(h); }

void allreduce_sum(Group& g, at::Tensor& t) {
  g.reduced += t.numel() * t.element_size();
  std::vector<at::Tensor> v{t};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::SUM;
  o.timeout = g.timeout;
  g.wait(g.backend_for(t).allreduce(v, o), "all_reduce");
}

// Gathers equally shaped `t` of every rank, concatenated along dim 0.
at::Tensor allgather_cat(Group& g, const at::Tensor& t) {
  std::vector<at::Tensor> in{t.contiguous()};
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < g.world; ++r) out[0].push_back(at::empty_like(in[0]));
  c10d::AllgatherOptions o;
  o.timeout = g.timeout;
  g.wait(g.backend_for(t).allgather(out, in, o), "all_gather");
  g.gathered += in[0].numel() * in[0].element_size() * g.world;
  return at::cat(out[0], 0);
}

// Sum over ranks; the gradient of the sum is the sum of the gradients.
struct AllReduceSum : public torch::autograd::Function<AllReduceSum> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            int64_t h) {
    ctx->saved_data["h"] = h;
    at::Tensor y = x.clone().contiguous();
    allreduce_sum(*as_group(h), y);
    return y;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    at::Tensor g = grads[0].clone().contiguous();
    allreduce_sum(*as_group(ctx->saved_data["h"].toInt()), g);
    return {g, at::Tensor()};
  }
};

// Concatenation of every rank's rows (row counts may differ); the gradient of a rank's
// rows is the sum over ranks of the gradient of those rows.
struct AllGatherRows : public torch::autograd::Function<AllGatherRows> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            int64_t h) {
    Group& g = *as_group(h);
    const int64_t n = x.size(0);
    at::Tensor count = at::full({1}, n, x.options().dtype(at::kLong));
    std::vector<int64_t> counts(g.world);
    at::Tensor all = allgather_cat(g, count).cpu();
    int64_t maxn = 0, offset = 0;
    for (int r = 0; r < g.world; ++r) {
      counts[r] = all[r].item<int64_t>();
      maxn = std::max(maxn, counts[r]);
      if (r < g.rank) offset += counts[r];
    }
    std::vector<int64_t> shape = x.sizes().vec();
    shape[0] = maxn;
    at::Tensor padded = at::zeros(shape, x.options());
    padded.narrow(0, 0, n).copy_(x);
    at::Tensor gathered = allgather_cat(g, padded);
    std::vector<at::Tensor> parts;
    for (int r = 0; r < g.world; ++r) parts.push_back(gathered.narrow(0, r * maxn, counts[r]));
    ctx->saved_data["h"] = h;
    ctx->saved_data["offset"] = offset;
    ctx->saved_data["n"] = n;
    return at::cat(parts, 0);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    at::Tensor g = grads[0].clone().contiguous();
    allreduce_sum(*as_group(ctx->saved_data["h"].toInt()), g);
    return {g.narrow(0, ctx->saved_data["offset"].toInt(), ctx->saved_data["n"].toInt()),
            at::Tensor()};
  }
};

}  // namespace

extern "C" {

void pstl_dist_free_error(char* e) { std::free(e); }

int pstl_dist_new(const char* host, int port, int rank, int world, int64_t timeout_ms,
                  int is_server, void** out, char** err) {
  return guarded(err, [&] {
    auto g = std::make_unique<Group>();
    g->rank = rank;
    g->world = world;
    g->timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(port);
    so.isServer = is_server != 0;
    so.numWorkers = world;
    so.waitWorkers = false;
    so.timeout = g->timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), so);
    g->store = c10::make_intrusive<c10d::PrefixStore>("pstl/", tcp);
    auto opts = c10d::ProcessGroupGloo::Options::create(g->timeout);
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    if (ifname && *ifname) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (std::string(host) == "127.0.0.1" || std::string(host) == "localhost") {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    auto gloo_store = c10::make_intrusive<c10d::PrefixStore>("gloo/", g->store);
    g->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(gloo_store, rank, world, opts);
    *out = g.release();
  });
}

// NCCL's backend is shut down and then deliberately not destroyed: on an H200, a run
// that left it to ~ProcessGroupNCCL segfaulted at exit, and one that called shutdown()
// first failed an intrusive-pointer assertion inside that destructor. A group is
// dropped when the process is about to end, so the object is left to the OS.
void pstl_dist_drop(void* g) {
  auto* grp = static_cast<Group*>(g);
#ifdef PSTL_NCCL
  if (grp->nccl) {
    try {
      grp->nccl->shutdown();
    } catch (...) {
    }
    (void)grp->nccl.release();
    // The Reducer's ProcessGroup wrapper holds the NCCL backend too: leave it as well.
    if (grp->pg) (void)grp->pg.release();
  }
#endif
  delete grp;
}

// Peak bytes allocated by the CUDA caching allocator on `device` (what PyTorch's
// torch.cuda.max_memory_allocated reports); -1 without CUDA support compiled in.
int64_t pstl_cuda_peak_allocated(int device) {
#ifdef PSTL_NCCL
  try {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(
        static_cast<c10::DeviceIndex>(device));
    return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)]
        .peak;
  } catch (...) {
    return -1;
  }
#else
  (void)device;
  return -1;
#endif
}

// Tensor.pin_memory() without the device argument that tch passes (deprecated: libtorch
// warns on every such call, once per batch).
int pstl_pin_memory(at::Tensor* t, at::Tensor** out, char** err) {
  return guarded(err, [&] { *out = new at::Tensor(t->pin_memory()); });
}

// torch.optim.Adam(fused=True)'s update (L2 weight decay, no amsgrad) of `n` parameters
// on one device in one multi-tensor kernel; `step` is the 1-based step count after this
// update, as a float tensor on that device (read, not incremented, by the kernel).
int pstl_fused_adam(at::Tensor** params, at::Tensor** grads, at::Tensor** exp_avg,
                    at::Tensor** exp_avg_sq, at::Tensor* step, int64_t n, double lr,
                    double beta1, double beta2, double weight_decay, double eps, char** err) {
  return guarded(err, [&] {
    std::vector<at::Tensor> p, g, m, v, steps;
    for (int64_t i = 0; i < n; ++i) {
      p.push_back(*params[i]);
      g.push_back(*grads[i]);
      m.push_back(*exp_avg[i]);
      v.push_back(*exp_avg_sq[i]);
      steps.push_back(*step);
    }
    at::NoGradGuard no_grad;
    at::_fused_adam_(p, g, m, v, {}, steps, lr, beta1, beta2, weight_decay, eps,
                     /*amsgrad=*/false, /*maximize=*/false);
  });
}

// After a failed collective: announce this rank in the store, wait `wait_ms`, and list
// the ranks that never announced themselves (dead or hung) in `missing`.
int pstl_dist_probe(void* g, int64_t wait_ms, char** missing, char** err) {
  return guarded(err, [&] {
    Group& grp = *static_cast<Group*>(g);
    grp.store->setTimeout(std::chrono::milliseconds(std::max<int64_t>(wait_ms, 1000)));
    grp.store->set("failed/" + std::to_string(grp.rank), std::vector<uint8_t>{1});
    std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
    std::string out;
    for (int r = 0; r < grp.world; ++r) {
      if (!grp.store->check({"failed/" + std::to_string(r)})) {
        out += (out.empty() ? "" : ",") + std::to_string(r);
      }
    }
    *missing = dup_error(out);
  });
}

// Bytes all-reduced and all-gathered (received) by pstl's collectives so far.
void pstl_dist_bytes(void* g, int64_t* reduced, int64_t* gathered) {
  Group& grp = *static_cast<Group*>(g);
  *reduced = grp.reduced.load();
  *gathered = grp.gathered.load();
}

int pstl_dist_has_nccl() {
#ifdef PSTL_NCCL
  return 1;
#else
  return 0;
#endif
}

int pstl_dist_all_reduce_sum_(void* g, at::Tensor* t, char** err) {
  return guarded(err, [&] { allreduce_sum(*static_cast<Group*>(g), *t); });
}

int pstl_dist_all_reduce_max_(void* g, at::Tensor* t, char** err) {
  return guarded(err, [&] {
    Group& grp = *static_cast<Group*>(g);
    std::vector<at::Tensor> v{*t};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::MAX;
    o.timeout = grp.timeout;
    grp.wait(grp.backend_for(*t).allreduce(v, o), "all_reduce");
  });
}

int pstl_dist_broadcast_(void* g, at::Tensor* t, int root, char** err) {
  return guarded(err, [&] {
    Group& grp = *static_cast<Group*>(g);
    std::vector<at::Tensor> v{*t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.timeout = grp.timeout;
    grp.wait(grp.backend_for(*t).broadcast(v, o), "broadcast");
  });
}

int pstl_dist_barrier(void* g, char** err) {
  return guarded(err, [&] {
    Group& grp = *static_cast<Group*>(g);
    // A 1-element all-reduce: a barrier that also fails when a peer is gone.
    at::Tensor t = at::zeros({1});
    allreduce_sum(grp, t);
  });
}

int pstl_dist_all_gather(void* g, const at::Tensor* t, at::Tensor** out, char** err) {
  return guarded(err, [&] {
    *out = new at::Tensor(allgather_cat(*static_cast<Group*>(g), *t));
  });
}

int pstl_dist_all_reduce_sum_autograd(void* g, const at::Tensor* t, at::Tensor** out,
                                      char** err) {
  return guarded(err, [&] {
    *out = new at::Tensor(AllReduceSum::apply(*t, reinterpret_cast<int64_t>(g)));
  });
}

int pstl_dist_all_gather_rows_autograd(void* g, const at::Tensor* t, at::Tensor** out,
                                       char** err) {
  return guarded(err, [&] {
    *out = new at::Tensor(AllGatherRows::apply(*t, reinterpret_cast<int64_t>(g)));
  });
}

// ---- DDP's gradient engine: c10d::Reducer on tch's parameters ----
//
// The Reducer registers post-hooks on the parameters' gradient accumulators, fills
// buckets as gradients become ready during backward and all-reduces (averages) each
// full bucket asynchronously, then waits for them in a callback at the end of backward:
// what torch.nn.parallel.DistributedDataParallel runs. Configured as DDP's defaults:
// 25 MiB buckets (1 MiB first bucket after the rebuild), gradient_as_bucket_view, no
// unused-parameter search, one bucket in the first step, rebuilt in backward order
// before the second forward. pstl's own post-hooks record when the last gradient was
// ready, so the all-reduce time left after backward's compute can be reported.

// When backward started, and the latest time (ns after it) a gradient was ready;
// shared with the post-hooks, which outlive a dropped Reducer.
struct Timing {
  std::atomic<int64_t> last_ready_ns{0};
  std::atomic<int64_t> start_ns{0};
  // Fault injection for the tests: PSTL_FAULT_KILL_IN_BACKWARD=N kills this process
  // (SIGKILL) in its N-th backward, once half of the gradients are ready.
  int64_t kill_at = 0;
  int64_t backwards = 0;
  int64_t params = 0;
  std::atomic<int64_t> ready{0};
};

struct ReducerHandle {
  std::shared_ptr<c10d::Reducer> reducer;
  std::shared_ptr<Timing> timing = std::make_shared<Timing>();
};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int pstl_reducer_new(void* g, at::Tensor** params, const char** names, int64_t n,
                     void** out, char** err) {
  return guarded(err, [&] {
    Group& grp = *static_cast<Group*>(g);
    std::vector<at::Tensor> ps;
    std::unordered_map<size_t, std::string> param_names;
    for (int64_t i = 0; i < n; ++i) {
      ps.push_back(*params[i]);
      param_names[static_cast<size_t>(i)] = names[i];
    }
    if (ps.empty()) throw std::runtime_error("no parameters to reduce");
    const bool cuda = ps[0].is_cuda();
    std::vector<bool> sparse(ps.size(), false);
    // First step: one bucket (DDP's default without unused-parameter search).
    auto [buckets, limits] = c10d::compute_bucket_assignment_by_size(
        ps, {std::numeric_limits<size_t>::max()}, sparse);
    std::reverse(buckets.begin(), buckets.end());
    auto h = std::make_unique<ReducerHandle>();
    h->reducer = std::make_shared<c10d::Reducer>(
        ps, buckets, grp.process_group(cuda), sparse, c10d::kDefaultBucketBytesCap,
        /*find_unused_parameters=*/false, /*gradient_as_bucket_view=*/true, param_names,
        c10d::kDefaultFirstBucketBytes, /*skip_all_reduce_unused_params=*/false,
        /*use_python_reducer=*/false, std::vector<int64_t>{});
    std::shared_ptr<Timing> timing = h->timing;
    timing->params = static_cast<int64_t>(ps.size());
    if (const char* k = std::getenv("PSTL_FAULT_KILL_IN_BACKWARD")) timing->kill_at = std::atoll(k);
    for (auto& p : ps) {
      auto acc = torch::autograd::impl::grad_accumulator(p);
      acc->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
          [timing](const torch::autograd::variable_list& outputs,
                   const torch::autograd::variable_list&) {
            int64_t t = now_ns() - timing->start_ns.load();
            int64_t prev = timing->last_ready_ns.load();
            while (t > prev && !timing->last_ready_ns.compare_exchange_weak(prev, t)) {
            }
            if (timing->backwards == timing->kill_at && ++timing->ready * 2 >= timing->params) {
              std::raise(SIGKILL);
            }
            return outputs;
          }));
    }
    *out = h.release();
  });
}

// Before a forward pass whose loss will be backpropagated: rebuild the buckets once
// (after the first step, in the order gradients became ready; every rank agrees
// through a broadcast) and arm the autograd hooks.
int pstl_reducer_prepare(void* r, char** err) {
  return guarded(err, [&] {
    auto* h = static_cast<ReducerHandle*>(r);
    h->reducer->rebuild_buckets();
    h->reducer->prepare_for_forward();
  });
}

// Just before backward: the Reducer expects hooks from now on.
int pstl_reducer_before_backward(void* r, char** err) {
  return guarded(err, [&] {
    auto* h = static_cast<ReducerHandle*>(r);
    h->timing->last_ready_ns = 0;
    h->timing->ready = 0;
    h->timing->backwards += 1;
    h->timing->start_ns = now_ns();
    h->reducer->prepare_for_backward({});
  });
}

// After backward returned: nanoseconds from its start to the last gradient ready, and
// to now (the difference is all-reduce time not hidden behind backward's compute).
void pstl_reducer_after_backward(void* r, int64_t* compute_ns, int64_t* total_ns) {
  auto* h = static_cast<ReducerHandle*>(r);
  *total_ns = now_ns() - h->timing->start_ns.load();
  *compute_ns = h->timing->last_ready_ns.load();
}

int64_t pstl_reducer_buckets(void* r) {
  auto* h = static_cast<ReducerHandle*>(r);
  return static_cast<int64_t>(h->reducer->get_grad_buckets(true).size());
}

void pstl_reducer_drop(void* r) {
  auto* h = static_cast<ReducerHandle*>(r);
  try {
    h->reducer->remove_autograd_hooks();
  } catch (...) {
  }
  delete h;
}

}  // extern "C"
