//! `pstl bench --kernels`: the step's time by kernel family, from libtorch's Kineto
//! profiler (`prof.cpp`): on CUDA the device time of the kernels, on CPU the operators'
//! self time (each operator's time less that of the operators it called).

use super::{checked_batch, sync};
use crate::config::Config;
use crate::method::{pstl_views, views_losses};
use crate::train::Trainer;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::ffi::{c_char, c_void, CStr};
use tch::Device;

type EventFn = extern "C" fn(*mut c_void, *const c_char, i32, u64, u64, u64);

extern "C" {
    fn pstl_prof_start(cuda: i32) -> *mut c_char;
    fn pstl_prof_stop(ctx: *mut c_void, cb: EventFn) -> *mut c_char;
    fn pstl_prof_free(s: *mut c_char);
}

/// One profiler event.
#[derive(Debug, Clone)]
struct Event {
    name: String,
    cuda: bool,
    thread: u64,
    start: u64,
    end: u64,
}

extern "C" fn collect(
    ctx: *mut c_void,
    name: *const c_char,
    cuda: i32,
    thread: u64,
    start: u64,
    end: u64,
) {
    // SAFETY: `ctx` is the `Vec<Event>` that `profile` passes, alive for the call;
    // `name` is a NUL-terminated string valid for the callback.
    let events = unsafe { &mut *(ctx as *mut Vec<Event>) };
    let name = unsafe { CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned();
    events.push(Event {
        name,
        cuda: cuda != 0,
        thread,
        start,
        end: end.max(start),
    });
}

fn take_error(p: *mut c_char) -> Result<()> {
    if p.is_null() {
        return Ok(());
    }
    // SAFETY: a strdup'ed string from prof.cpp, freed right after the copy.
    let msg = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    unsafe { pstl_prof_free(p) };
    bail!("libtorch profiler: {msg}")
}

/// Families of kernel (CUDA) or operator (CPU) names; the first match wins.
const FAMILIES: &[(&str, &[&str])] = &[
    ("batch norm", &["batch_norm", "batchnorm", "bn_fw", "bn_bw"]),
    (
        "convolution",
        &[
            "conv",
            "cudnn",
            "implicit_gemm",
            "winograd",
            "xmma_fprop",
            "xmma_dgrad",
            "xmma_wgrad",
        ],
    ),
    (
        "matmul",
        &[
            "gemm", "matmul", "addmm", "bmm", "aten::mm", "cublas", "cutlass", "einsum",
        ],
    ),
    ("optimizer", &["foreach", "multi_tensor", "adam"]),
    ("reductions", &["reduce", "sum", "mean"]),
    (
        "copies and indexing",
        &[
            "copy",
            "index",
            "gather",
            "scatter",
            "cat",
            "transpose",
            "permute",
        ],
    ),
    (
        "elementwise",
        &[
            "elementwise",
            "vectorized",
            "unrolled",
            "relu",
            "threshold",
            "clamp",
            "mul",
            "add",
            "div",
        ],
    ),
];

/// The family of a kernel or operator name.
pub fn family(name: &str) -> &'static str {
    let low = name.to_lowercase();
    FAMILIES
        .iter()
        .find(|(_, keys)| keys.iter().any(|k| low.contains(k)))
        .map_or("other", |(f, _)| f)
}

/// Self time of each event: its duration less its direct children's, nesting read
/// from the intervals on each thread.
fn self_ns(events: &[Event]) -> Vec<u64> {
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&i| {
        let e = &events[i];
        (e.thread, e.start, std::cmp::Reverse(e.end))
    });
    let mut own: Vec<u64> = events.iter().map(|e| e.end - e.start).collect();
    let mut stack: Vec<usize> = Vec::new();
    for i in order {
        let e = &events[i];
        while let Some(&top) = stack.last() {
            let t = &events[top];
            if t.thread != e.thread || t.end <= e.start {
                stack.pop();
            } else {
                break;
            }
        }
        if let Some(&parent) = stack.last() {
            own[parent] = own[parent].saturating_sub(e.end - e.start);
        }
        stack.push(i);
    }
    own
}

/// Result of [`kernels`].
#[derive(Debug, Clone)]
pub struct KernelReport {
    /// Profiled steps.
    pub steps: usize,
    /// What was summed: CUDA kernel time or CPU operator self time.
    pub what: &'static str,
    /// `(family, ms per step)`, largest first.
    pub families: Vec<(String, f64)>,
    /// The 12 largest single names, `(name, ms per step)`, largest first.
    pub top: Vec<(String, f64)>,
}

/// `warmup` steps, then `steps` steps under the profiler.
pub fn kernels(cfg: &Config, device: Device, steps: usize, warmup: usize) -> Result<KernelReport> {
    let x = checked_batch(cfg, device)?;
    let mut trainer = Trainer::new(cfg, device);
    let lr = 1e-3;
    let step = |trainer: &mut Trainer| {
        let mut rng = trainer.step_rng();
        let views = pstl_views(&x, cfg, &trainer.layout, &mut rng);
        let losses = views_losses(&trainer.model, &views, cfg, true);
        trainer.apply(&losses, lr);
    };
    for _ in 0..warmup {
        step(&mut trainer);
    }
    sync(device);
    let cuda = device.is_cuda();
    // SAFETY: plain C calls; the profiler is stopped below on every path.
    take_error(unsafe { pstl_prof_start(cuda as i32) })?;
    for _ in 0..steps {
        step(&mut trainer);
    }
    sync(device);
    let mut events: Vec<Event> = Vec::new();
    // SAFETY: `collect` only touches `events`, which outlives the call.
    take_error(unsafe { pstl_prof_stop(&mut events as *mut Vec<Event> as *mut c_void, collect) })?;
    let own = self_ns(&events);
    let mut fams: BTreeMap<&'static str, f64> = BTreeMap::new();
    let mut names: BTreeMap<&str, f64> = BTreeMap::new();
    for (e, ns) in events.iter().zip(own) {
        if e.cuda == cuda {
            let ms = ns as f64 / 1e6 / steps.max(1) as f64;
            *fams.entry(family(&e.name)).or_default() += ms;
            *names.entry(&e.name).or_default() += ms;
        }
    }
    let sorted = |m: Vec<(String, f64)>| {
        let mut m = m;
        m.sort_by(|a, b| b.1.total_cmp(&a.1));
        m
    };
    let families = sorted(fams.into_iter().map(|(f, ms)| (f.into(), ms)).collect());
    let mut top = sorted(names.into_iter().map(|(n, ms)| (n.into(), ms)).collect());
    top.truncate(12);
    Ok(KernelReport {
        steps,
        what: if cuda {
            "CUDA kernel time"
        } else {
            "CPU operator self time"
        },
        families,
        top,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(thread: u64, start: u64, end: u64) -> Event {
        Event {
            name: String::new(),
            cuda: false,
            thread,
            start,
            end,
        }
    }

    #[test]
    fn self_time_subtracts_direct_children_per_thread() {
        // 0..100 holds 10..40 (which holds 20..30) and 50..60; thread 2 is apart.
        let e = [
            ev(1, 0, 100),
            ev(1, 10, 40),
            ev(1, 20, 30),
            ev(1, 50, 60),
            ev(2, 5, 15),
        ];
        assert_eq!(self_ns(&e), vec![100 - 30 - 10, 30 - 10, 10, 10, 10]);
    }

    #[test]
    fn families_of_typical_names() {
        assert_eq!(family("cudnn::bn_fw_tr_1C11_kernel_NCHW"), "batch norm");
        assert_eq!(
            family("sm90_xmma_fprop_implicit_gemm_f32f32"),
            "convolution"
        );
        assert_eq!(family("ampere_sgemm_128x64_nn"), "matmul");
        assert_eq!(
            family("void at::native::multi_tensor_apply_kernel<Adam>"),
            "optimizer"
        );
        assert_eq!(family("aten::mkldnn_convolution"), "convolution");
        assert_eq!(family("something_new"), "other");
    }
}
