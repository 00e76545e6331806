//! Downstream protocols on a tiny synthetic store: they run, write their files, and
//! beat chance where they must.

use crate::common::{tiny_config, tiny_store};
use pstl::eval::{self, EvalOutput};
use std::path::Path;
use tch::Device;

fn chance(classes: usize) -> f64 {
    100.0 / classes as f64
}

fn files_exist(dir: &Path, files: &[&str]) {
    for f in files {
        assert!(dir.join(f).exists(), "{} missing in {}", f, dir.display());
    }
}

#[test]
fn finetune_then_linear_knn_robust_and_ensemble() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_store(dir.path(), 4, 24, 8);
    let mut cfg = tiny_config(&store, dir.path(), "ft");
    cfg.eval.finetune_epochs = 30;
    cfg.eval.finetune_lr = 0.005;
    cfg.model.base_channels = 8;
    cfg.model.feature_dim = 64;
    cfg.model.dropout = 0.0;
    let ft_out = EvalOutput::new(&dir.path().join("ft")).unwrap();
    let v = eval::finetune(&cfg, None, Device::Cpu, &ft_out).unwrap();
    let top1 = v["top1_best"].as_f64().unwrap();
    // Chance is 25%; the first two synthetic classes (wave vs circle the right hand)
    // differ only in their temporal pattern and are the last pair a tiny model splits.
    assert!(
        top1 >= 70.0,
        "fine-tune from scratch reached only {top1}% on 4 classes"
    );
    files_exist(
        &ft_out.dir,
        &[
            "results.json",
            "finetune_epochs.csv",
            "scores.npy",
            "confusion.png",
            "finetune_accuracy.png",
            "classifier.safetensors",
        ],
    );

    // The fine-tuned encoder (its classifier file carries `encoder.*`) feeds the frozen
    // protocols: its features separate the classes, so they must beat chance. (A
    // random-init encoder in eval mode maps every sample to nearly the same feature.)
    let ft_file = ft_out.dir.join("classifier.safetensors");
    let enc = Some(ft_file.as_path());
    let lin_out = EvalOutput::new(&dir.path().join("linear")).unwrap();
    let lin = eval::linear(&cfg, enc, Device::Cpu, &lin_out).unwrap();
    let top1 = lin["top1_last"].as_f64().unwrap();
    assert!(top1 > chance(4), "linear probe {top1}% is not above chance");
    // The t-SNE map: the trained encoder's classes lie further apart than a random one's.
    let tsne_out = EvalOutput::new(&dir.path().join("tsne")).unwrap();
    let t = eval::tsne(&cfg, enc, Device::Cpu, &tsne_out).unwrap();
    let s = |enc: &str| t["silhouette_features"][enc].as_f64().unwrap();
    assert!(
        s("pretrained") > s("random_init"),
        "{}",
        t["silhouette_features"]
    );
    files_exist(&tsne_out.dir, &["tsne.png", "tsne.csv", "results.json"]);
    let rows = std::fs::read_to_string(tsne_out.dir.join("tsne.csv")).unwrap();
    assert_eq!(rows.lines().count(), 1 + 2 * 4 * 8);
    assert_eq!(lin["features_cached"], true);
    files_exist(
        &lin_out.dir,
        &[
            "results.json",
            "linear_epochs.csv",
            "scores.npy",
            "confusion.png",
            "linear_accuracy.png",
            "classifier.safetensors",
        ],
    );
    let (scores, shape) = pstl::data::npy::read_npy_f32(&lin_out.dir.join("scores.npy")).unwrap();
    assert_eq!(shape, vec![32, 4]);
    assert!(scores.iter().all(|v| v.is_finite()));

    let knn_out = EvalOutput::new(&dir.path().join("knn")).unwrap();
    let knn = eval::knn(&cfg, enc, Device::Cpu, &knn_out).unwrap();
    for k in [1, 10, 20] {
        let a = knn[format!("top1_k{k}")].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&a));
    }
    assert!(knn["top1_k1"].as_f64().unwrap() > chance(4));

    // Robust with no joints removed equals the plain test accuracy of that classifier.
    let rob_out = EvalOutput::new(&dir.path().join("robust")).unwrap();
    let rob = eval::robust(
        &cfg,
        enc,
        Some(&lin_out.dir.join("classifier.safetensors")),
        Device::Cpu,
        &rob_out,
    )
    .unwrap();
    assert!(
        (rob["top1_full"].as_f64().unwrap() - top1).abs() < 1e-9,
        "{} vs {top1}",
        rob["top1_full"]
    );
    for part in ["left_arm", "right_arm", "left_leg", "right_leg", "trunk"] {
        assert!(rob["parts"][part].is_number(), "{part} missing");
    }
    assert_eq!(rob["random_k"].as_object().unwrap().len(), 3);
    files_exist(
        &rob_out.dir,
        &["robust.md", "robust_parts.png", "robust_k.png"],
    );

    // Ensemble of the same scores twice equals the single-stream accuracy; with a
    // zero weight on a garbage stream too.
    let s = lin_out.dir.join("scores.npy");
    let ens_out = EvalOutput::new(&dir.path().join("ens")).unwrap();
    let ens = eval::ensemble(&cfg, &[s.clone(), s.clone()], &[1.0, 1.0], &ens_out).unwrap();
    assert!((ens["top1"].as_f64().unwrap() - top1).abs() < 1e-9);
    let junk = dir.path().join("junk.npy");
    pstl::data::npy::write_npy_f32(&junk, &vec![0.0; 32 * 4], &[32, 4]).unwrap();
    let ens = eval::ensemble(&cfg, &[s.clone(), junk.clone()], &[1.0, 0.0], &ens_out).unwrap();
    assert!((ens["top1"].as_f64().unwrap() - top1).abs() < 1e-9);
    assert!(eval::ensemble(&cfg, &[s, junk], &[1.0], &ens_out).is_err());
}

#[test]
fn semi_subset_is_per_class_and_reproducible() {
    let labels: Vec<i64> = (0..300)
        .map(|i| (i % 3) as i64)
        .chain((0..50).map(|_| 3))
        .collect();
    let a = eval::semi_subset(&labels, 10.0, 1, false);
    let b = eval::semi_subset(&labels, 10.0, 1, false);
    let c = eval::semi_subset(&labels, 10.0, 2, false);
    assert_eq!(a, b);
    assert_ne!(a, c);
    let per_class = |s: &[i64], k: i64| s.iter().filter(|&&i| labels[i as usize] == k).count();
    for k in 0..3 {
        assert_eq!(per_class(&a, k), 10);
    }
    assert_eq!(per_class(&a, 3), 5);
    let one = eval::semi_subset(&labels, 1.0, 1, true);
    assert_eq!(
        one.len(),
        4,
        "round(1% of 100) = 1 per class, at least 1 for the small class"
    );
    let authors = eval::semi_subset(&labels, 1.0, 1, false);
    assert_eq!(authors.len(), 3, "round(0.5) = 0 for the small class");
}

#[test]
fn semi_and_transfer_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_store(dir.path(), 3, 20, 4);
    let mut cfg = tiny_config(&store, dir.path(), "semi");
    cfg.eval.finetune_epochs = 2;
    cfg.eval.linear_epochs = 3;
    cfg.eval.semi_percents = vec![10.0, 50.0];
    let out = EvalOutput::new(&dir.path().join("semi")).unwrap();
    let v = eval::semi(&cfg, None, Device::Cpu, &out).unwrap();
    assert_eq!(v["semi10"]["samples"], 6);
    assert_eq!(v["semi50"]["samples"], 30);
    let subset: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.dir.join("semi10_subset.json")).unwrap())
            .unwrap();
    assert_eq!(subset["indices"].as_array().unwrap().len(), 6);
    assert_eq!(subset["names"].as_array().unwrap().len(), 6);

    // Transfer from an encoder file saved elsewhere.
    let (vs, _enc) = eval::load_encoder(&cfg, None, Device::Cpu).unwrap();
    let src = dir.path().join("source_encoder.safetensors");
    let tensors = pstl::checkpoint::state_dict(&vs, "", "", 0);
    pstl::checkpoint::write_safetensors(&src, &tensors, &Default::default()).unwrap();
    let out = EvalOutput::new(&dir.path().join("transfer")).unwrap();
    let v = eval::transfer(&cfg, Some(&src), Device::Cpu, &out).unwrap();
    assert!(v["linear"]["top1_last"].is_number() && v["finetune"]["top1_last"].is_number());
    assert_eq!(v["checkpoint_sha256"].as_str().unwrap().len(), 64);
    assert!(eval::transfer(&cfg, None, Device::Cpu, &out).is_err());
}
