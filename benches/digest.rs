//! Checkpoint digest cost at the official size (NTU-60 config: ST-GCN at 1/4 width,
//! projector 4096, Adam moments): serialising the checkpoint, and hashing its bytes
//! with SHA-256 and with xxh3-64 (what pstl records), best of 20 each.
//!
//! Run: `cargo bench --bench digest`.

use pstl::config::Config;
use pstl::train::Trainer;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Instant;

fn best_ms(mut f: impl FnMut()) -> f64 {
    (0..20)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let cfg = Config::load(Some(Path::new("configs/ntu60_xsub_joint.toml")), &[]).unwrap();
    let trainer = Trainer::new(&cfg, tch::Device::Cpu);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.safetensors");
    trainer.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let mb = bytes.len() as f64 / (1 << 20) as f64;
    let save = best_ms(|| trainer.save(&path).unwrap());
    let load = best_ms(|| {
        pstl::checkpoint::read_safetensors(&path).unwrap();
    });
    let sha = best_ms(|| {
        std::hint::black_box(Sha256::digest(&bytes));
    });
    let xxh = best_ms(|| {
        std::hint::black_box(xxhash_rust::xxh3::xxh3_64(&bytes));
    });
    println!("checkpoint {mb:.2} MiB: save {save:.2} ms, load (verified) {load:.2} ms");
    println!(
        "SHA-256 {sha:.2} ms ({:.0} MiB/s), xxh3-64 {xxh:.3} ms ({:.0} MiB/s)",
        mb / sha * 1e3,
        mb / xxh * 1e3
    );
}
