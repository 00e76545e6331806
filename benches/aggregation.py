# The graph aggregation of an ST-GCN block, einsum against permute + mm, forward +
# backward on CPU, interleaved (docs/performance.md, GPU step: kernels and memory
# traffic). Run: .venv/bin/python benches/aggregation.py
import time, torch, statistics as st
torch.set_num_threads(1)
torch.manual_seed(0)
N, K, T, V = 256, 3, 50, 25
def einsum_nar(y, a, c):
    return torch.einsum("nkctv,kvw->nctw", (y.view(N, K, c, T, V), a))
def mm_nar(y, a, c):
    y2 = y.view(N, K, c, T, V).permute(0, 2, 3, 1, 4).reshape(N * c * T, K * V)
    return y2.mm(a.reshape(K * V, V)).view(N, c, T, V)
for c in (16, 64):
    y = torch.randn(N, K * c, T, V, requires_grad=True)
    a = torch.randn(K, V, V, requires_grad=True)
    z1, z2 = einsum_nar(y, a, c), mm_nar(y, a, c)
    print("c", c, "max diff", (z1 - z2).abs().max().item())
    g = torch.randn_like(z1)
    times = {"einsum": [], "mm": []}
    for r in range(5):
        for name, f in (("einsum", einsum_nar), ("mm", mm_nar)):
            t0 = time.perf_counter()
            z = f(y, a, c); z.backward(g)
            times[name].append(time.perf_counter() - t0)
            y.grad = None; a.grad = None
    for k, v in times.items():
        print(f"c={c} {k}: median {st.median(v[1:])*1e3:.1f} ms  all {[round(x*1e3) for x in v]}")
