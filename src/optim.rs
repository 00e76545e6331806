//! Adam with L2 weight decay, exactly `torch.optim.Adam`'s update, with its state held
//! here (keyed by variable name) so checkpoints can save and restore it; tch's own
//! optimiser cannot export its moments. Also the learning-rate schedules of the paper.

use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::ffi::c_char;
use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    // src/dist/bridge.cpp
    fn pstl_fused_adam(
        params: *const *mut C_tensor,
        grads: *const *mut C_tensor,
        exp_avg: *const *mut C_tensor,
        exp_avg_sq: *const *mut C_tensor,
        step: *mut C_tensor,
        n: i64,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        err: *mut *mut c_char,
    ) -> i32;
}

/// Adam state and hyperparameters.
#[derive(Debug)]
pub struct Adam {
    /// `(beta1, beta2)`.
    pub betas: (f64, f64),
    /// Denominator epsilon.
    pub eps: f64,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f64,
    /// Number of updates taken.
    pub step: i64,
    params: Vec<(String, Tensor)>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
}

impl Adam {
    /// Adam over the trainable variables of a VarStore (sorted by name).
    pub fn new(vs: &tch::nn::VarStore, weight_decay: f64) -> Self {
        let mut params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Self::from_params(params, weight_decay)
    }

    /// Adam over explicit named parameters.
    pub fn from_params(params: Vec<(String, Tensor)>, weight_decay: f64) -> Self {
        let exp_avg = params.iter().map(|(_, p)| p.zeros_like()).collect();
        let exp_avg_sq = params.iter().map(|(_, p)| p.zeros_like()).collect();
        Adam {
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay,
            step: 0,
            params,
            exp_avg,
            exp_avg_sq,
        }
    }

    /// Clear the gradients of all parameters: drop them, as PyTorch's
    /// `zero_grad(set_to_none=True)` (its default), so that backward stores each
    /// gradient instead of zeroing and adding to it. A parameter without a gradient
    /// is skipped by [`Adam::step`], as `torch.optim.Adam` skips it.
    pub fn zero_grad(&mut self) {
        for (_, p) in &self.params {
            crate::model::backend::clear_grad(p);
        }
    }

    /// One update with learning rate `lr` from the current gradients, in libtorch's
    /// fused multi-tensor Adam kernel (`torch.optim.Adam(fused=True)`; CPU and CUDA):
    /// one launch instead of about ten tensor operations per parameter.
    pub fn step(&mut self, lr: f64) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let mut grads = Vec::with_capacity(self.params.len());
        let mut picked = Vec::with_capacity(self.params.len());
        for (i, (_, p)) in self.params.iter().enumerate() {
            let g = p.grad();
            if g.defined() {
                grads.push(g);
                picked.push(i);
            }
        }
        let Some(&first) = picked.first() else {
            return;
        };
        let device = self.params[first].1.device();
        let step = Tensor::from(self.step as f32).to_device(device);
        let ptrs = |v: &mut dyn Iterator<Item = &Tensor>| -> Vec<*mut C_tensor> {
            v.map(|t| t.as_ptr() as *mut C_tensor).collect()
        };
        let p = ptrs(&mut picked.iter().map(|&i| &self.params[i].1));
        let g = ptrs(&mut grads.iter());
        let m = ptrs(&mut picked.iter().map(|&i| &self.exp_avg[i]));
        let v = ptrs(&mut picked.iter().map(|&i| &self.exp_avg_sq[i]));
        let (b1, b2) = self.betas;
        let mut err = std::ptr::null_mut();
        let rc = unsafe {
            pstl_fused_adam(
                p.as_ptr(),
                g.as_ptr(),
                m.as_ptr(),
                v.as_ptr(),
                step.as_ptr() as *mut C_tensor,
                p.len() as i64,
                lr,
                b1,
                b2,
                self.weight_decay,
                self.eps,
                &mut err,
            )
        };
        if rc != 0 {
            // Only a programming error reaches this (mixed devices or dtypes).
            let msg = crate::dist::take_error(err);
            panic!("fused Adam kernel failed: {msg}");
        }
    }

    /// Moments as named tensors (`optimizer.exp_avg.<var>`, `optimizer.exp_avg_sq.<var>`)
    /// and the step count (`optimizer.step`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("optimizer.step".to_string(), Tensor::from(self.step))];
        for ((name, _), (m, v)) in self
            .params
            .iter()
            .zip(self.exp_avg.iter().zip(&self.exp_avg_sq))
        {
            out.push((format!("optimizer.exp_avg.{name}"), m.shallow_clone()));
            out.push((format!("optimizer.exp_avg_sq.{name}"), v.shallow_clone()));
        }
        out
    }

    /// Restore the state written by [`Adam::state`].
    pub fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        let _guard = tch::no_grad_guard();
        let Some(step) = state.get("optimizer.step") else {
            bail!("checkpoint has no optimizer state")
        };
        self.step = step.int64_value(&[]);
        for ((name, p), (m, v)) in self
            .params
            .iter()
            .zip(self.exp_avg.iter_mut().zip(self.exp_avg_sq.iter_mut()))
        {
            for (key, dst) in [
                (format!("optimizer.exp_avg.{name}"), m),
                (format!("optimizer.exp_avg_sq.{name}"), v),
            ] {
                let src = state
                    .get(&key)
                    .ok_or_else(|| anyhow::anyhow!("checkpoint lacks `{key}`"))?;
                if src.size() != p.size() {
                    bail!(
                        "checkpoint `{key}` has shape {:?}, expected {:?}",
                        src.size(),
                        p.size()
                    );
                }
                dst.copy_(&src.to_device(p.device()));
            }
        }
        Ok(())
    }
}

/// The authors' schedule at (possibly fractional) epoch `e`: linear warm-up
/// `lr * e / warmup` for `e < warmup`, then half-cosine to 0 at `epochs`.
pub fn warmup_cosine(lr: f64, e: f64, warmup: usize, epochs: usize) -> f64 {
    let w = warmup as f64;
    if e < w {
        lr * e / w
    } else {
        let span = (epochs as f64 - w).max(1.0);
        lr * (1.0 + (std::f64::consts::PI * (e - w) / span).cos()) / 2.0
    }
}

/// Cosine annealing from `lr` to 0 over `epochs` (downstream protocols).
pub fn cosine(lr: f64, e: f64, epochs: usize) -> f64 {
    lr * (1.0 + (std::f64::consts::PI * e / epochs.max(1) as f64).cos()) / 2.0
}
