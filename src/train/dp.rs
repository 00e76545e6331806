//! One data-parallel step (DDP's way): buffers from rank 0 unless the norms are
//! synchronised, the losses of [`pstl_losses_dp`], then backward with the gradients
//! averaged by libtorch's `c10d::Reducer` while backward runs (`pretrain.grad_sync =
//! "reducer"`), or all-reduced in buckets after it (`"buckets"`). [`DpStats`] keeps what
//! the run logs once at its end: bytes moved per step and the all-reduce time that was
//! not hidden behind backward.

use super::Trainer;
use crate::config::GradSync;
use crate::dist::{ProcessGroup, Reducer, Shard};
use crate::method::{pstl_losses_dp, StepLosses};
use crate::rng::{step_seed, PstlRng};
use anyhow::{Context, Result};
use rand::SeedableRng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tch::Tensor;

/// Communication figures of this process's data-parallel steps.
#[derive(Debug, Default, Clone)]
pub struct DpStats {
    /// Steps taken.
    pub steps: u64,
    /// Gradient bytes all-reduced per step.
    pub grad_bytes: i64,
    /// Gradient buckets (after the Reducer's rebuild).
    pub buckets: usize,
    /// Backward's compute (start to last gradient ready), summed.
    pub backward: Duration,
    /// Gradient all-reduce time after backward's compute, summed.
    pub exposed: Duration,
}

impl Trainer {
    /// One data-parallel step on this rank's rows `x` of the global batch `shard`.
    /// Without a process group, the single-process [`Trainer::train_step`].
    pub fn train_step_dp(&mut self, x: &Tensor, shard: Shard, lr: f64) -> Result<StepLosses> {
        let Some(pg) = self.pg.clone() else {
            return Ok(self.train_step(x, lr));
        };
        let seed = step_seed(self.cfg.run.seed, self.step);
        // Dropout masks differ per rank as in DDP; the host draws of the views do not.
        tch::manual_seed(seed.wrapping_add(pg.rank as u64) as i64);
        let mut rng = PstlRng::seed_from_u64(seed);
        let sync = self.cfg.pretrain.sync_bn;
        if !sync {
            pg.broadcast_all(&self.named(false))?;
        }
        if self.cfg.pretrain.grad_sync == GradSync::Reducer && self.reducer.is_none() {
            self.reducer = Some(Reducer::new(Arc::clone(&pg), &self.named_pairs(true))?);
        }
        if let Some(r) = &self.reducer {
            r.prepare_forward()?;
        }
        let guard = sync.then(|| crate::dist::sync_bn::SyncGuard::new(Some(Arc::clone(&pg))));
        let losses = pstl_losses_dp(
            &self.model,
            x,
            shard,
            &pg,
            &self.cfg,
            &self.layout,
            &mut rng,
        );
        if let Some(g) = guard {
            g.finish()?;
        }
        let losses = losses?;
        self.adam.zero_grad();
        let total = match &self.scaler {
            None => losses.total.shallow_clone(),
            Some(scaler) => &losses.total * scaler.scale,
        };
        self.backward_averaged(&pg, &total)?;
        // Identical gradients on every rank now, so fp16's skip decision agrees.
        self.optimizer_step(lr);
        Ok(losses)
    }

    /// Backward of `total` with the gradients averaged over ranks.
    fn backward_averaged(&mut self, pg: &ProcessGroup, total: &Tensor) -> Result<()> {
        let t0 = Instant::now();
        match &self.reducer {
            Some(r) => {
                let t = r.backward(|| total.f_backward())?;
                self.dp.backward += t.compute;
                self.dp.exposed += t.exposed();
                self.dp.grad_bytes = r.bytes_per_step();
                if self.dp.steps == 1 {
                    self.dp.buckets = r.buckets();
                }
            }
            None => {
                total
                    .f_backward()
                    .with_context(|| format!("rank {}/{}: backward", pg.rank, pg.world))?;
                self.dp.backward += t0.elapsed();
                let t1 = Instant::now();
                let grads = self.named(true);
                pg.average_gradients(&grads)?;
                self.dp.exposed += t1.elapsed();
                self.dp.grad_bytes = grads
                    .iter()
                    .map(|t| t.numel() as i64 * t.kind().elt_size_in_bytes() as i64)
                    .sum();
                self.dp.buckets = crate::dist::bucket_count(&grads);
            }
        }
        self.dp.steps += 1;
        Ok(())
    }
}

/// Rank `r`'s one line at the end of a data-parallel run: bytes per step and the
/// gradient all-reduce time not hidden behind backward.
pub(super) fn log_dp(pg: &ProcessGroup, stats: &DpStats, sync: GradSync) {
    let steps = stats.steps.max(1) as f64;
    let (reduced, gathered) = pg.bytes();
    let mb = |b: f64| b / steps / 1e6;
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / steps;
    let how = match sync {
        GradSync::Reducer => "during backward (c10d::Reducer)",
        GradSync::Buckets => "after backward (buckets)",
    };
    tracing::info!(
        grad_mb_per_step = stats.grad_bytes as f64 / 1e6,
        other_allreduce_mb_per_step = mb(reduced as f64),
        allgather_mb_per_step = mb(gathered as f64),
        exposed_ms_per_step = ms(stats.exposed),
        backward_ms_per_step = ms(stats.backward),
        "rank {}/{}: per step, gradients {:.2} MB all-reduced {how} in {} bucket(s), \
         {:.2} MB more all-reduced (norm statistics and the gathers' backward), {:.2} MB \
         all-gathered; all-reduce not hidden behind backward {:.1} ms (backward compute \
         {:.1} ms), over {} steps",
        pg.rank,
        pg.world,
        stats.grad_bytes as f64 / 1e6,
        stats.buckets,
        mb(reduced as f64),
        mb(gathered as f64),
        ms(stats.exposed),
        ms(stats.backward),
        stats.steps,
    );
}
