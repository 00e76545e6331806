//! Counts the aten operators of one pretraining step by phase (views, forward, backward,
//! optimizer): the cheap CPU proxy for a GPU step's kernel launches
//! (`pstl::model::backend::count_ops`; docs/performance.md). The counts do not depend
//! on the batch or projector size, so a small step is counted by default.
//!
//! ```sh
//! cargo run --release --locked --example op_count -- configs/ntu60_xsub_joint.toml \
//!     [--set k=v ...] [--top N]
//! ```

use anyhow::{bail, Context, Result};
use pstl::bench::random_batch;
use pstl::config::Config;
use pstl::method::{pstl_views, views_losses};
use pstl::model::backend::{count_ops, OpCount};
use pstl::train::Trainer;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tch::Device;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut config = None;
    let mut sets = vec![
        "pretrain.batch_size=8".to_string(),
        "model.projector_dim=512".to_string(),
    ];
    let mut top = 12usize;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--set" => sets.push(args.next().context("--set needs k=v")?),
            "--top" => top = args.next().context("--top needs N")?.parse()?,
            _ if config.is_none() => config = Some(PathBuf::from(a)),
            _ => bail!("unexpected argument {a:?}"),
        }
    }
    let cfg = Config::load(config.as_deref(), &sets)?;
    tch::set_num_threads(1);
    let device = Device::Cpu;
    let x = random_batch(&cfg, device);
    let mut trainer = Trainer::new(&cfg, device);
    let mut phases: Vec<(&str, Vec<OpCount>)> = Vec::new();
    for step in 0..2 {
        let mut rng = trainer.step_rng();
        let (views, c_views) = count_ops(|| pstl_views(&x, &cfg, &trainer.layout, &mut rng));
        let (losses, c_fwd) = count_ops(|| views_losses(&trainer.model, &views, &cfg, true));
        let ((), c_bwd) = count_ops(|| trainer.backward(&losses));
        let ((), c_opt) = count_ops(|| trainer.optimizer_step(1e-3));
        // The second step: the first may take one-time paths (lazy state, caches).
        if step == 1 {
            phases = vec![
                ("views", c_views),
                ("forward", c_fwd),
                ("backward", c_bwd),
                ("optimizer", c_opt),
            ];
        }
    }
    let mut all: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut total = 0;
    for (phase, counts) in &phases {
        let k: i64 = counts.iter().map(|c| c.kernels).sum();
        let calls: i64 = counts.iter().map(|c| c.calls).sum();
        println!("PHASE {phase} kernels={k} calls={calls}");
        let mut rows: Vec<&OpCount> = counts.iter().filter(|c| c.kernels > 0).collect();
        rows.sort_by_key(|c| -c.kernels);
        for c in rows.iter().take(top) {
            println!("    {:<40} {:>6}", c.name, c.kernels);
        }
        total += k;
        for c in counts {
            let e = all.entry(c.name.clone()).or_default();
            e.0 += c.kernels;
            e.1 += c.calls;
        }
    }
    println!("RESULT kernels_per_step={total}");
    let mut rows: Vec<_> = all.into_iter().filter(|(_, (k, _))| *k > 0).collect();
    rows.sort_by_key(|(_, (k, _))| -k);
    println!("{:<44} {:>8} {:>8}", "operator", "kernels", "calls");
    for (name, (k, c)) in rows.iter().take(2 * top) {
        println!("{name:<44} {k:>8} {c:>8}");
    }
    Ok(())
}
