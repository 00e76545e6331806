//! The model against the authors' PyTorch outputs (`../shared/golden/`), plus the
//! invariants of the views: MATM, CSM, augmentations and streams.

use crate::common::{golden, golden_path, max_abs};
use pstl::augment::{augment, flip, rotation_matrix, temporal_crop, AugmentConfig};
use pstl::masking::{csm_draw, matm, motion_score};
use pstl::model::{bt_loss, bt_loss_direct, BtHead, EncoderConfig, Graph, Layout, StGcn};
use pstl::rng::PstlRng;
use pstl::stream::Stream;
use rand::SeedableRng;
use std::collections::BTreeMap;
use tch::{nn, Device, Kind, Tensor};

fn golden_encoder() -> (nn::VarStore, StGcn, BTreeMap<String, Tensor>) {
    let g = golden();
    let vs = nn::VarStore::new(Device::Cpu);
    let enc = StGcn::new(vs.root(), &Layout::ntu25(), &EncoderConfig::default());
    let state = pstl::checkpoint::encoder_state(&golden_path()).unwrap();
    pstl::checkpoint::load_into(&vs, "", &state, &golden_path()).unwrap();
    (vs, enc, g)
}

#[test]
fn graph_matches_golden_a_and_degrees() {
    let g = golden();
    let graph = Graph::spatial(&Layout::ntu25());
    let a = Tensor::from_slice(&graph.a).view([3, 25, 25]);
    assert!(
        max_abs(&a, &g["encoder.A"]) < 1e-6,
        "A differs from the official graph"
    );
    let deg = Layout::ntu25().degrees();
    assert_eq!(
        deg,
        vec![3, 2, 2, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 1, 4, 1, 2, 1, 2]
    );
    assert_eq!(deg.iter().sum::<usize>(), 48);
}

#[test]
fn varstore_paths_are_the_official_keys() {
    let (vs, _enc, g) = golden_encoder();
    let mut ours: Vec<String> = vs.variables().into_keys().collect();
    ours.sort();
    let mut official: Vec<String> = g
        .keys()
        .filter_map(|k| k.strip_prefix("encoder."))
        .filter(|k| !k.ends_with("num_batches_tracked"))
        .map(String::from)
        .collect();
    official.sort();
    assert_eq!(ours, official);
    assert!(
        ours.iter().all(|k| !k.contains("__")),
        "a path was renamed by tch: {ours:?}"
    );
}

#[test]
fn encoder_equals_official_output() {
    let (_vs, enc, g) = golden_encoder();
    let _guard = tch::no_grad_guard();
    let z = enc.forward_drop(&g["x"], &[], false);
    assert_eq!(z.size(), vec![4, 256]);
    let d = max_abs(&z, &g["z_eval"]);
    assert!(d < 1e-4, "z_eval max abs diff {d}");
}

#[test]
fn encoder_with_removed_joints_equals_official_csm_output() {
    let (_vs, enc, g) = golden_encoder();
    let _guard = tch::no_grad_guard();
    let ignore: Vec<usize> = Vec::<i64>::try_from(&g["ignore_joint"])
        .unwrap()
        .iter()
        .map(|&j| j as usize)
        .collect();
    assert!(
        ignore.len()
            > ignore
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len(),
        "golden list has duplicates"
    );
    let z = enc.forward_drop(&g["x"], &ignore, false);
    let d = max_abs(&z, &g["z_eval_csm"]);
    assert!(d < 1e-4, "z_eval_csm max abs diff {d}");
    assert!(
        max_abs(&z, &g["z_eval"]) > 1e-3,
        "removing joints must change the output"
    );
}

fn golden_head(g: &BTreeMap<String, Tensor>) -> (nn::VarStore, BtHead) {
    let d = g["projector.projector.0.weight"].size()[0];
    let vs = nn::VarStore::new(Device::Cpu);
    let head = BtHead::new(vs.root() / "projector", 256, d);
    let state: BTreeMap<String, Tensor> = g
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("projector.")
                .map(|s| (s.to_string(), v.shallow_clone()))
        })
        .collect();
    pstl::checkpoint::load_into(&vs, "projector.", &state, &golden_path()).unwrap();
    (vs, head)
}

#[test]
fn barlow_twins_loss_equals_official_in_both_forms() {
    let g = golden();
    let (_vs, head) = golden_head(&g);
    let want = g["bt_loss"].double_value(&[0]);
    let a = head.embed(&g["f1"], true);
    let b = head.embed(&g["f2"], true);
    for (name, loss) in [
        ("gram", bt_loss(&a, &b, 2e-4)),
        ("direct", bt_loss_direct(&a, &b, 2e-4)),
    ] {
        let got = loss.total.double_value(&[]);
        assert!(
            ((got - want) / want).abs() < 1e-4,
            "{name}: {got} vs official {want}"
        );
    }
}

#[test]
fn gram_and_direct_gradients_agree() {
    let g = golden();
    let (vs, head) = golden_head(&g);
    let grads = |gram: bool| -> Vec<Tensor> {
        for mut v in vs.trainable_variables() {
            v.zero_grad();
        }
        let a = head.embed(&g["f1"], true);
        let b = head.embed(&g["f2"], true);
        let l = if gram {
            bt_loss(&a, &b, 2e-4)
        } else {
            bt_loss_direct(&a, &b, 2e-4)
        };
        l.total.backward();
        vs.trainable_variables()
            .iter()
            .map(|v| v.grad().copy())
            .collect()
    };
    let (g1, g2) = (grads(true), grads(false));
    assert!(!g1.is_empty());
    for (a, b) in g1.iter().zip(&g2) {
        let scale = b.abs().max().double_value(&[]).max(1e-6);
        assert!(
            max_abs(a, b) / scale < 1e-3,
            "gradient mismatch {}",
            max_abs(a, b)
        );
    }
}

#[test]
fn matm_keeps_slow_frames_in_order() {
    let g = golden();
    let x = &g["matm_in"];
    let m = 10;
    let mut rng = PstlRng::seed_from_u64(3);
    let y = matm(x, m, &mut rng);
    assert_eq!(y.size(), vec![3, 3, 30, 25, 2]);
    let score = motion_score(x);
    for n in 0..3 {
        // Index of each output frame in the input.
        let frames: Vec<i64> = (0..30)
            .map(|t| {
                let out = y.get(n).select(1, t);
                (0..50)
                    .find(|&s| max_abs(&x.get(n).select(1, s), &out) == 0.0)
                    .expect("output frame is an input frame")
            })
            .collect();
        assert!(
            frames.windows(2).all(|w| w[0] < w[1]),
            "frames out of order: {frames:?}"
        );
        let (_, fastest) = score.get(n).topk(m, 0, true, true);
        let fastest: Vec<i64> = Vec::try_from(fastest).unwrap();
        assert!(
            frames.iter().all(|f| !fastest.contains(f)),
            "a fast frame survived"
        );
        // The official output draws from the same kept set (its random part differs).
        let official = g["matm_out"].get(n);
        for t in 0..30 {
            let src =
                (0..50).find(|&s| max_abs(&x.get(n).select(1, s), &official.select(1, t)) == 0.0);
            let src = src.expect("official output frame comes from the input");
            assert!(
                !fastest.contains(&src),
                "official output keeps a fast frame? {src}"
            );
        }
    }
}

#[test]
fn csm_frequencies_follow_degrees() {
    let layout = Layout::ntu25();
    let deg = layout.degrees();
    let mut rng = PstlRng::seed_from_u64(1);
    let draws = 20_000;
    let mut counts = [0f64; 25];
    let mut distinct = 0usize;
    for _ in 0..draws {
        let d = csm_draw(&layout, 8, &mut rng);
        assert_eq!(d.len(), 8);
        for &j in &d {
            counts[j] += 1.0;
        }
        let mut u = d.clone();
        u.sort();
        u.dedup();
        distinct += u.len();
    }
    for j in 0..25 {
        let expected = draws as f64 * 8.0 * deg[j] as f64 / 48.0;
        let rel = (counts[j] - expected).abs() / expected;
        assert!(
            rel < 0.05,
            "joint {j}: {} draws, expected {expected}",
            counts[j]
        );
    }
    let mean_distinct = distinct as f64 / draws as f64;
    assert!(
        (mean_distinct - 7.3).abs() < 0.15,
        "mean distinct joints {mean_distinct}"
    );
}

fn bone_lengths(x: &Tensor) -> Tensor {
    Stream::Bone
        .apply(x, &Layout::ntu25())
        .square()
        .sum_dim_intlist(1, false, Kind::Float)
        .sqrt()
}

fn devices() -> Vec<Device> {
    let mut d = vec![Device::Cpu];
    if tch::Cuda::is_available() {
        d.push(Device::Cuda(0));
    }
    d
}

#[test]
fn augmentations_keep_invariants_on_every_device() {
    let layout = Layout::ntu25();
    let g = golden();
    for device in devices() {
        let x = g["x"].to_device(device);
        let mut rng = PstlRng::seed_from_u64(5);
        // Rotation preserves bone lengths.
        let r = rotation_matrix(30.0, 1.0, &mut rng);
        let y = pstl::augment::apply_matrices(&x, &[r], false);
        assert!(max_abs(&bone_lengths(&x), &bone_lengths(&y)) < 1e-4);
        assert!(max_abs(&x, &y) > 1e-3, "rotation changed nothing");
        // Flip twice is the identity; once is not.
        let f1 = flip(&x, &layout, &[true]);
        assert!(max_abs(&f1, &x) > 1e-3);
        assert_eq!(max_abs(&flip(&f1, &layout, &[true]), &x), 0.0);
        let per = flip(
            &flip(&x, &layout, &[true, false, true, false]),
            &layout,
            &[true, false, true, false],
        );
        assert_eq!(max_abs(&per, &x), 0.0);
        // Crop keeps the shape, per batch and per sample.
        assert_eq!(temporal_crop(&x, 6, 1, &mut rng).size(), x.size());
        assert_eq!(temporal_crop(&x, 6, 4, &mut rng).size(), x.size());
        // The whole pipeline, both ways.
        for per_sample in [false, true] {
            let cfg = AugmentConfig {
                per_sample,
                ..AugmentConfig::default()
            };
            let a = augment(&x, &cfg, &layout, &mut rng);
            assert_eq!(a.size(), x.size());
            assert_eq!(a.device(), device);
            assert!(bool::try_from(a.isfinite().all()).unwrap());
        }
        let m = matm(&x, 10, &mut rng);
        assert_eq!(m.size()[2], 30);
        let z = csm_draw(&layout, 8, &mut rng);
        assert!(z.iter().all(|&j| j < 25));
    }
}

#[test]
fn crop_of_a_ramp_is_a_window_of_the_mirrored_ramp() {
    // x[t] = t: the crop must be T consecutive values of [7..0, 0..49, 49..42].
    let t = Tensor::arange(50, (Kind::Float, Device::Cpu))
        .view([1, 1, 50, 1, 1])
        .expand([2, 3, 50, 25, 2], false)
        .contiguous();
    let mut rng = PstlRng::seed_from_u64(9);
    for _ in 0..10 {
        let y = temporal_crop(&t, 6, 1, &mut rng);
        let v: Vec<f32> = Vec::try_from(y.get(0).get(0).select(1, 0).select(1, 0)).unwrap();
        let mut padded: Vec<f32> = (0..8).rev().map(|i| i as f32).collect();
        padded.extend((0..50).map(|i| i as f32));
        padded.extend((42..50).rev().map(|i| i as f32));
        assert!(
            padded.windows(50).any(|w| w == v.as_slice()),
            "not a window: {v:?}"
        );
    }
}

#[test]
fn streams() {
    let layout = Layout::ntu25();
    let x = Tensor::randn([2, 3, 10, 25, 2], (Kind::Float, Device::Cpu));
    let m = Stream::Motion.apply(&x, &layout);
    assert_eq!(
        max_abs(&m.narrow(2, 0, 9), &(x.narrow(2, 1, 9) - x.narrow(2, 0, 9))),
        0.0
    );
    assert_eq!(m.narrow(2, 9, 1).abs().max().double_value(&[]), 0.0);
    let b = Stream::Bone.apply(&x, &layout);
    // Joint 21 (1-based) is its own parent: bone 0; joint 1's parent is joint 2.
    assert_eq!(b.select(3, 20).abs().max().double_value(&[]), 0.0);
    assert_eq!(
        max_abs(&b.select(3, 0), &(x.select(3, 0) - x.select(3, 1))),
        0.0
    );
}
