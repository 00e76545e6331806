//! Data-parallel training on libtorch's c10d: a process group over a TCP store (Gloo for
//! CPU tensors, NCCL for CUDA tensors when built with it; see `bridge.cpp`), the
//! launch environment of torchrun and SLURM ([`launch`]), collectives on tch tensors,
//! gradient averaging in buckets and synchronised batch norm ([`sync_bn`]).
//!
//! Every collective fails with [`DistError`] (naming the peer when c10d does) instead
//! of hanging past the group's timeout.

pub mod launch;
pub mod reducer;
pub mod sync_bn;

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::time::Duration;
use tch::{Device, Kind, Tensor};
use thiserror::Error;
use torch_sys::C_tensor;

pub use launch::Launch;
pub use reducer::{BackwardTiming, Reducer};

/// A failed collective or group setup.
#[derive(Debug, Error)]
pub enum DistError {
    /// c10d reported an error (a peer died, timed out, or a bad address).
    #[error("rank {rank}/{world}: {op} failed: {message}")]
    Collective {
        /// This process's rank.
        rank: usize,
        /// World size.
        world: usize,
        /// The operation.
        op: &'static str,
        /// c10d's message.
        message: String,
    },
    /// The launch environment is inconsistent.
    #[error("launch environment: {0}")]
    Env(String),
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, DistError>;

extern "C" {
    fn pstl_dist_free_error(e: *mut c_char);
    fn pstl_dist_new(
        host: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        is_server: c_int,
        out: *mut *mut c_void,
        err: *mut *mut c_char,
    ) -> c_int;
    fn pstl_dist_drop(g: *mut c_void);
    fn pstl_dist_has_nccl() -> c_int;
    fn pstl_dist_bytes(g: *mut c_void, reduced: *mut i64, gathered: *mut i64);
    fn pstl_dist_probe(
        g: *mut c_void,
        wait_ms: i64,
        missing: *mut *mut c_char,
        err: *mut *mut c_char,
    ) -> c_int;
    fn pstl_dist_all_reduce_sum_(g: *mut c_void, t: *mut C_tensor, err: *mut *mut c_char) -> c_int;
    fn pstl_dist_all_reduce_max_(g: *mut c_void, t: *mut C_tensor, err: *mut *mut c_char) -> c_int;
    fn pstl_dist_broadcast_(
        g: *mut c_void,
        t: *mut C_tensor,
        root: c_int,
        err: *mut *mut c_char,
    ) -> c_int;
    fn pstl_dist_barrier(g: *mut c_void, err: *mut *mut c_char) -> c_int;
    fn pstl_dist_all_gather(
        g: *mut c_void,
        t: *const C_tensor,
        out: *mut *mut C_tensor,
        err: *mut *mut c_char,
    ) -> c_int;
    fn pstl_dist_all_reduce_sum_autograd(
        g: *mut c_void,
        t: *const C_tensor,
        out: *mut *mut C_tensor,
        err: *mut *mut c_char,
    ) -> c_int;
    fn pstl_dist_all_gather_rows_autograd(
        g: *mut c_void,
        t: *const C_tensor,
        out: *mut *mut C_tensor,
        err: *mut *mut c_char,
    ) -> c_int;
}

/// Whether the bridge was compiled with NCCL (CUDA tensors).
pub fn has_nccl() -> bool {
    unsafe { pstl_dist_has_nccl() != 0 }
}

/// A c10d process group of `world` processes (this one is `rank`).
#[derive(Debug)]
pub struct ProcessGroup {
    ptr: *mut c_void,
    /// This process's rank.
    pub rank: usize,
    /// Number of processes.
    pub world: usize,
    /// Collective timeout.
    pub timeout: Duration,
}

// c10d process groups are thread-safe; the pointer is owned by this value.
unsafe impl Send for ProcessGroup {}
unsafe impl Sync for ProcessGroup {}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        unsafe { pstl_dist_drop(self.ptr) }
    }
}

impl ProcessGroup {
    /// Join the group of `launch` (rank 0 hosts the TCP store unless an agent does).
    pub fn new(launch: &Launch, timeout: Duration) -> Result<Self> {
        let host = CString::new(launch.master_addr.clone())
            .map_err(|_| DistError::Env(format!("MASTER_ADDR `{}`", launch.master_addr)))?;
        let mut ptr = std::ptr::null_mut();
        let mut err = std::ptr::null_mut();
        let rc = unsafe {
            pstl_dist_new(
                host.as_ptr(),
                launch.master_port as c_int,
                launch.rank as c_int,
                launch.world as c_int,
                timeout.as_millis() as i64,
                (launch.rank == 0 && !launch.agent_store) as c_int,
                &mut ptr,
                &mut err,
            )
        };
        check(
            rc,
            err,
            launch.rank,
            launch.world,
            "joining the process group",
        )?;
        Ok(ProcessGroup {
            ptr,
            rank: launch.rank,
            world: launch.world,
            timeout,
        })
    }

    fn fail(&self, rc: c_int, err: *mut c_char, op: &'static str) -> Result<()> {
        check(rc, err, self.rank, self.world, op).map_err(|e| match e {
            DistError::Collective {
                rank,
                world,
                op,
                message,
            } => DistError::Collective {
                rank,
                world,
                op,
                message: format!("{message}; {}", self.probe()),
            },
            other => other,
        })
    }

    /// Which ranks are gone, asked through the store after a failed collective.
    fn probe(&self) -> String {
        let (mut missing, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        let rc = unsafe { pstl_dist_probe(self.ptr, 3000, &mut missing, &mut err) };
        let take = |p: *mut c_char| {
            let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
            unsafe { pstl_dist_free_error(p) };
            s
        };
        if rc != 0 {
            if !err.is_null() {
                take(err);
            }
            return "rank 0 (the host of the TCP store) is gone or unreachable".into();
        }
        let list = if missing.is_null() {
            String::new()
        } else {
            take(missing)
        };
        if list.is_empty() {
            "every rank is still reachable".into()
        } else {
            format!("rank(s) {list} did not respond (died or hung)")
        }
    }

    /// Bytes this process all-reduced and received from all-gathers so far (the
    /// Reducer's gradient buckets not included).
    pub fn bytes(&self) -> (i64, i64) {
        let (mut reduced, mut gathered) = (0, 0);
        unsafe { pstl_dist_bytes(self.ptr, &mut reduced, &mut gathered) };
        (reduced, gathered)
    }

    /// In-place sum over ranks.
    pub fn all_reduce_sum(&self, t: &mut Tensor) -> Result<()> {
        let mut err = std::ptr::null_mut();
        let rc = unsafe { pstl_dist_all_reduce_sum_(self.ptr, t.as_mut_ptr(), &mut err) };
        self.fail(rc, err, "all_reduce")
    }

    /// In-place maximum over ranks.
    pub fn all_reduce_max(&self, t: &mut Tensor) -> Result<()> {
        let mut err = std::ptr::null_mut();
        let rc = unsafe { pstl_dist_all_reduce_max_(self.ptr, t.as_mut_ptr(), &mut err) };
        self.fail(rc, err, "all_reduce")
    }

    /// In-place broadcast from `root`.
    pub fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<()> {
        let mut err = std::ptr::null_mut();
        let rc = unsafe { pstl_dist_broadcast_(self.ptr, t.as_mut_ptr(), root as c_int, &mut err) };
        self.fail(rc, err, "broadcast")
    }

    /// Wait until every rank arrives (fails when one is gone).
    pub fn barrier(&self) -> Result<()> {
        let mut err = std::ptr::null_mut();
        let rc = unsafe { pstl_dist_barrier(self.ptr, &mut err) };
        self.fail(rc, err, "barrier")
    }

    fn out_op(
        &self,
        t: &Tensor,
        op: &'static str,
        f: unsafe extern "C" fn(
            *mut c_void,
            *const C_tensor,
            *mut *mut C_tensor,
            *mut *mut c_char,
        ) -> c_int,
    ) -> Result<Tensor> {
        let mut out = std::ptr::null_mut();
        let mut err = std::ptr::null_mut();
        let rc = unsafe { f(self.ptr, t.as_ptr(), &mut out, &mut err) };
        self.fail(rc, err, op)?;
        Ok(unsafe { Tensor::from_ptr(out) })
    }

    /// Every rank's equally shaped `t`, concatenated along dim 0 (no gradient).
    pub fn all_gather(&self, t: &Tensor) -> Result<Tensor> {
        self.out_op(t, "all_gather", pstl_dist_all_gather)
    }

    /// Sum over ranks whose backward sums the gradients over ranks.
    pub fn all_reduce_sum_autograd(&self, t: &Tensor) -> Result<Tensor> {
        self.out_op(t, "all_reduce", pstl_dist_all_reduce_sum_autograd)
    }

    /// Rows of every rank (counts may differ) in rank order; the gradient of this
    /// rank's rows is summed over ranks.
    pub fn all_gather_rows_autograd(&self, t: &Tensor) -> Result<Tensor> {
        self.out_op(t, "all_gather", pstl_dist_all_gather_rows_autograd)
    }

    /// Copy rank 0's values of `tensors` into every rank.
    pub fn broadcast_all(&self, tensors: &[Tensor]) -> Result<()> {
        let _guard = tch::no_grad_guard();
        for bucket in buckets(tensors) {
            let mut flat = flatten(&bucket);
            self.broadcast(&mut flat, 0)?;
            unflatten(&flat, &bucket);
        }
        Ok(())
    }

    /// Average the gradients of `vars` over ranks, in flat buckets of about 25 MB.
    /// Every rank builds the same graph, so the same variables have gradients.
    pub fn average_gradients(&self, vars: &[Tensor]) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let grads: Vec<Tensor> = vars
            .iter()
            .map(Tensor::grad)
            .filter(Tensor::defined)
            .collect();
        for bucket in buckets(&grads) {
            let mut flat = flatten(&bucket);
            self.all_reduce_sum(&mut flat)?;
            let _ = flat.g_div_scalar_(self.world as f64);
            unflatten(&flat, &bucket);
        }
        Ok(())
    }
}

fn check(rc: c_int, err: *mut c_char, rank: usize, world: usize, op: &'static str) -> Result<()> {
    if rc == 0 {
        return Ok(());
    }
    Err(DistError::Collective {
        rank,
        world,
        op,
        message: first_lines(&take_error(err)),
    })
}

/// The message of a failed bridge call, freed on the C++ side.
pub(crate) fn take_error(err: *mut c_char) -> String {
    if err.is_null() {
        return "unknown error".to_string();
    }
    let s = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    unsafe { pstl_dist_free_error(err) };
    s
}

/// c10d messages carry a C++ backtrace after the first lines: keep the message.
fn first_lines(s: &str) -> String {
    s.lines()
        .take_while(|l| !l.starts_with("Exception raised from"))
        .take(4)
        .collect::<Vec<_>>()
        .join(" ")
}

const BUCKET_BYTES: i64 = 25 << 20;

/// Consecutive groups of same-kind, same-device tensors of at most [`BUCKET_BYTES`].
fn buckets(tensors: &[Tensor]) -> Vec<Vec<Tensor>> {
    let mut out: Vec<Vec<Tensor>> = Vec::new();
    let mut bytes = 0;
    for t in tensors {
        let size = t.numel() as i64 * t.kind().elt_size_in_bytes() as i64;
        let same = out
            .last()
            .and_then(|b| b.first())
            .map(|f| f.kind() == t.kind() && f.device() == t.device())
            .unwrap_or(false);
        if !same || bytes + size > BUCKET_BYTES {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(b) = out.last_mut() {
            b.push(t.shallow_clone());
        }
    }
    out
}

/// Number of buckets [`ProcessGroup::average_gradients`] uses for `tensors`.
pub fn bucket_count(tensors: &[Tensor]) -> usize {
    buckets(tensors).len()
}

fn flatten(bucket: &[Tensor]) -> Tensor {
    let flat: Vec<Tensor> = bucket.iter().map(|t| t.reshape([-1])).collect();
    Tensor::cat(&flat, 0)
}

fn unflatten(flat: &Tensor, bucket: &[Tensor]) {
    let mut off = 0;
    for t in bucket {
        let n = t.numel() as i64;
        let src = flat.narrow(0, off, n).view_as(t);
        t.shallow_clone().copy_(&src);
        off += n;
    }
}

/// This rank's rows `[offset, offset + n)` of a global batch of `global` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// First row of this rank.
    pub offset: usize,
    /// Rows of the global batch.
    pub global: usize,
}

impl Shard {
    /// All `n` rows of a batch (one process).
    pub fn whole(n: usize) -> Self {
        Shard {
            offset: 0,
            global: n,
        }
    }

    /// This shard's `n` entries of per-row draws `all` (one per global row); a single
    /// draw (per batch) is every row's.
    pub fn pick<'a, T>(&self, all: &'a [T], n: usize) -> &'a [T] {
        if all.len() <= 1 {
            all
        } else {
            &all[self.offset..self.offset + n]
        }
    }
}

/// A 2-element CPU/device flag vector, used to agree on stop/checkpoint decisions.
pub fn flags(values: [bool; 2], device: Device) -> Tensor {
    Tensor::from_slice(&[values[0] as i32 as f32, values[1] as i32 as f32])
        .to_kind(Kind::Float)
        .to_device(device)
}
