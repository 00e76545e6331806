//! `prepare ntu` throughput (files/s) at 1 and 2 rayon threads.
//!
//! Generates `PSTL_BENCH_FILES` (default 2000) synthetic NTU `.skeleton` files of 100
//! frames and one body (about 250 kB each, the real files' layout and size) in a temp
//! directory, then times parse + frame-50 normalisation + HDF5 store writing over all of
//! them. Criterion reports the throughput as elements/s = files/s.
//!
//! Run: `cargo bench --bench prepare`.

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pstl::data::prepare::{prepare_ntu, write_skeleton_text, PrepareNtuOpts};
use pstl::data::{RawSeq, CHANNELS, NTU_JOINTS, PERSONS};

const FRAMES: usize = 100;

/// A smooth single-body sequence, varied by `k`.
fn sequence(k: usize) -> RawSeq {
    let mut data = vec![0.0f32; CHANNELS * FRAMES * NTU_JOINTS * PERSONS];
    for t in 0..FRAMES {
        for v in 0..NTU_JOINTS {
            let phase = (k * 13 + t * 3 + v * 7) as f32 * 0.01;
            let xyz = [
                0.25 * phase.sin() + 0.02 * v as f32,
                0.6 * phase.cos() - 0.3,
                3.2 + 0.1 * (2.0 * phase).sin(),
            ];
            for (c, value) in xyz.into_iter().enumerate() {
                data[((c * FRAMES + t) * NTU_JOINTS + v) * PERSONS] = value;
            }
        }
    }
    RawSeq {
        frames: FRAMES,
        data,
    }
}

/// Writes `files` skeleton files with unique, valid NTU names (setups 1-17, cameras
/// 1-3, performers 1-106, actions 1-60).
fn generate(dir: &Path, files: usize) {
    for k in 0..files {
        let name = format!(
            "S{:03}C{:03}P{:03}R{:03}A{:03}.skeleton",
            k % 17 + 1,
            k / 17 % 3 + 1,
            k / 51 % 106 + 1,
            k / 5406 + 1,
            k % 60 + 1
        );
        let text = write_skeleton_text(&sequence(k), 1);
        std::fs::write(dir.join(name), text).expect("write skeleton");
    }
}

fn bench_prepare(c: &mut Criterion) {
    let files: usize = std::env::var("PSTL_BENCH_FILES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let raw = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    generate(raw.path(), files);
    let bytes: u64 = std::fs::read_dir(raw.path())
        .expect("read_dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    eprintln!(
        "prepare bench: {files} files of {FRAMES} frames, {:.0} kB each on average",
        bytes as f64 / files.max(1) as f64 / 1e3
    );

    let mut group = c.benchmark_group("prepare_ntu");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(files as u64));
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("rayon pool");
        let opts = PrepareNtuOpts {
            raw: raw.path().to_path_buf(),
            out: out.path().join(format!("bench_{threads}.h5")),
            benchmark: "xsub".into(),
            dataset: "ntu60".into(),
            ignore: None,
            frames: 50,
            skip_bad: false,
            progress: false,
        };
        group.bench_with_input(BenchmarkId::new("threads", threads), &opts, |b, opts| {
            b.iter(|| {
                let report = pool.install(|| prepare_ntu(opts)).expect("prepare_ntu");
                assert_eq!(report.parsed, files);
                report
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_prepare);
criterion_main!(benches);
