//! The three input streams of skeleton SSL (paper §4, 3-stream ensemble): joint
//! (raw coordinates), motion (frame differences) and bone (child minus parent).

use crate::model::Layout;
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Which stream a model is trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Raw joint coordinates.
    Joint,
    /// `x[:, :, t+1] - x[:, :, t]`, last frame 0.
    Motion,
    /// `x[child] - x[parent]` over the layout's bones.
    Bone,
}

impl Stream {
    /// Convert a joint batch `(N, C, T, V, M)` into this stream.
    pub fn apply(self, x: &Tensor, layout: &Layout) -> Tensor {
        match self {
            Stream::Joint => x.shallow_clone(),
            Stream::Motion => motion(x),
            Stream::Bone => bone(x, layout),
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Joint => "joint",
            Stream::Motion => "motion",
            Stream::Bone => "bone",
        }
    }
}

/// Frame differences along time with a zero last frame.
pub fn motion(x: &Tensor) -> Tensor {
    let t = x.size()[2];
    let d = x.narrow(2, 1, t - 1) - x.narrow(2, 0, t - 1);
    let last = x.narrow(2, 0, 1).zeros_like();
    Tensor::cat(&[d, last], 2)
}

/// Bone vectors: joint minus its parent (the self-parented root gives 0).
pub fn bone(x: &Tensor, layout: &Layout) -> Tensor {
    let mut parent: Vec<i64> = (0..layout.num_joints as i64).collect();
    for &(c, p) in &layout.bones {
        parent[c] = p as i64;
    }
    let idx = Tensor::from_slice(&parent).to_device(x.device());
    x - x.index_select(3, &idx)
}
