//! Helpers shared by the tests: fixture paths, the golden file, tiny configs and stores.

#![allow(dead_code)]

use pstl::config::Config;
use pstl::data::synth::SynthOpts;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The project root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/golden/pstl_official_seed1.safetensors`.
pub fn golden_path() -> PathBuf {
    root().join("../shared/golden/pstl_official_seed1.safetensors")
}

/// All tensors of the golden file.
pub fn golden() -> BTreeMap<String, Tensor> {
    pstl::checkpoint::read_safetensors(&golden_path())
        .expect("golden file")
        .0
}

/// The project venv's Python (interop tests need real PyTorch).
pub fn python() -> PathBuf {
    let p = root().join(".venv/bin/python");
    assert!(p.exists(), "{} missing: run `make setup`", p.display());
    p
}

/// The pstl binary built for these tests.
pub fn pstl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pstl"))
}

/// Max absolute difference of two tensors.
pub fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// A tiny model and schedule for CPU tests, reading `store`.
pub fn tiny_config(store: &Path, run_dir: &Path, name: &str) -> Config {
    Config::load(None, &tiny_overrides(store, run_dir, name)).expect("tiny config")
}

/// The `--set` overrides behind [`tiny_config`] (for runs of the binary).
pub fn tiny_overrides(store: &Path, run_dir: &Path, name: &str) -> Vec<String> {
    vec![
        format!("run.name=\"{name}\""),
        format!("run.dir=\"{}\"", run_dir.display()),
        "run.device=\"cpu\"".into(),
        format!("data.path=\"{}\"", store.display()),
        "model.base_channels=4".into(),
        "model.feature_dim=32".into(),
        "model.projector_dim=64".into(),
        "pretrain.batch_size=16".into(),
        "pretrain.epochs=3".into(),
        "pretrain.warmup_epochs=0".into(),
        "pretrain.lr=0.005".into(),
        "pretrain.log_every=2".into(),
        "pretrain.checkpoint_every=1".into(),
        "eval.batch_size=32".into(),
        "eval.linear_epochs=30".into(),
        "eval.finetune_epochs=8".into(),
        "eval.robust_max_k=3".into(),
        "eval.robust_draws=2".into(),
    ]
}

/// Write a small synthetic store into `dir` and return its path.
pub fn tiny_store(dir: &Path, classes: usize, train: usize, test: usize) -> PathBuf {
    let path = dir.join("synthetic.h5");
    pstl::commands::synth::write_synth(
        &path,
        &SynthOpts {
            classes,
            train_per_class: train,
            test_per_class: test,
            seed: 7,
            frames: 50,
        },
    )
    .expect("synthetic store");
    path
}
