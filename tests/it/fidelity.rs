//! Paper fidelity (issue 14): the details where pstl follows the authors' code
//! (YujieOuO/PSTL, AimCLR's data and ensemble scripts) rather than a plausible variant,
//! and the reproduction kit (`pstl report`, `scripts/reproduce.sh --dry-run`).

use crate::common::{max_abs, pstl_bin, root, tiny_config, tiny_overrides, tiny_store};
use pstl::augment::augment;
use pstl::config::{Config, EnsembleMode};
use pstl::data::pku::{center_crop, PKU_MAX_FRAMES};
use pstl::data::RawSeq;
use pstl::eval::{self, EvalOutput};
use pstl::masking::{matm, matm_with, motion_score};
use pstl::method::pstl_views;
use pstl::model::Layout;
use pstl::rng::PstlRng;
use pstl::stream::{motion, Stream};
use rand::SeedableRng;
use std::process::Command;
use tch::{Device, Kind, Tensor};

// Item 1: the stream is computed before the augmentations.
#[test]
fn motion_view_is_stream_then_augment() {
    let mut cfg = Config::load(None, &[]).unwrap();
    cfg.data.stream = Stream::Motion;
    let layout = Layout::ntu25();
    tch::manual_seed(3);
    let x = Tensor::randn([4, 3, 50, 25, 2], (Kind::Float, Device::Cpu)).cumsum(2, Kind::Float);
    // The anchor is the first draw of the step's generator.
    let views = pstl_views(&x, &cfg, &layout, &mut PstlRng::seed_from_u64(11));
    let authors = augment(
        &motion(&x),
        &cfg.augment,
        &layout,
        &mut PstlRng::seed_from_u64(11),
    );
    assert!(
        max_abs(&views.anchor, &authors) < 1e-5,
        "anchor differs from augment(motion(x)) by {}",
        max_abs(&views.anchor, &authors)
    );
    // The other order is a different view (mirrored crop padding, rotated differences).
    let reversed = motion(&augment(
        &x,
        &cfg.augment,
        &layout,
        &mut PstlRng::seed_from_u64(11),
    ));
    assert!(max_abs(&views.anchor, &reversed) > 1e-3);
    assert_eq!(views.temporal.size(), vec![4, 3, 30, 25, 2]);
    assert_eq!(views.spatial.size(), x.size());
}

/// `(N, T)` positions, within each sample's kept slow frames, of MATM's output frames,
/// for an input whose frame values are strictly increasing in time per sample.
fn matm_positions(x: &Tensor, y: &Tensor, m: i64) -> (Vec<Vec<usize>>, Vec<Vec<i64>>) {
    let n = x.size()[0];
    let t = x.size()[2];
    let (_, slow) = motion_score(x).topk(t - m, 1, false, true);
    let (slow, _) = slow.sort(1, false);
    let mut positions = Vec::new();
    let mut slow_sets = Vec::new();
    for i in 0..n {
        let frames: Vec<f32> = Vec::try_from(x.get(i).get(0).select(1, 0).select(1, 0)).unwrap();
        let out: Vec<f32> = Vec::try_from(y.get(i).get(0).select(1, 0).select(1, 0)).unwrap();
        let kept: Vec<i64> = Vec::try_from(slow.get(i)).unwrap();
        let pos = out
            .iter()
            .map(|v| {
                let frame = frames.iter().position(|f| f == v).expect("an input frame") as i64;
                kept.iter().position(|&k| k == frame).expect("a slow frame")
            })
            .collect();
        positions.push(pos);
        slow_sets.push(kept);
    }
    (positions, slow_sets)
}

// Item 2: the random second drop of MATM is drawn once per batch by default.
#[test]
fn matm_random_drop_is_one_draw_per_batch() {
    tch::manual_seed(5);
    let steps = Tensor::rand([6, 50], (Kind::Float, Device::Cpu)) + 0.1;
    let x = steps
        .cumsum(1, Kind::Float)
        .view([6, 1, 50, 1, 1])
        .expand([6, 3, 50, 25, 2], false)
        .contiguous();
    let m = 10;
    let y = matm(&x, m, &mut PstlRng::seed_from_u64(1));
    let (pos, slow) = matm_positions(&x, &y, m);
    assert!(
        slow.windows(2).any(|w| w[0] != w[1]),
        "the samples must keep different slow frames for this test to mean anything"
    );
    assert!(
        pos.iter().all(|p| p == &pos[0]),
        "per-batch draw: every sample keeps the same positions, got {pos:?}"
    );
    // The config switch (augment.per_sample) draws per sample.
    let y = matm_with(&x, m, true, &mut PstlRng::seed_from_u64(1));
    let (pos, _) = matm_positions(&x, &y, m);
    assert!(
        pos.iter().any(|p| p != &pos[0]),
        "per-sample draws all equal"
    );
}

// Item 3: fine-tune and semi-supervised run the authors' 150 epochs (`ft_epoch`).
#[test]
fn finetune_runs_150_epochs_in_the_paper_configs() {
    assert_eq!(Config::load(None, &[]).unwrap().eval.finetune_epochs, 150);
    for entry in std::fs::read_dir(root().join("configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml")
            && !path.ends_with("configs/synthetic.toml")
        {
            let cfg = Config::load(Some(&path), &[]).unwrap();
            assert_eq!(cfg.eval.finetune_epochs, 150, "{}", path.display());
            // The cosine runs over the same 150 epochs: the last epoch's lr is near 0.
            let last = pstl::optim::cosine(cfg.eval.finetune_lr, 149.0, cfg.eval.finetune_epochs);
            assert!(last < cfg.eval.finetune_lr * 1e-3, "{last}");
        }
    }
}

// Item 4: best and last epoch both kept, the headline named, the authors' batch mean.
#[test]
fn results_name_best_and_last_epoch() {
    // Three rows, two batches of 2: per-sample 2/3, batch mean (100 + 0) / 2.
    let logits = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 1.0, 0.0]).view([3, 2]);
    let y = Tensor::from_slice(&[0i64, 1, 1]);
    assert!((eval::topk_accuracy(&logits, &y, 1) - 200.0 / 3.0).abs() < 1e-9);
    assert!((eval::batch_mean_top1(&logits, &y, 2) - 50.0).abs() < 1e-9);

    let dir = tempfile::tempdir().unwrap();
    let store = tiny_store(dir.path(), 3, 6, 5);
    let mut cmd = Command::new(pstl_bin());
    cmd.args(["eval", "linear", "--device", "cpu", "--threads", "1"]);
    for ov in tiny_overrides(&store, dir.path(), "lin") {
        cmd.args(["--set", &ov]);
    }
    let out = cmd
        .args([
            "--set",
            "eval.linear_epochs=4",
            "--set",
            "eval.batch_size=4",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("best epoch")
            && stdout.contains("last epoch")
            && stdout.contains("per-sample"),
        "summary does not say which figure it prints: {stdout}"
    );
    let path = dir.path().join("lin/eval-linear/results.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(v["headline"], "top1_best");
    let (best, last) = (
        v["top1_best"].as_f64().unwrap(),
        v["top1_last"].as_f64().unwrap(),
    );
    assert!(best >= last);
    // 15 test rows in batches of 4: the batch mean is its own figure, within [0, 100].
    let bm = v["top1_best_batch_mean"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&bm));
    assert_eq!(v["benchmark"]["dataset"], "synthetic");
}

// Item 5: PKU-MMD instances longer than 300 frames are centre-cropped first.
#[test]
fn pku_instances_are_centre_cropped_to_300_frames() {
    let seq = |frames: usize| RawSeq {
        frames,
        data: (0..3 * frames * 50)
            .map(|i| ((i / 50) % frames) as f32)
            .collect(),
    };
    let long = center_crop(seq(311), PKU_MAX_FRAMES);
    assert_eq!(long.frames, 300);
    // (311 - 300) / 2 = 5: frames 5..305, in every channel.
    for c in 0..3 {
        let base = c * 300 * 50;
        assert_eq!(long.data[base], 5.0);
        assert_eq!(long.data[base + 299 * 50 + 49], 304.0);
    }
    let short = center_crop(seq(300), PKU_MAX_FRAMES);
    assert_eq!(short.frames, 300);
    assert_eq!(short.data[0], 0.0);
}

// Item 6: the ensemble sums raw logits (AimCLR) or softmax scores, as configured.
#[test]
fn ensemble_logits_and_softmax_modes_differ_as_designed() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_store(dir.path(), 2, 2, 3);
    let mut cfg = tiny_config(&store, dir.path(), "ens");
    let labels = pstl::data::store::Store::open(&store)
        .unwrap()
        .labels("test")
        .unwrap()
        .to_vec();
    // One confident stream for the true class against two mild ones for the other:
    // summed logits pick the truth, summed probabilities the other class.
    let stream = |strong: bool| -> Vec<f32> {
        labels
            .iter()
            .flat_map(|&y| {
                let mut row = [0.0f32; 2];
                if strong {
                    row[y as usize] = 10.0;
                } else {
                    row[1 - y as usize] = 3.0;
                }
                row
            })
            .collect()
    };
    let mut files = Vec::new();
    for (i, strong) in [true, false, false].into_iter().enumerate() {
        let p = dir.path().join(format!("s{i}.npy"));
        pstl::data::npy::write_npy_f32(&p, &stream(strong), &[labels.len(), 2]).unwrap();
        files.push(p);
    }
    let out = EvalOutput::new(&dir.path().join("ens")).unwrap();
    assert_eq!(cfg.eval.ensemble_mode, EnsembleMode::Logits);
    assert_eq!(cfg.eval.ensemble_weights, vec![0.6, 0.4, 0.6]);
    let v = eval::ensemble(&cfg, &files, &[1.0, 1.0, 1.0], &out).unwrap();
    assert_eq!(v["top1"].as_f64().unwrap(), 100.0);
    assert_eq!(v["mode"], "logits");
    cfg.eval.ensemble_mode = EnsembleMode::Softmax;
    let v = eval::ensemble(&cfg, &files, &[1.0, 1.0, 1.0], &out).unwrap();
    assert_eq!(v["top1"].as_f64().unwrap(), 0.0);
    assert_eq!(v["mode"], "softmax");
}

// Item 7: per-class counts round half to even (Python's `round`), minimum one optional.
#[test]
fn semi_subset_rounds_like_python() {
    let sizes = [250usize, 350, 40, 150];
    let labels: Vec<i64> = sizes
        .iter()
        .enumerate()
        .flat_map(|(k, &n)| std::iter::repeat_n(k as i64, n))
        .collect();
    let count = |s: &[i64], k: i64| s.iter().filter(|&&i| labels[i as usize] == k).count();
    // 1%: 2.5 -> 2, 3.5 -> 4, 0.4 -> 0, 1.5 -> 2 (Python: round(0.01 * n)).
    let s = eval::semi_subset(&labels, 1.0, 1, false);
    let got: Vec<usize> = (0..4).map(|k| count(&s, k)).collect();
    assert_eq!(got, vec![2, 4, 0, 2]);
    let s = eval::semi_subset(&labels, 1.0, 1, true);
    let got: Vec<usize> = (0..4).map(|k| count(&s, k)).collect();
    assert_eq!(got, vec![2, 4, 1, 2]);
}

// Item 8: several body parts removed at once equal removing the union of their joints.
#[test]
fn robust_removes_several_parts_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = tiny_store(dir.path(), 3, 6, 4);
    let mut cfg = tiny_config(&store, dir.path(), "rob");
    cfg.eval.linear_epochs = 3;
    cfg.eval.robust_max_k = 1;
    cfg.eval.robust_draws = 1;
    cfg.eval.robust_part_sets = vec!["left_arm,right_leg".into()];
    let out = EvalOutput::new(&dir.path().join("robust")).unwrap();
    let v = eval::robust(&cfg, None, None, Device::Cpu, &out).unwrap();
    let got = v["part_sets"]["left_arm+right_leg"].as_f64().unwrap();

    let cls = out.dir.join("linear/classifier.safetensors");
    let model = eval::load_with_classifier(&cfg, None, Some(&cls), Device::Cpu).unwrap();
    let data = eval::load_data(&cfg).unwrap();
    let layout = cfg.layout();
    let union = [4, 5, 6, 7, 21, 22, 16, 17, 18, 19];
    let f = eval::features(
        &model.enc,
        &data.test_x,
        cfg.data.stream,
        &layout,
        &union,
        32,
        Device::Cpu,
    );
    let logits = f.apply(model.fc.as_ref().unwrap());
    assert!((eval::topk_accuracy(&logits, &data.test_y, 1) - got).abs() < 1e-9);
    assert!(std::fs::read_to_string(out.dir.join("robust.md"))
        .unwrap()
        .contains("left_arm+right_leg"));

    let (_, joints) = pstl::model::part_set(&layout, "trunk, left_leg").unwrap();
    assert_eq!(joints, vec![0, 1, 2, 3, 20, 12, 13, 14, 15]);
    let err = pstl::model::part_set(&layout, "left_arm,tail")
        .unwrap_err()
        .to_string();
    assert!(err.contains("`tail`") && err.contains("right_leg"), "{err}");
}

#[test]
fn report_sets_results_beside_the_paper() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, v: serde_json::Value| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("results.json"), v.to_string()).unwrap();
    };
    let bench = |ds: &str, b: &str| serde_json::json!({"dataset": ds, "benchmark": b});
    for (seed, acc) in [(1, 76.0), (2, 78.0)] {
        write(
            &format!("xsub{seed}"),
            serde_json::json!({"protocol": "linear", "stream": "joint", "checkpoint": "e",
                "benchmark": bench("ntu60", "xsub"), "top1_best": acc, "top1_last": 70.0}),
        );
    }
    write(
        "ens",
        serde_json::json!({"protocol": "ensemble", "mode": "logits", "top1": 88.0,
            "benchmark": bench("ntu60", "xview"), "sources": [{"protocol": "finetune"}]}),
    );
    write(
        "syn",
        serde_json::json!({"protocol": "semi", "stream": "joint", "checkpoint": null,
            "benchmark": bench("synthetic", "default"),
            "semi1": {"top1_best": 12.5, "top1_last": 10.0}}),
    );
    std::fs::write(dir.path().join("results.json"), "{\"linear_top1\": 3}").unwrap();
    let md = pstl::report::report(&[dir.path().to_path_buf()]).unwrap();
    assert!(
        md.contains("| joint | 77.00 ± 1.41 (n=2) / 77.3 (-0.30) | – / 81.8 |"),
        "{md}"
    );
    assert!(
        md.contains("| 3-stream (logits) | – / 87.1 | 88.00 / 93.9 (-5.90) |"),
        "{md}"
    );
    assert!(md.contains("synthetic default"), "{md}");
    assert!(md.contains("| joint, 1% labels (random init) |"), "{md}");
    assert!(md.contains("12.50 / –"), "{md}");
    assert!(pstl::report::report(&[dir.path().join("syn/none")]).is_err());
}

#[test]
fn reproduce_dry_run_prints_plan_and_gpu_hours() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(root().join("scripts/reproduce.sh"))
        .args(["--dry-run", "--bench-rate", "400"])
        .arg(data.path())
        .env("PSTL", pstl_bin())
        .current_dir(root())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "prepare ntu",
        "prepare pku",
        "pretrain",
        "eval linear",
        "eval finetune",
        "eval semi",
        "eval transfer",
        "eval robust",
        "eval ensemble",
        "report",
        "GPU hours",
    ] {
        assert!(
            text.contains(want),
            "`{want}` missing from the plan:\n{text}"
        );
    }
    // Nothing is run in a dry run.
    assert!(std::fs::read_dir(data.path()).unwrap().next().is_none());
    // Resumable: what exists is kept.
    let stores = data.path().join("stores");
    std::fs::create_dir_all(&stores).unwrap();
    std::fs::write(stores.join("ntu60_xsub.h5"), b"").unwrap();
    let out = Command::new("bash")
        .arg(root().join("scripts/reproduce.sh"))
        .args(["--dry-run", "--bench-rate", "400"])
        .arg(data.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ntu60_xsub.h5 exists, skipped"), "{text}");
    assert!(!text.contains("--dataset ntu60 --benchmark xsub"), "{text}");
    // A bad rate is an error.
    let out = Command::new("bash")
        .arg(root().join("scripts/reproduce.sh"))
        .args(["--dry-run", "--bench-rate", "fast"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
}
