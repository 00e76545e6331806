//! `pstl show`: the sheet marks exactly the frames MATM dropped and the joints CSM
//! removed in the draws of the requested pretraining step (recomputed here from the
//! seed with the training code, and read back from the PNG's pixels); the GIF has every
//! frame; bad input is an error naming it.

use crate::common::{pstl_bin, tiny_store};
use pstl::config::Config;
use pstl::model::Layout;
use pstl::rng::{step_seed, PstlRng};
use pstl::viz::skeleton::Geometry;
use rand::SeedableRng;
use std::path::Path;
use std::process::Command;
use tch::{Kind, Tensor};

const RED: [u8; 3] = [220, 30, 30];

/// What pretraining step `step` draws for sample `index` (training code, no drawing).
fn expected_draw(store: &Path, index: usize, cfg: &Config, step: u64) -> (Vec<usize>, Vec<usize>) {
    let st = pstl::data::store::Store::open(store).unwrap();
    let s = st.read_indices("train", &[index]).unwrap();
    let x = Tensor::from_slice(&s.x).view([1, 3, 50, 25, 2]);
    let layout = Layout::ntu25();
    let seed = step_seed(cfg.run.seed, step);
    tch::manual_seed(seed as i64);
    let (views, unmasked) =
        pstl::method::pstl_views_unmasked(&x, cfg, &layout, &mut PstlRng::seed_from_u64(seed));
    // The kept frames are those of the view the loss sees (`pstl_views`, same draws).
    tch::manual_seed(seed as i64);
    let train = pstl::method::pstl_views(&x, cfg, &layout, &mut PstlRng::seed_from_u64(seed));
    let kept = views.kept_frames.expect("MATM is on");
    let gathered = unmasked.index_select(2, &kept.flatten(0, -1));
    assert!(gathered.allclose(&train.temporal, 0.0, 0.0, false));
    assert_eq!(train.drop, views.drop);
    let kept: Vec<i64> = Vec::try_from(kept.flatten(0, -1)).unwrap();
    let frames = (0..50).filter(|t| !kept.contains(&(*t as i64))).collect();
    let mut joints = views.drop.clone();
    joints.sort_unstable();
    joints.dedup();
    (frames, joints)
}

fn is_red(img: &image::RgbImage, (x, y): (i32, i32)) -> bool {
    img.get_pixel(x as u32, y as u32).0 == RED
}

#[test]
fn show_marks_exactly_the_frames_and_joints_the_masks_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tiny_store(tmp.path(), 3, 4, 2);
    let out = tmp.path().join("show");
    let (index, step) = (5usize, 7u64);
    let status = Command::new(pstl_bin())
        .args(["--device", "cpu", "--threads", "1", "-q", "show", "--store"])
        .arg(&store)
        .args([
            "--index",
            &index.to_string(),
            "--step",
            &step.to_string(),
            "--out",
        ])
        .arg(&out)
        .args(["--set", "run.seed=3"])
        .status()
        .unwrap();
    assert!(status.success());
    let cfg = Config::load(None, &["run.seed=3".to_string()]).unwrap();
    let (frames, joints) = expected_draw(&store, index, &cfg, step);
    assert_eq!(frames.len(), 2 * cfg.pretrain.mask_frame as usize);
    assert!(!joints.is_empty());

    let marks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("marks.json")).unwrap()).unwrap();
    assert_eq!(marks["dropped_frames"], serde_json::json!(frames));
    assert_eq!(marks["dropped_joints"], serde_json::json!(joints));

    let (sheet, _) =
        pstl::commands::show::build_sheet(&store, "train", index, &cfg, step, 6).unwrap();
    let g = Geometry::of(&sheet);
    let img = image::open(out.join("sheet.png")).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), g.size());
    // The strips: row 2 (MATM) one cell per frame, row 3 (CSM) one per joint.
    for t in 0..50 {
        assert_eq!(
            is_red(&img, g.frame_cell(2, t)),
            frames.contains(&t),
            "frame {t}"
        );
        assert!(!is_red(&img, g.frame_cell(0, t)) && !is_red(&img, g.frame_cell(1, t)));
    }
    for v in 0..25 {
        assert_eq!(
            is_red(&img, g.joint_cell(3, v)),
            joints.contains(&v),
            "joint {v}"
        );
    }
    // The MATM panels: a red border exactly on the dropped frames drawn.
    for (col, &t) in sheet.columns.iter().enumerate() {
        let (x, y) = g.panel_origin(2, col);
        assert_eq!(
            is_red(&img, (x + 1, y + g.panel / 2)),
            frames.contains(&t),
            "column {t}"
        );
    }
    // The CSM panels: every removed joint of every person present is a red dot.
    let csm = &sheet.views[3];
    let bbox = csm.bbox();
    for (col, &t) in sheet.columns.iter().enumerate() {
        for person in csm.frames[t]
            .iter()
            .filter(|p| p.iter().any(|q| q.0 != 0.0))
        {
            for &v in &joints {
                let p = g.point(g.panel_origin(3, col), bbox, person[v]);
                assert!(is_red(&img, p), "joint {v} at frame {t}");
            }
        }
    }
    let gif = std::fs::File::open(out.join("views.gif")).unwrap();
    let mut decoder = gif::DecodeOptions::new().read_info(gif).unwrap();
    let mut n = 0;
    while decoder.read_next_frame().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 50);
}

#[test]
fn show_rejects_a_bad_index_or_split_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tiny_store(tmp.path(), 2, 2, 1);
    for (flag, value, needle) in [
        ("--index", "4", "--index 4"),
        ("--split", "val", "--split val"),
    ] {
        let out = Command::new(pstl_bin())
            .args(["--device", "cpu", "show", "--store"])
            .arg(&store)
            .args([flag, value, "--out"])
            .arg(tmp.path().join("o"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{err}");
    }
    assert!(!tmp.path().join("o").join("sheet.png").exists());
}

#[test]
fn the_training_views_are_unchanged_by_the_kept_frames() {
    // pstl_views still returns the MATM view of T - 2m frames, and the kept frames
    // are in time order.
    let cfg = Config::load(None, &[]).unwrap();
    let x = Tensor::randn([3, 3, 50, 25, 2], (Kind::Float, tch::Device::Cpu));
    let v = pstl::method::pstl_views(&x, &cfg, &Layout::ntu25(), &mut PstlRng::seed_from_u64(1));
    let keep = 50 - 2 * cfg.pretrain.mask_frame;
    assert_eq!(v.temporal.size(), vec![3, 3, keep, 25, 2]);
    let kept = v.kept_frames.unwrap();
    assert_eq!(kept.size(), vec![3, keep]);
    let diffs = kept.diff(1, 1, None::<Tensor>, None::<Tensor>);
    assert!(bool::try_from(diffs.gt(0).all()).unwrap());
}

#[test]
fn silhouette_of_two_pairs_matches_the_hand_computation() {
    // 1-D points 0, 1 (class 0) and 10, 11 (class 1): a = 1 for each point; b = 10.5
    // for the outer points and 9.5 for the inner ones.
    let x = Tensor::from_slice(&[0.0f32, 1.0, 10.0, 11.0]).view([4, 1]);
    let y = Tensor::from_slice(&[0i64, 0, 1, 1]);
    let want = ((10.5 - 1.0) / 10.5 + (9.5 - 1.0) / 9.5) / 2.0;
    assert!((pstl::eval::silhouette(&x, &y) - want).abs() < 1e-9);
    // Interleaved classes score below 0.
    let y = Tensor::from_slice(&[0i64, 1, 0, 1]);
    assert!(pstl::eval::silhouette(&x, &y) < 0.0);
}

#[test]
fn tsne_is_deterministic_per_seed_and_keeps_clusters_apart() {
    // Three Gaussian clusters in 16-D, 40 points each.
    let mut x = Vec::new();
    let mut y = Vec::new();
    let noise = Tensor::randn([120, 16], (Kind::Float, tch::Device::Cpu));
    let noise: Vec<f32> = Vec::try_from(noise.flatten(0, -1)).unwrap();
    for i in 0..120 {
        let c = i / 40;
        y.push(c as i64);
        for j in 0..16 {
            let centre = if j % 3 == c { 8.0 } else { 0.0 };
            x.push(centre + noise[i * 16 + j]);
        }
    }
    let a = pstl::eval::tsne_2d(&x, 120, 16, 5).unwrap();
    let b = pstl::eval::tsne_2d(&x, 120, 16, 5).unwrap();
    assert_eq!(a, b, "same seed, same map");
    let c = pstl::eval::tsne_2d(&x, 120, 16, 6).unwrap();
    assert_ne!(a, c, "the seed sets the start");
    let map = Tensor::from_slice(&a).view([120, 2]);
    let s = pstl::eval::silhouette(&map, &Tensor::from_slice(&y));
    assert!(s > 0.7, "clusters mixed in the map: silhouette {s}");
    assert!(pstl::eval::tsne_2d(&x[..48], 3, 16, 5).is_err());
}
