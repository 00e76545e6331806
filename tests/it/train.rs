//! Pretraining end to end on CPU: the loss falls, checkpoints are written, resume
//! continues to the same weights as an uninterrupted run, bad input stops cleanly.

use crate::common::{max_abs, pstl_bin, tiny_config, tiny_overrides, tiny_store};
use pstl::rundir::read_metrics;
use pstl::train::{pretrain, PretrainOptions, Trainer};
use std::path::Path;
use std::process::Command;
use tch::{Device, Kind, Tensor};

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

// Adam (src/optim.rs)
/// `torch.optim.Adam`'s update written out term by term (L2 weight decay).
fn reference_step(p: &mut Tensor, m: &mut Tensor, v: &mut Tensor, g: &Tensor, t: i32, lr: f64) {
    let (b1, b2, eps, wd) = (0.9, 0.999, 1e-8, 1e-2);
    let g = g + &*p * wd;
    *m = &*m * b1 + &g * (1.0 - b1);
    *v = &*v * b2 + &g * &g * (1.0 - b2);
    let denom = v.sqrt() / (1.0 - b2.powi(t)).sqrt() + eps;
    *p = &*p - &*m / denom * (lr / (1.0 - b1.powi(t)));
}

#[test]
fn fused_step_equals_the_written_out_update_and_skips_params_without_grad() {
    tch::manual_seed(3);
    let shapes: [&[i64]; 3] = [&[7, 5], &[13], &[2, 3, 4]];
    let params: Vec<(String, Tensor)> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let t = Tensor::randn(*s, (Kind::Float, Device::Cpu)).set_requires_grad(true);
            (format!("p{i}"), t)
        })
        .collect();
    let mut refs: Vec<[Tensor; 3]> = params
        .iter()
        .map(|(_, p)| [p.detach().copy(), p.zeros_like(), p.zeros_like()])
        .collect();
    let frozen_before = params[2].1.detach().copy();
    let shared = params
        .iter()
        .map(|(n, p)| (n.clone(), p.shallow_clone()))
        .collect();
    let mut adam = pstl::optim::Adam::from_params(shared, 1e-2);
    for t in 1..=4 {
        adam.zero_grad();
        // A loss on the first two parameters only: the third gets no gradient.
        let loss = (params[0].1.sin().sum(Kind::Float)
            + params[1].1.pow_tensor_scalar(3).sum(Kind::Float))
            * (t as f64);
        loss.backward();
        let lr = 1e-2 * t as f64;
        for (i, r) in refs.iter_mut().take(2).enumerate() {
            let g = params[i].1.grad().detach().copy();
            let [p, m, v] = r;
            reference_step(p, m, v, &g, t, lr);
        }
        adam.step(lr);
    }
    for (i, r) in refs.iter().take(2).enumerate() {
        let diff = (&params[i].1.detach() - &r[0])
            .abs()
            .max()
            .double_value(&[]);
        let scale = r[0].abs().max().double_value(&[]);
        assert!(
            diff <= 1e-6 * scale,
            "param {i}: |fused - reference| = {diff}"
        );
    }
    assert!(
        params[2].1.detach().equal(&frozen_before),
        "a parameter without gradient moved"
    );
    assert_eq!(adam.step, 4);
}

#[test]
fn zero_grad_drops_gradients_so_backward_does_not_accumulate() {
    tch::manual_seed(5);
    let p = Tensor::randn([4, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let mut adam = pstl::optim::Adam::from_params(vec![("p".to_string(), p.shallow_clone())], 0.0);
    let loss = || (p.sin() * 3.0).sum(Kind::Float);
    loss().backward();
    let once = p.grad().detach().copy();
    adam.zero_grad();
    assert!(!p.grad().defined(), "zero_grad must drop the gradient");
    loss().backward();
    // Dropped, not zeroed: the second backward stores the same gradient.
    assert!(
        p.grad().equal(&once),
        "gradient accumulated across zero_grad"
    );
}
