//! Device and thread selection shared by every command (`--device`, `--threads`), and
//! the copy of a host batch to the device.

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

/// Parse `auto|cpu|cuda|cuda:N`; `auto` picks CUDA device 0 when one is available.
pub fn parse_device(s: &str) -> Result<Device> {
    Ok(match s {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Device::Cuda(n),
            _ => bail!("bad device `{s}`: expected auto, cpu, cuda or cuda:N"),
        },
    })
}

/// Resolve a device and check that it exists.
pub fn resolve_device(s: &str) -> Result<Device> {
    let d = parse_device(s)?;
    if let Device::Cuda(n) = d {
        let count = tch::Cuda::device_count() as usize;
        if n >= count {
            bail!("device `{s}` requested but {count} CUDA device(s) are available");
        }
    }
    Ok(d)
}

/// Set libtorch's intra-op threads and rayon's pool (0 = all cores). Call once.
pub fn set_threads(n: usize) {
    let n = if n == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        n
    };
    tch::set_num_threads(n as i32);
    // Ignore the error when a pool exists already (tests call this repeatedly).
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
}

/// Keep freed memory in the process for reuse (glibc's malloc). By default glibc serves
/// blocks of 32 MiB and more (every activation of a training step at the official
/// size) with `mmap` and returns them on `free`, so each step faults in and zeroes its
/// few GB afresh: a tenth of a bf16 step's CPU time went to faults and page zeroing.
/// With `mmap` off and no trimming, the heap keeps them (PyTorch recommends jemalloc or
/// tcmalloc on CPU for the same reason). Freed blocks are reused rather than returned, which
/// raised the peak resident size of the official fp32 step from 8.2 to 9.5 GB. Call
/// before the first large allocation; a no-op on other C libraries.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before the
    // training threads allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
    }
}

/// Human-readable device name for logs.
pub fn device_name(d: Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(n) => format!("cuda:{n}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Copy a host batch to the device as `(N, C, T, V, M)` float; on CUDA through pinned
/// memory with a non-blocking copy (the step queues behind it without a host wait).
pub fn batch_tensor(x: &[f32], shape: [usize; 5], device: Device) -> Tensor {
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let host = Tensor::from_slice(x).view(dims.as_slice());
    match device {
        Device::Cuda(_) => pinned(&host).to_device_(device, Kind::Float, true, false),
        _ => host.to_device(device),
    }
}

extern "C" {
    // src/dist/bridge.cpp
    fn pstl_pin_memory(
        t: *const torch_sys::C_tensor,
        out: *mut *mut torch_sys::C_tensor,
        err: *mut *mut std::ffi::c_char,
    ) -> i32;
}

/// A page-locked copy of `host` for an asynchronous host-to-device copy; `host` itself
/// when pinning fails (the copy is then synchronous).
fn pinned(host: &Tensor) -> Tensor {
    let (mut out, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
    if unsafe { pstl_pin_memory(host.as_ptr(), &mut out, &mut err) } == 0 && !out.is_null() {
        unsafe { Tensor::from_ptr(out) }
    } else {
        tracing::debug!("pinning a batch failed: {}", crate::dist::take_error(err));
        host.shallow_clone()
    }
}
