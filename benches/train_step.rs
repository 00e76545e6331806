//! Pretraining step cost: one full PSTL step (three views, encoder, projector, two
//! Barlow Twins losses, Adam) on random batches, and the Barlow Twins loss in its Gram
//! form against the direct `D x D` form.
//!
//! Run: `cargo bench --bench train_step` (CPU; set `PSTL_BENCH_DEVICE=cuda` for a GPU).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pstl::config::Config;
use pstl::model::{bt_loss, bt_loss_direct};
use pstl::train::Trainer;
use std::time::Duration;
use tch::{Device, Kind, Tensor};

fn device() -> Device {
    match std::env::var("PSTL_BENCH_DEVICE").as_deref() {
        Ok("cuda") => Device::Cuda(0),
        _ => Device::Cpu,
    }
}

fn train_step(c: &mut Criterion) {
    let device = device();
    let batch = 16;
    let cfg = Config::load(
        None,
        &[
            "model.projector_dim=512".into(),
            format!("pretrain.batch_size={batch}"),
        ],
    )
    .unwrap();
    let mut trainer = Trainer::new(&cfg, device);
    let x = Tensor::randn([batch, 3, 50, 25, 2], (Kind::Float, device));
    let mut g = c.benchmark_group("pstl_step");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(batch as u64));
    g.bench_function("batch16_d512", |b| {
        b.iter(|| trainer.train_step(&x, 1e-3).total.double_value(&[]))
    });
    g.finish();
}

fn bt_forms(c: &mut Criterion) {
    let device = device();
    let mut g = c.benchmark_group("bt_loss");
    g.sample_size(10);
    for d in [2048i64, 6144] {
        let a = Tensor::randn([128, d], (Kind::Float, device));
        let b = Tensor::randn([128, d], (Kind::Float, device));
        g.bench_function(format!("gram_n128_d{d}"), |bn| {
            bn.iter(|| bt_loss(&a, &b, 2e-4).total.double_value(&[]))
        });
        g.bench_function(format!("direct_n128_d{d}"), |bn| {
            bn.iter(|| bt_loss_direct(&a, &b, 2e-4).total.double_value(&[]))
        });
    }
    g.finish();
}

criterion_group!(benches, train_step, bt_forms);
criterion_main!(benches);
