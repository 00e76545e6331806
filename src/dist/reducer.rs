//! Gradient averaging by DDP's own engine, libtorch's `c10d::Reducer` (through
//! `bridge.cpp`): hooks on the parameters' gradient accumulators fill 25 MiB buckets as
//! backward produces gradients and all-reduce each full bucket while backward goes on;
//! backward returns once every bucket is averaged. Each parameter's `.grad` is a view
//! into its bucket (`gradient_as_bucket_view`), as in `torch.nn.parallel.DistributedDataParallel`.

use super::{DistError, ProcessGroup, Result};
use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::Arc;
use std::time::Duration;
use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn pstl_reducer_new(
        g: *mut c_void,
        params: *const *mut C_tensor,
        names: *const *const c_char,
        n: i64,
        out: *mut *mut c_void,
        err: *mut *mut c_char,
    ) -> c_int;
    fn pstl_reducer_prepare(r: *mut c_void, err: *mut *mut c_char) -> c_int;
    fn pstl_reducer_before_backward(r: *mut c_void, err: *mut *mut c_char) -> c_int;
    fn pstl_reducer_after_backward(r: *mut c_void, compute_ns: *mut i64, total_ns: *mut i64);
    fn pstl_reducer_buckets(r: *mut c_void) -> i64;
    fn pstl_reducer_drop(r: *mut c_void);
}

/// Timing of one backward pass under the Reducer.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackwardTiming {
    /// From the start of backward to the last gradient ready (its compute).
    pub compute: Duration,
    /// From the start of backward to its return (compute, then the all-reduce time
    /// that was not hidden behind it).
    pub total: Duration,
}

impl BackwardTiming {
    /// All-reduce time after backward's compute ended (not hidden behind it).
    pub fn exposed(&self) -> Duration {
        self.total.saturating_sub(self.compute)
    }
}

/// A `c10d::Reducer` over the trainable parameters of one model.
pub struct Reducer {
    ptr: *mut c_void,
    pg: Arc<ProcessGroup>,
    bytes: i64,
    // The parameters stay alive as long as the Reducer that hooks them.
    _params: Vec<Tensor>,
}

// The Reducer is used from the training thread only; the pointer is owned here.
unsafe impl Send for Reducer {}

impl std::fmt::Debug for Reducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reducer")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Drop for Reducer {
    fn drop(&mut self) {
        unsafe { pstl_reducer_drop(self.ptr) }
    }
}

impl Reducer {
    /// Hook `params` (named, the same list in the same order on every rank).
    pub fn new(pg: Arc<ProcessGroup>, params: &[(String, Tensor)]) -> Result<Self> {
        let names: Vec<CString> = params
            .iter()
            .map(|(k, _)| CString::new(k.as_str()).unwrap_or_default())
            .collect();
        let name_ptrs: Vec<*const c_char> = names.iter().map(|c| c.as_ptr()).collect();
        let tensors: Vec<Tensor> = params.iter().map(|(_, t)| t.shallow_clone()).collect();
        let ptrs: Vec<*mut C_tensor> = tensors.iter().map(|t| t.as_ptr() as *mut _).collect();
        let (mut out, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        let rc = unsafe {
            pstl_reducer_new(
                pg.ptr,
                ptrs.as_ptr(),
                name_ptrs.as_ptr(),
                ptrs.len() as i64,
                &mut out,
                &mut err,
            )
        };
        pg.fail(rc, err, "creating the gradient reducer")?;
        let bytes = tensors
            .iter()
            .map(|t| t.numel() as i64 * t.kind().elt_size_in_bytes() as i64)
            .sum();
        Ok(Reducer {
            ptr: out,
            pg,
            bytes,
            _params: tensors,
        })
    }

    /// Bytes all-reduced per step (every gradient, once).
    pub fn bytes_per_step(&self) -> i64 {
        self.bytes
    }

    /// Number of buckets (one in the first step, then DDP's sizes).
    pub fn buckets(&self) -> usize {
        unsafe { pstl_reducer_buckets(self.ptr) as usize }
    }

    /// Before the forward pass of a step (rebuilds the buckets once, after step one).
    pub fn prepare_forward(&self) -> Result<()> {
        let mut err = std::ptr::null_mut();
        let rc = unsafe { pstl_reducer_prepare(self.ptr, &mut err) };
        self.pg.fail(rc, err, "rebuilding the gradient buckets")
    }

    /// Run `backward` (which must backpropagate through every hooked parameter) with
    /// the buckets all-reduced as gradients become ready; the gradients are averaged
    /// over ranks when it returns. A failed all-reduce fails backward, and is reported
    /// naming the ranks that did not respond.
    pub fn backward(
        &self,
        backward: impl FnOnce() -> std::result::Result<(), tch::TchError>,
    ) -> Result<BackwardTiming> {
        let mut err = std::ptr::null_mut();
        let rc = unsafe { pstl_reducer_before_backward(self.ptr, &mut err) };
        self.pg.fail(rc, err, "arming the gradient reducer")?;
        if let Err(e) = backward() {
            let msg = super::first_lines(&e.to_string());
            return Err(DistError::Collective {
                rank: self.pg.rank,
                world: self.pg.world,
                op: "backward with gradient all-reduce",
                message: format!("{msg}; {}", self.pg.probe()),
            });
        }
        let (mut compute, mut total) = (0i64, 0i64);
        unsafe { pstl_reducer_after_backward(self.ptr, &mut compute, &mut total) };
        Ok(BackwardTiming {
            compute: Duration::from_nanos(compute.max(0) as u64),
            total: Duration::from_nanos(total.max(0) as u64),
        })
    }
}
