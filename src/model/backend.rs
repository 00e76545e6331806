//! libtorch settings and probes that tch lacks (C++ in `backend.cpp`): TF32 for the
//! fp32 matrix products of cuBLAS (the projector, the Barlow Twins Gram matrices and
//! the graph aggregation), dropping a gradient, and an operator counter, the cheap proxy for kernel launches
//! that `examples/op_count.rs` prints. The environment switches are documented in
//! `docs/performance.md`.

use std::ffi::{c_char, c_int, CStr};
use tch::{Device, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn pstl_backend_set_tf32_matmul(on: c_int);
    fn pstl_backend_tf32_matmul() -> c_int;
    fn pstl_backend_clear_grad(t: *mut C_tensor);
    fn pstl_backend_count_start() -> c_int;
    fn pstl_backend_count_stop() -> *mut c_char;
    fn pstl_backend_free(s: *mut c_char);
}

/// `PSTL_TF32_MATMUL`: `1` lets cuBLAS run fp32 matrix products in TF32.
pub const TF32_ENV: &str = "PSTL_TF32_MATMUL";

/// A bad backend switch in the environment.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Not `0` or `1`.
    #[error("{var}={value:?}: expected 0 or 1")]
    BadValue {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// A CUDA-only switch on another device.
    #[error("{var}=1 needs a CUDA device, but the device is {device}")]
    NeedsCuda {
        /// The variable.
        var: &'static str,
        /// The device in use.
        device: String,
    },
}

/// `0`/unset -> false, `1` -> true; anything else is an error naming `var`.
pub fn env_flag(var: &'static str) -> Result<bool, BackendError> {
    match std::env::var(var) {
        Err(_) => Ok(false),
        Ok(v) if v.is_empty() || v == "0" => Ok(false),
        Ok(v) if v == "1" => Ok(true),
        Ok(value) => Err(BackendError::BadValue { var, value }),
    }
}

/// Apply the backend switches of the environment for a run on `device`.
/// `PSTL_TF32_MATMUL=1` is refused off CUDA (it would change nothing there).
pub fn apply_env(device: Device) -> Result<(), BackendError> {
    if env_flag(TF32_ENV)? {
        if !device.is_cuda() {
            return Err(BackendError::NeedsCuda {
                var: TF32_ENV,
                device: format!("{device:?}").to_lowercase(),
            });
        }
        set_tf32_matmul(true);
    }
    Ok(())
}

/// TF32 for cuBLAS fp32 matmuls (`torch.backends.cuda.matmul.allow_tf32`; off by
/// default in libtorch and PyTorch). cuDNN convolutions use TF32 by default in both.
pub fn set_tf32_matmul(on: bool) {
    // SAFETY: sets one flag of libtorch's global context.
    unsafe { pstl_backend_set_tf32_matmul(c_int::from(on)) }
}

/// Whether cuBLAS fp32 matmuls may use TF32.
pub fn tf32_matmul() -> bool {
    // SAFETY: reads one flag of libtorch's global context.
    unsafe { pstl_backend_tf32_matmul() != 0 }
}

/// Drop `t`'s gradient (PyTorch's `zero_grad(set_to_none=True)`): the next backward
/// stores its gradient as it comes instead of adding it to zeros, one fill and one
/// addition less per parameter and step.
pub fn clear_grad(t: &Tensor) {
    // SAFETY: `t` is a live tensor; only its gradient slot is reset.
    unsafe { pstl_backend_clear_grad(t.as_ptr() as *mut C_tensor) }
}

/// How often one aten operator ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpCount {
    /// `aten::name`.
    pub name: String,
    /// Calls, nested ones included (`einsum` and the `bmm` it calls both count).
    pub calls: i64,
    /// Calls that called no other operator except views and allocations: the ones
    /// that do the work, about one kernel launch each on a GPU.
    pub kernels: i64,
}

/// Run `f`, counting the aten operators this thread runs (and the autograd engine runs
/// for it). A call inside another counts nothing itself: it returns an empty list and
/// the outer call's list includes its operators.
pub fn count_ops<T>(f: impl FnOnce() -> T) -> (T, Vec<OpCount>) {
    // SAFETY: installs a thread-local RecordFunction callback.
    let nested = unsafe { pstl_backend_count_start() } != 0;
    let out = f();
    if nested {
        return (out, Vec::new());
    }
    // SAFETY: removes the callback; the returned string is ours to free.
    let text = unsafe {
        let p = pstl_backend_count_stop();
        if p.is_null() {
            String::new()
        } else {
            let s = CStr::from_ptr(p).to_string_lossy().into_owned();
            pstl_backend_free(p);
            s
        }
    };
    let counts = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some(OpCount {
                name: f.next()?.to_string(),
                calls: f.next()?.parse().ok()?,
                kernels: f.next()?.parse().ok()?,
            })
        })
        .collect();
    (out, counts)
}
