//! The ST-GCN encoder at 1/4 width used by PSTL (paper §3.1 and the authors'
//! `net/st_gcn.py`), with in-encoder joint removal for central spatial masking (CSM,
//! §3.3) and the practical missing-joint evaluation.
//!
//! VarStore paths equal the PyTorch state_dict keys of the official model (`A`,
//! `data_bn.*`, `edge_importance.{i}`, `st_gcn_networks.{i}.gcn.conv.*`,
//! `st_gcn_networks.{i}.tcn.{0,2,3}.*`, `st_gcn_networks.{i}.residual.{0,1}.*`).

use super::dropout::dropout;
use super::graph::{Graph, Layout};
use super::init;
use super::precision;
use crate::dist::sync_bn::batch_norm;
use tch::{nn, Kind, Tensor};

/// Encoder hyperparameters (`[model]` of the config).
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    /// Input channels (xyz = 3).
    pub in_channels: i64,
    /// Width of the first blocks; the official 1/4-width model uses 16.
    pub base_channels: i64,
    /// Output feature dimension (256 in the paper).
    pub feature_dim: i64,
    /// Dropout of blocks 1-9 (block 0 has none), 0.5 officially.
    pub dropout: f64,
    /// Temporal kernel size (9).
    pub temporal_kernel: i64,
    /// Trainable edge-importance masks (ST-GCN's `edge_importance_weighting`).
    pub edge_importance: bool,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            in_channels: 3,
            base_channels: 16,
            feature_dim: 256,
            dropout: 0.5,
            temporal_kernel: 9,
            edge_importance: true,
        }
    }
}

impl EncoderConfig {
    /// `(in, out, stride, residual)` of the ten blocks.
    pub fn blocks(&self) -> Vec<(i64, i64, i64, bool)> {
        let c = self.base_channels;
        vec![
            (self.in_channels, c, 1, false),
            (c, c, 1, true),
            (c, c, 1, true),
            (c, c, 1, true),
            (c, 2 * c, 2, true),
            (2 * c, 2 * c, 1, true),
            (2 * c, 2 * c, 1, true),
            (2 * c, 4 * c, 2, true),
            (4 * c, 4 * c, 1, true),
            (4 * c, self.feature_dim, 1, true),
        ]
    }
}

/// Residual branch of a block.
#[derive(Debug)]
enum Residual {
    None,
    Identity,
    Conv {
        conv: nn::Conv2D,
        bn: Box<nn::BatchNorm>,
    },
}

/// One spatial-temporal graph convolution block (`st_gcn_networks.{i}`).
#[derive(Debug)]
pub struct StGcnBlock {
    gcn: nn::Conv2D,
    bn1: nn::BatchNorm,
    tcn: nn::Conv2D,
    bn2: nn::BatchNorm,
    dropout: f64,
    residual: Residual,
    out_channels: i64,
    stride: i64,
    pad: i64,
    compute: Kind,
}

impl StGcnBlock {
    /// Build block `p` = `st_gcn_networks.{i}`.
    pub fn new(
        p: nn::Path,
        (cin, cout, stride, residual): (i64, i64, i64, bool),
        kernel: i64,
        dropout: f64,
    ) -> Self {
        let k = Graph::K as i64;
        let gcn = init::conv2d(
            &(&p / "gcn" / "conv"),
            cin,
            k * cout,
            [1, 1],
            [1, 1],
            [0, 0],
            true,
        );
        let tcn_p = &p / "tcn";
        let bn1 = init::batch_norm2d(&(&tcn_p / "0"), cout);
        let tcn = init::conv2d(
            &(&tcn_p / "2"),
            cout,
            cout,
            [kernel, 1],
            [stride, 1],
            [(kernel - 1) / 2, 0],
            true,
        );
        let bn2 = init::batch_norm2d(&(&tcn_p / "3"), cout);
        let residual = if !residual {
            Residual::None
        } else if cin == cout && stride == 1 {
            Residual::Identity
        } else {
            let rp = &p / "residual";
            Residual::Conv {
                conv: init::conv2d(&(&rp / "0"), cin, cout, [1, 1], [stride, 1], [0, 0], true),
                bn: Box::new(init::batch_norm2d(&(&rp / "1"), cout)),
            }
        };
        StGcnBlock {
            gcn,
            bn1,
            tcn,
            bn2,
            dropout,
            residual,
            out_channels: cout,
            stride,
            pad: (kernel - 1) / 2,
            compute: Kind::Float,
        }
    }

    /// The graph convolution `sum_k A_k`-aggregated 1x1 convolution: `(N, C_in, T, V)`
    /// -> `(N, C_out, T, V)`. Both orders are the same linear map; a widening block
    /// (`C_in < C_out`) aggregates its `C_in` input channels with `A` first and then
    /// applies the 1x1 convolution with the weight regrouped to `(C_out, K * C_in)`
    /// (the bias becomes `b_kc * sum_v A_kvw`), which never forms the
    /// `(N, K * C_out, T, V)` tensor; the others run the official order.
    fn graph_conv(&self, x: &Tensor, a: &Tensor) -> Tensor {
        // -1 for the batch: a traced module keeps its batch size free.
        let (_n, cin, t, v) = x.size4().expect("block input must be 4-d");
        let k = a.size()[0];
        let cout = self.out_channels;
        let kind = self.compute;
        let a = a.to_kind(kind); // no copy: the encoder passes `a` in `kind` already
        if cin >= cout {
            let y = precision::conv2d(x, &self.gcn, [1, 1], [0, 0], kind).view([-1, k, cout, t, v]);
            return Tensor::einsum("nkctv,kvw->nctw", &[y, a], None::<i64>);
        }
        let xa = Tensor::einsum(
            "nitv,kvw->nkitw",
            &[x.to_kind(kind), a.shallow_clone()],
            None::<i64>,
        )
        .reshape([-1, k * cin, t, v]);
        let w = self
            .gcn
            .ws
            .view([k, cout, cin])
            .permute([1, 0, 2])
            .reshape([cout, k * cin, 1, 1])
            .to_kind(kind);
        let y = xa.conv2d(&w, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
        match &self.gcn.bs {
            Some(b) => {
                let b = Tensor::einsum(
                    "kc,kw->cw",
                    &[
                        b.view([k, cout]).to_kind(kind),
                        a.sum_dim_intlist(1, false, kind),
                    ],
                    None::<i64>,
                );
                y + b.view([1, cout, 1, v])
            }
            None => y,
        }
    }

    /// `x`: `(N, C, T, V)`; `a`: `(K, V, V)` already multiplied by edge importance.
    /// The ReLUs run in place on tensors that no backward formula needs (a batch
    /// norm's or an addition's output), which saves an allocation each.
    pub fn forward(&self, x: &Tensor, a: &Tensor, train: bool) -> Tensor {
        let res = match &self.residual {
            Residual::None => None,
            Residual::Identity => Some(x.shallow_clone()),
            Residual::Conv { conv, bn } => Some(batch_norm(
                &precision::conv2d(x, conv, [self.stride, 1], [0, 0], self.compute),
                bn.as_ref(),
                train,
            )),
        };
        let y = self.graph_conv(x, a);
        let y = precision::conv2d(
            &batch_norm(&y, &self.bn1, train).relu_(),
            &self.tcn,
            [self.stride, 1],
            [self.pad, 0],
            self.compute,
        );
        let y = dropout(&batch_norm(&y, &self.bn2, train), self.dropout, train);
        match res {
            Some(r) => (y + r).relu_(),
            None => y.relu(),
        }
    }
}

/// The ST-GCN encoder: `(N, C, T, V, M)` -> `(N, feature_dim)`.
#[derive(Debug)]
pub struct StGcn {
    /// The fixed adjacency stack (buffer `A`).
    pub a: Tensor,
    data_bn: nn::BatchNorm,
    edge_importance: Vec<Tensor>,
    blocks: Vec<StGcnBlock>,
    num_joints: i64,
    in_channels: i64,
}

impl StGcn {
    /// Compute the blocks in `kind` (fp32 weights cast on the fly; see
    /// [`precision`]). The input BatchNorm and the output pooling stay fp32.
    pub fn set_compute(&mut self, kind: Kind) {
        for b in &mut self.blocks {
            b.compute = kind;
        }
    }
}

impl StGcn {
    /// Build the encoder under `p` (use the VarStore root, or `root / "encoder"`).
    pub fn new(p: nn::Path, layout: &Layout, cfg: &EncoderConfig) -> Self {
        let graph = Graph::spatial(layout);
        let v = layout.num_joints as i64;
        let k = Graph::K as i64;
        let a = p.zeros_no_train("A", &[k, v, v]);
        tch::no_grad(|| {
            let src = Tensor::from_slice(&graph.a)
                .view([k, v, v])
                .to_device(a.device());
            a.shallow_clone().copy_(&src);
        });
        let data_bn = init::batch_norm1d(&(&p / "data_bn"), cfg.in_channels * v);
        let blocks_p = &p / "st_gcn_networks";
        let blocks: Vec<StGcnBlock> = cfg
            .blocks()
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                let drop = if i == 0 { 0.0 } else { cfg.dropout };
                StGcnBlock::new(&blocks_p / i, spec, cfg.temporal_kernel, drop)
            })
            .collect();
        let ei_p = &p / "edge_importance";
        let edge_importance = (0..blocks.len())
            .map(|i| {
                if cfg.edge_importance {
                    ei_p.var(&i.to_string(), &[k, v, v], nn::Init::Const(1.0))
                } else {
                    Tensor::ones([k, v, v], (Kind::Float, p.device()))
                }
            })
            .collect();
        StGcn {
            a,
            data_bn,
            edge_importance,
            blocks,
            num_joints: v,
            in_channels: cfg.in_channels,
        }
    }

    /// Encode `x` `(N, C, T, V, M)`, removing the joints in `drop` (duplicates allowed)
    /// from the input after `data_bn` and from every adjacency, as CSM does.
    pub fn forward_drop(&self, x: &Tensor, drop: &[usize], train: bool) -> Tensor {
        self.forward_drop_probed(x, drop, train, &mut |_| {})
    }

    /// [`Self::forward_drop`], calling `probe(0)` before the first block and
    /// `probe(i + 1)` after block `i` (`pstl bench --phases` times the blocks).
    pub fn forward_drop_probed(
        &self,
        x: &Tensor,
        drop: &[usize],
        train: bool,
        probe: &mut dyn FnMut(usize),
    ) -> Tensor {
        let (_n, c, t, v, m) = x.size5().expect("encoder input must be (N, C, T, V, M)");
        assert_eq!(
            v, self.num_joints,
            "encoder built for {} joints, got {v}",
            self.num_joints
        );
        assert_eq!(
            c, self.in_channels,
            "encoder built for {} channels, got {c}",
            self.in_channels
        );
        let x = x.permute([0, 4, 3, 1, 2]).contiguous().view([-1, v * c, t]);
        let x = batch_norm(&x, &self.data_bn, train);
        let mut x = x
            .view([-1, m, v, c, t])
            .permute([0, 1, 3, 4, 2])
            .contiguous()
            .view([-1, c, t, v]);
        let keep = keep_index(v as usize, drop, x.device());
        if let Some(idx) = &keep {
            x = x.index_select(3, idx);
        }
        probe(0);
        for (i, (block, a)) in self
            .blocks
            .iter()
            .zip(self.adjacencies(keep.as_ref()))
            .enumerate()
        {
            x = block.forward(&x, &a, train);
            probe(i + 1);
        }
        // Global average over (T, V), then mean over persons.
        let f = x.mean_dim([2i64, 3].as_slice(), false, Kind::Float);
        f.view([-1, m, f.size()[1]]).mean_dim(1, false, Kind::Float)
    }
}

impl StGcn {
    /// Every block's `A * edge_importance` with the joints outside `keep` removed, in
    /// the blocks' compute kind: one stack, one product, one index pair and one cast
    /// for all blocks (their backward is as short: the gradient of `unbind` is one
    /// stack), where a product per block took ten of each.
    fn adjacencies(&self, keep: Option<&Tensor>) -> Vec<Tensor> {
        let a = Tensor::stack(&self.edge_importance, 0) * self.a.unsqueeze(0);
        let a = match keep {
            Some(idx) => a.index_select(2, idx).index_select(3, idx),
            None => a,
        };
        let kind = self.blocks.first().map_or(Kind::Float, |b| b.compute);
        a.to_kind(kind).unbind(0)
    }
}

impl nn::ModuleT for StGcn {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_drop(x, &[], train)
    }
}

/// Index tensor of the joints kept when `drop` is removed, or `None` when nothing is.
pub fn keep_index(v: usize, drop: &[usize], device: tch::Device) -> Option<Tensor> {
    if drop.is_empty() {
        return None;
    }
    let keep: Vec<i64> = (0..v)
        .filter(|j| !drop.contains(j))
        .map(|j| j as i64)
        .collect();
    Some(Tensor::from_slice(&keep).to_device(device))
}
