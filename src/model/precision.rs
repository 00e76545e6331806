//! Mixed precision (`pretrain.precision`): convolutions, graph aggregation and linear
//! layers run in bf16 or fp16 while the weights stay fp32 (the master copy Adam
//! updates); each layer casts its weights on the fly, so gradients flow back to the
//! fp32 variables. BatchNorm keeps fp32 parameters and statistics, and the Barlow
//! Twins normaliser and loss always run in fp32. fp16 needs a loss scaler
//! ([`LossScaler`]) and CUDA.

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

/// Compute precision of the pretraining forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in fp32 (the authors' setting).
    #[default]
    Fp32,
    /// bf16 compute, fp32 master weights, statistics and loss.
    Bf16,
    /// fp16 compute with a dynamic loss scaler (CUDA only).
    Fp16,
}

impl Precision {
    /// The kind activations are computed in.
    pub fn kind(self) -> Kind {
        match self {
            Precision::Fp32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
            Precision::Fp16 => Kind::Half,
        }
    }

    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        }
    }
}

/// `x.apply(conv)` computed in `kind` (weights cast on the fly); `stride` and
/// `padding` must be the ones `c` was built with (tch keeps them private).
pub fn conv2d(
    x: &Tensor,
    c: &nn::Conv2D,
    stride: [i64; 2],
    padding: [i64; 2],
    kind: Kind,
) -> Tensor {
    if kind == Kind::Float {
        return x.apply(c);
    }
    let (w, b) = (c.ws.to_kind(kind), c.bs.as_ref().map(|b| b.to_kind(kind)));
    if kind == Kind::BFloat16 && fp32_kernel_is_faster(x, &c.ws) {
        let up = |t: &Tensor| t.to_kind(Kind::Float);
        return up(&x.to_kind(kind))
            .conv2d(&up(&w), b.as_ref().map(up), stride, padding, [1, 1], 1)
            .to_kind(kind);
    }
    x.to_kind(kind).conv2d(&w, b, stride, padding, [1, 1], 1)
}

/// Whether a bf16 convolution of `x` with weight `w` runs faster as libtorch's fp32
/// convolution on the same bf16-valued operands: products of two bf16 numbers are
/// exact in fp32 and oneDNN's bf16 kernels accumulate in fp32 as well, so both compute
/// the same convolution up to the order of summation, and the output is rounded to
/// bf16 either way. On CPUs without AMX, AVX512-BF16's dot product has the throughput
/// of fp32 FMA, and for the 256-channel temporal convolution of the last block oneDNN's
/// fp32 kernel is faster (forward + backward for 256 sequences, 2 threads: 2.11 s bf16
/// against 1.72 s); for every smaller convolution of the encoder the bf16 kernel is
/// faster, so only temporal kernels with at least 128 input channels switch.
pub fn fp32_kernel_is_faster(x: &Tensor, w: &Tensor) -> bool {
    let shape = w.size();
    x.device() == tch::Device::Cpu && !cpu_has_amx() && shape[1] >= 128 && shape[2] > 1
}

/// AMX-BF16 (CPUID leaf 7, EDX bit 22), whose tile multiply makes bf16 convolutions
/// several times faster than fp32 ones. Read once (CPUID traps in a virtual machine).
fn cpu_has_amx() -> bool {
    static AMX: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AMX.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            (std::arch::x86_64::__cpuid_count(7, 0).edx >> 22) & 1 == 1
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// `x.apply(linear)` computed in `kind` (weights cast on the fly).
pub fn linear(x: &Tensor, l: &nn::Linear, kind: Kind) -> Tensor {
    if kind == Kind::Float {
        return x.apply(l);
    }
    x.to_kind(kind)
        .linear(&l.ws.to_kind(kind), l.bs.as_ref().map(|b| b.to_kind(kind)))
}

/// Dynamic loss scaling for fp16 (as `torch.cuda.amp.GradScaler`): the loss is
/// multiplied by `scale` before backward, gradients are divided by it; a step with a
/// non-finite gradient is skipped and halves the scale, and `growth_interval` finite
/// steps in a row double it.
#[derive(Debug, Clone)]
pub struct LossScaler {
    /// Current scale.
    pub scale: f64,
    /// Finite steps since the last change.
    pub good_steps: u64,
    /// Steps between growths (2000).
    pub growth_interval: u64,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler {
            scale: 65536.0,
            good_steps: 0,
            growth_interval: 2000,
        }
    }
}

impl LossScaler {
    /// Divide the gradients of `params` by the scale and report whether all are
    /// finite (one host read per step); updates the scale. Returns `true` when the
    /// optimiser step should be taken.
    pub fn unscale(&mut self, params: &[Tensor]) -> bool {
        let _guard = tch::no_grad_guard();
        let grads: Vec<Tensor> = params
            .iter()
            .map(|p| p.grad())
            .filter(|g| g.defined())
            .collect();
        let finite = if grads.is_empty() {
            true
        } else {
            let bad: Vec<Tensor> = grads
                .iter()
                .map(|g| g.isfinite().logical_not().any())
                .collect();
            Tensor::stack(&bad, 0).any().int64_value(&[]) == 0
        };
        if finite {
            for g in &grads {
                let _ = g.shallow_clone().g_mul_scalar_(1.0 / self.scale);
            }
            self.good_steps += 1;
            if self.good_steps >= self.growth_interval {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        } else {
            self.scale *= 0.5;
            self.good_steps = 0;
        }
        finite
    }
}
