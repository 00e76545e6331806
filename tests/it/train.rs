//! Pretraining end to end on CPU: the loss falls, checkpoints are written, resume
//! continues to the same weights as an uninterrupted run, bad input stops cleanly.

use crate::common::{max_abs, pstl_bin, tiny_config, tiny_overrides, tiny_store};
use pstl::train::{pretrain, read_metrics, PretrainOptions, Trainer};
use std::path::Path;
use std::process::Command;
use tch::Device;

fn encoder_weights(path: &std::path::Path) -> std::collections::BTreeMap<String, tch::Tensor> {
    pstl::checkpoint::read_safetensors(path).unwrap().0
}

/// Run `pstl pretrain` with the tiny config as its own process (libtorch's random
/// generator is per process, so parallel tests cannot disturb the run).
fn pretrain_process(store: &Path, dir: &Path, name: &str, extra: &[&str]) -> String {
    let mut cmd = Command::new(pstl_bin());
    cmd.args(["pretrain", "--device", "cpu", "--threads", "1"]);
    for ov in tiny_overrides(store, dir, name) {
        cmd.args(["--set", &ov]);
    }
    let out = cmd.args(extra).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pretrain failed:\n{text}");
    text
}

#[test]
fn pretrain_learns_checkpoints_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_store(dir.path(), 4, 16, 4);

    // Uninterrupted: 3 epochs.
    pretrain_process(&store, dir.path(), "straight", &[]);
    let straight = dir.path().join("straight");
    let rows = read_metrics(&straight.join("metrics.csv")).unwrap();
    assert!(rows.len() >= 3, "one row per interval: {}", rows.len());
    let first = rows.first().unwrap().loss;
    let last = rows.last().unwrap().loss;
    assert!(
        last.is_finite() && last < first,
        "loss did not fall: {first} -> {last}"
    );
    for f in [
        "checkpoint.safetensors",
        "encoder.safetensors",
        "metrics.csv",
        "loss.png",
        "config.toml",
        "command.txt",
    ] {
        assert!(straight.join(f).exists(), "{f} missing");
    }

    // Interrupted after 2 epochs, then resumed by running the same command again.
    let run2 = dir.path().join("resumed");
    let out = pretrain_process(&store, dir.path(), "resumed", &["--stop-after", "2"]);
    assert!(out.contains("continue with --resume"), "{out}");
    let (_, meta) =
        pstl::checkpoint::read_safetensors(&run2.join("checkpoint.safetensors")).unwrap();
    assert_eq!(meta["epoch"], "2");
    let cfg2 = tiny_config(&store, dir.path(), "resumed");
    let mut t = Trainer::new(&cfg2, Device::Cpu);
    t.resume(&run2.join("checkpoint.safetensors")).unwrap();
    assert_eq!(t.epoch, 2);
    assert!(t.adam.step > 0);
    let out = pretrain_process(&store, dir.path(), "resumed", &[]);
    assert!(out.contains("resumed from"), "{out}");
    assert!(out.contains("1 epoch(s)"), "{out}");

    let a = encoder_weights(&straight.join("encoder.safetensors"));
    let b = encoder_weights(&run2.join("encoder.safetensors"));
    assert_eq!(a.len(), b.len());
    for (k, v) in &a {
        if v.kind() == tch::Kind::Float {
            let d = max_abs(v, &b[k]);
            assert!(d < 1e-5, "{k} differs after resume by {d}");
        }
    }
    // Metrics continued rather than restarted.
    let rows2 = read_metrics(&run2.join("metrics.csv")).unwrap();
    assert_eq!(rows2.len(), rows.len());
}

#[test]
fn missing_store_and_non_finite_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(&dir.path().join("absent.h5"), dir.path(), "absent");
    let e = pretrain(
        &cfg,
        Device::Cpu,
        &dir.path().join("absent"),
        &PretrainOptions::default(),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("absent.h5"), "{e:#}");

    // A store whose samples are NaN: the run must stop with a clear message and write
    // no checkpoint.
    let meta = pstl::data::store::StoreMeta::new("nan", "test", 2, 50, "test");
    let n = 8;
    let split = |v: f32| pstl::data::store::SplitData {
        x: vec![v; n * meta.sample_len()],
        y: (0..n as i64).map(|i| i % 2).collect(),
        names: (0..n).map(|i| format!("s{i}")).collect(),
    };
    let path = dir.path().join("nan.h5");
    pstl::data::store::write_store(&path, &meta, &split(f32::NAN), &split(0.0)).unwrap();
    let cfg = tiny_config(&path, dir.path(), "nan");
    let e = pretrain(
        &cfg,
        Device::Cpu,
        &dir.path().join("nan"),
        &PretrainOptions::default(),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("non-finite loss"), "{e:#}");
    assert!(!dir.path().join("nan/checkpoint.safetensors").exists());
}

#[test]
fn lr_schedule_is_the_authors() {
    let c = pstl::config::Config::load(None, &[]).unwrap();
    let t = Trainer::new(
        &pstl::config::Config::load(None, &["model.projector_dim=8".into()]).unwrap(),
        Device::Cpu,
    );
    assert_eq!(t.lr_at(0, 0.5), 0.0, "epoch 0 runs at lr 0");
    assert!((t.lr_at(5, 0.0) - c.pretrain.lr * 0.5).abs() < 1e-12);
    assert!((t.lr_at(10, 0.0) - c.pretrain.lr).abs() < 1e-12);
    assert!(t.lr_at(149, 0.0) < 1e-5 && t.lr_at(149, 0.0) > 0.0);
}
