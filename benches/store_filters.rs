//! HDF5 filters of the store writer: size on disk, write time and shuffled from-disk
//! loader throughput of an NTU-like split (the synthetic set with all 60 classes, so
//! two-person interactions and zero-filled second persons mix as in NTU-60) with no
//! filter and with shuffle + deflate at levels 1, 4, 6 and 9.
//!
//! Run: `cargo bench --bench store_filters` (prints a table; nothing is asserted).

use pstl::config::Config;
use pstl::data::store::{SplitData, StoreMeta, StoreWriter};
use pstl::data::synth::{generate, SynthOpts};
use std::time::Instant;

fn main() {
    let opts = SynthOpts {
        classes: 60,
        train_per_class: 40,
        test_per_class: 10,
        seed: 1,
        frames: 50,
    };
    let (train, test) = generate(&opts);
    let meta = StoreMeta::new("synthetic", "default", 60, 50, "pstl synth");
    let split = |s: pstl::data::synth::SynthSplit| SplitData {
        x: s.x,
        y: s.y,
        names: s.names,
    };
    let (train, test) = (split(train), split(test));
    let n = train.y.len() + test.y.len();
    let dir = tempfile::tempdir().expect("temp dir");
    println!(
        "{n} samples (train {}, test {})",
        train.y.len(),
        test.y.len()
    );
    println!("| filters | size (MiB) | bytes/sample | write (s) | from-disk loader (samples/s, 2 runs) |");
    println!("|---|---|---|---|---|");
    for level in [None, Some(1u8), Some(4), Some(6), Some(9)] {
        let name = match level {
            None => "none".to_string(),
            Some(l) => format!("shuffle + deflate {l}"),
        };
        let path = dir
            .path()
            .join(format!("store-{}.h5", level.map_or(-1, i32::from)));
        let t0 = Instant::now();
        let mut w = StoreWriter::create_with(&path, &meta, level).expect("writer");
        w.append("train", &train.x, &train.y, &train.names)
            .expect("train");
        w.append("test", &test.x, &test.y, &test.names)
            .expect("test");
        w.finish().expect("finish");
        let write = t0.elapsed().as_secs_f64();
        let bytes = std::fs::metadata(&path).expect("size").len();
        let cfg = Config::load(
            None,
            &[
                format!("data.path=\"{}\"", path.display()),
                "pretrain.batch_size=128".into(),
            ],
        )
        .expect("config");
        let rates: Vec<String> = (0..2)
            .map(|_| {
                let r = pstl::bench::loader(&cfg, false, 1).expect("loader");
                format!("{:.0}", r.samples as f64 / r.seconds)
            })
            .collect();
        println!(
            "| {name} | {:.1} | {:.0} | {write:.2} | {} |",
            bytes as f64 / 1048576.0,
            bytes as f64 / n as f64,
            rates.join(", ")
        );
    }
}
