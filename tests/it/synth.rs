//! The procedural synthetic dataset (`pstl::data::synth`): determinism, shapes, finite
//! values, the normalisation contract, rigid bones, and that the classes are separable by
//! their motion but not by a trivial global statistic.

use pstl::data::normalize::frame50;
use pstl::data::synth::{
    class_names, generate, generate_raw, generate_raw_with, is_two_person, Nuisance, SynthOpts,
    SynthSplit, DEFAULT_CLASSES, MAX_CLASSES,
};
use pstl::data::{RawSeq, CHANNELS, FRAMES, NTU_JOINTS, PERSONS};
use pstl::rng::PstlRng;
use rand::SeedableRng;

/// The NTU bones of the method file (section 1), 0-based (child, parent), without the
/// self-loop of joint 20.
const BONES: [(usize, usize); 24] = [
    (0, 1),
    (1, 20),
    (2, 20),
    (3, 2),
    (4, 20),
    (5, 4),
    (6, 5),
    (7, 6),
    (8, 20),
    (9, 8),
    (10, 9),
    (11, 10),
    (12, 0),
    (13, 12),
    (14, 13),
    (15, 14),
    (16, 0),
    (17, 16),
    (18, 17),
    (19, 18),
    (21, 22),
    (22, 7),
    (23, 24),
    (24, 11),
];

fn opts(classes: usize, train: usize, test: usize, seed: u64) -> SynthOpts {
    SynthOpts {
        classes,
        train_per_class: train,
        test_per_class: test,
        seed,
        frames: FRAMES,
    }
}

fn sample_len(frames: usize) -> usize {
    CHANNELS * frames * NTU_JOINTS * PERSONS
}

/// Value of a `(C, T, V, M)` buffer with `t_len` frames.
fn at(x: &[f32], t_len: usize, c: usize, t: usize, v: usize, m: usize) -> f32 {
    x[((c * t_len + t) * NTU_JOINTS + v) * PERSONS + m]
}

fn joint(raw: &RawSeq, t: usize, v: usize, m: usize) -> [f32; 3] {
    [0, 1, 2].map(|c| at(&raw.data, raw.frames, c, t, v, m))
}

fn dist(a: [f32; 3], b: [f32; 3]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn same_seed_same_bytes_for_any_thread_count_and_other_seed_differs() {
    let o = opts(DEFAULT_CLASSES, 4, 2, 7);
    let (tr1, te1) = generate(&o);
    let (tr2, te2) = generate(&o);
    assert_eq!(bits(&tr1.x), bits(&tr2.x));
    assert_eq!(bits(&te1.x), bits(&te2.x));
    assert_eq!((&tr1.y, &tr1.names), (&tr2.y, &tr2.names));

    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let (tr3, te3) = one.install(|| generate(&o));
    assert_eq!(
        bits(&tr1.x),
        bits(&tr3.x),
        "result depends on the thread count"
    );
    assert_eq!(
        bits(&te1.x),
        bits(&te3.x),
        "result depends on the thread count"
    );

    let (tr4, te4) = generate(&SynthOpts {
        seed: 8,
        ..o.clone()
    });
    assert_eq!(tr4.y, tr1.y);
    let len = sample_len(FRAMES);
    for (a, b) in tr1.x.chunks(len).zip(tr4.x.chunks(len)) {
        assert_ne!(bits(a), bits(b), "another seed gave an identical sample");
    }
    assert_ne!(bits(&te1.x), bits(&te4.x));
    // Train and test draw from different streams.
    assert_ne!(bits(&tr1.x[..len]), bits(&te1.x[..len]));

    // generate_raw is a pure function of the rng state.
    let a = generate_raw(3, &mut PstlRng::seed_from_u64(5));
    let b = generate_raw(3, &mut PstlRng::seed_from_u64(5));
    let c = generate_raw(3, &mut PstlRng::seed_from_u64(6));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

fn check_split(s: &SynthSplit, classes: usize, per_class: usize, frames: usize) {
    let n = classes * per_class;
    assert_eq!(s.len(), n);
    assert_eq!(s.x.len(), n * sample_len(frames));
    assert_eq!(s.names.len(), n);
    for c in 0..classes as i64 {
        assert_eq!(
            s.y.iter().filter(|&&y| y == c).count(),
            per_class,
            "class {c}"
        );
    }
    assert!(s.y.iter().all(|&y| (0..classes as i64).contains(&y)));
    let mut names = s.names.clone();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n, "sample names are not unique");
    assert!(s.x.iter().all(|v| v.is_finite()), "non-finite value");
}

#[test]
fn shapes_label_counts_and_finite_values() {
    let (tr, te) = generate(&opts(13, 5, 3, 1));
    check_split(&tr, 13, 5, FRAMES);
    check_split(&te, 13, 3, FRAMES);
    assert!(tr.names[0].contains("train") && te.names[0].contains("test"));

    let (tr, te) = generate(&SynthOpts {
        frames: 30,
        ..opts(3, 2, 1, 2)
    });
    check_split(&tr, 3, 2, 30);
    check_split(&te, 3, 1, 30);

    let (tr, te) = generate(&opts(MAX_CLASSES, 1, 0, 3));
    check_split(&tr, MAX_CLASSES, 1, FRAMES);
    assert!(te.is_empty());
}

#[test]
fn class_names_are_distinct_and_bounded() {
    let names = class_names(MAX_CLASSES);
    assert_eq!(names.len(), MAX_CLASSES);
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), MAX_CLASSES, "duplicate class names");
    assert_eq!(
        class_names(DEFAULT_CLASSES),
        names[..DEFAULT_CLASSES].to_vec()
    );
    assert_eq!(names[0], "wave right hand");
}

#[test]
#[should_panic(expected = "at most 60 classes")]
fn more_than_60_class_names_panic() {
    class_names(MAX_CLASSES + 1);
}

#[test]
#[should_panic(expected = "classes must be in 1..=60")]
fn zero_classes_panic() {
    generate(&opts(0, 1, 1, 1));
}

#[test]
fn every_class_gives_finite_raw_sequences_of_varied_length() {
    let mut lengths = Vec::new();
    for class in 0..MAX_CLASSES {
        let mut rng = PstlRng::seed_from_u64(100 + class as u64);
        for _ in 0..3 {
            let raw = generate_raw(class, &mut rng);
            assert!(
                (40..=150).contains(&raw.frames),
                "class {class}: {} frames",
                raw.frames
            );
            assert_eq!(raw.data.len(), sample_len(raw.frames));
            assert!(raw.data.iter().all(|v| v.is_finite()), "class {class}");
            lengths.push(raw.frames);
            // Person 0 is present in every frame (joint 0 not at the origin), so the
            // normalisation's valid length is the whole sequence.
            assert!((0..raw.frames).all(|t| joint(&raw, t, 0, 0) != [0.0; 3]));
            let second = (0..raw.frames).any(|t| joint(&raw, t, 0, 1) != [0.0; 3]);
            assert_eq!(second, is_two_person(class), "class {class}: person slot 1");
            let x = frame50(&raw, FRAMES);
            assert!(x.iter().all(|v| v.is_finite()), "class {class}");
        }
    }
    assert!(lengths.iter().min().unwrap() < &70 && lengths.iter().max().unwrap() > &120);
}

#[test]
fn normalised_person0_is_centred_on_joint20_with_shoulders_on_x() {
    let (tr, _) = generate(&opts(13, 3, 0, 11));
    for (i, x) in tr.x.chunks(sample_len(FRAMES)).enumerate() {
        for t in 0..FRAMES {
            for c in 0..CHANNELS {
                let v = at(x, FRAMES, c, t, 20, 0);
                assert!(
                    v.abs() < 1e-5,
                    "sample {i} frame {t}: joint 20 coord {c} = {v}"
                );
            }
            let dx = at(x, FRAMES, 0, t, 8, 0) - at(x, FRAMES, 0, t, 4, 0);
            let dz = at(x, FRAMES, 2, t, 8, 0) - at(x, FRAMES, 2, t, 4, 0);
            // Roughly on +x only: AimCLR picks one rotation sign per sequence, so frames
            // whose shoulder z has the other sign (a near-frontal view) keep twice their
            // small angle, and arccos(v_x / (|v| + 1e-4)) leaves a few mrad. Bound: twice
            // a 10 degree angle, tan(20°) = 0.36 (the ChaCha8 draws reach 0.30).
            assert!(
                dx > 0.2 && dz.abs() < 0.36 * dx,
                "sample {i} frame {t}: {dx} {dz}"
            );
        }
    }
}

/// Bone lengths of person `m` at frame `t`.
fn bone_lengths(raw: &RawSeq, t: usize, m: usize) -> Vec<f32> {
    BONES
        .iter()
        .map(|&(a, b)| dist(joint(raw, t, a, m), joint(raw, t, b, m)))
        .collect()
}

#[test]
fn bones_are_rigid_over_time_and_scale_with_the_body() {
    let reference = {
        let raw = generate_raw_with(0, &Nuisance::none(), &mut PstlRng::seed_from_u64(1));
        bone_lengths(&raw, 0, 0)
    };
    assert!(reference.iter().all(|&l| l > 0.02), "{reference:?}");
    let no_noise = Nuisance {
        noise_std: 0.0,
        ..Nuisance::default()
    };
    let mut thigh_ratio = Vec::new();
    for class in 0..MAX_CLASSES {
        let mut rng = PstlRng::seed_from_u64(500 + class as u64);
        let raw = generate_raw_with(class, &no_noise, &mut rng);
        let persons = if is_two_person(class) { 2 } else { 1 };
        for m in 0..persons {
            let first = bone_lengths(&raw, 0, m);
            for t in 1..raw.frames {
                for (k, (l, l0)) in bone_lengths(&raw, t, m).iter().zip(&first).enumerate() {
                    assert!(
                        (l - l0).abs() <= 1e-4 * l0.max(0.1),
                        "class {class} person {m} bone {k} frame {t}: {l} vs {l0}"
                    );
                }
            }
            // Within the body scale (0.85-1.15, bones +-2.5 x 3 %) of the rest lengths.
            for (k, (l, r)) in first.iter().zip(&reference).enumerate() {
                let ratio = l / r;
                assert!(
                    (0.78..=1.24).contains(&ratio),
                    "class {class} person {m} bone {k}: ratio {ratio}"
                );
            }
            thigh_ratio.push(first[13] / reference[13]);
        }
    }
    let lo = thigh_ratio.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = thigh_ratio.iter().copied().fold(0.0, f32::max);
    assert!(hi / lo > 1.2, "body size hardly varies: {lo} .. {hi}");

    // With the default 1 cm joint noise, the long bones still keep their length.
    let raw = generate_raw(5, &mut PstlRng::seed_from_u64(9));
    let first_clean = {
        let mut rng = PstlRng::seed_from_u64(9);
        bone_lengths(&generate_raw_with(5, &no_noise, &mut rng), 0, 0)
    };
    for (k, &(a, _)) in BONES.iter().enumerate() {
        if ![5, 6, 9, 10, 13, 14, 17, 18].contains(&a) {
            continue; // arms and legs: 0.25-0.41 m
        }
        let mut dev: Vec<f32> = (0..raw.frames)
            .map(|t| (bone_lengths(&raw, t, 0)[k] / first_clean[k] - 1.0).abs())
            .collect();
        dev.sort_by(f32::total_cmp);
        assert!(
            dev[dev.len() / 2] < 0.06,
            "bone {k}: median deviation {}",
            dev[dev.len() / 2]
        );
    }
}

/// Nearest-class-mean accuracy: class means of `train` features, predict `test`.
fn nearest_mean(train: &[Vec<f64>], ytr: &[i64], test: &[Vec<f64>], yte: &[i64]) -> f64 {
    let classes = ytr.iter().max().map_or(0, |&c| c as usize + 1);
    let d = train[0].len();
    let mut means = vec![vec![0.0; d]; classes];
    let mut count = vec![0.0; classes];
    for (f, &y) in train.iter().zip(ytr) {
        for (m, v) in means[y as usize].iter_mut().zip(f) {
            *m += v;
        }
        count[y as usize] += 1.0;
    }
    for (m, n) in means.iter_mut().zip(&count) {
        m.iter_mut().for_each(|v| *v /= n);
    }
    let sq = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| (p - q).powi(2)).sum::<f64>();
    let correct = test
        .iter()
        .zip(yte)
        .filter(|(f, &y)| {
            let best = (0..classes)
                .min_by(|&a, &b| sq(f, &means[a]).total_cmp(&sq(f, &means[b])))
                .unwrap();
            best as i64 == y
        })
        .count();
    correct as f64 / test.len() as f64
}

/// Mean y of all joints of person 0 over all frames (normalised sample).
fn mean_height(x: &[f32]) -> f64 {
    let mut sum = 0.0;
    for t in 0..FRAMES {
        for v in 0..NTU_JOINTS {
            sum += f64::from(at(x, FRAMES, 1, t, v, 0));
        }
    }
    sum / (FRAMES * NTU_JOINTS) as f64
}

/// Sum over frames and joints of the squared frame-to-frame displacement of person 0.
fn motion_energy(x: &[f32]) -> f64 {
    let mut e = 0.0;
    for t in 0..FRAMES - 1 {
        for v in 0..NTU_JOINTS {
            for c in 0..CHANNELS {
                let d = at(x, FRAMES, c, t + 1, v, 0) - at(x, FRAMES, c, t, v, 0);
                e += f64::from(d * d);
            }
        }
    }
    e
}

#[test]
fn classes_differ_by_motion_not_by_a_trivial_statistic() {
    let (tr, te) = generate(&opts(DEFAULT_CLASSES, 60, 30, 3));
    let len = sample_len(FRAMES);
    let feats = |s: &SynthSplit, f: &dyn Fn(&[f32]) -> Vec<f64>| -> Vec<Vec<f64>> {
        s.x.chunks(len).map(f).collect()
    };
    let acc =
        |f: &dyn Fn(&[f32]) -> Vec<f64>| nearest_mean(&feats(&tr, f), &tr.y, &feats(&te, f), &te.y);
    let height = acc(&|x| vec![mean_height(x)]);
    let energy = acc(&|x| vec![motion_energy(x)]);
    let full = acc(&|x| x.iter().map(|&v| f64::from(v)).collect());
    eprintln!("nearest class mean: mean height {height:.3}, motion energy {energy:.3}, full sequence {full:.3}");
    let chance = 1.0 / DEFAULT_CLASSES as f64;
    assert!(height < 0.4, "mean height separates the classes: {height}");
    assert!(
        energy < 0.4,
        "motion energy separates the classes: {energy}"
    );
    assert!(
        full > 0.6,
        "the classes are not separable by their motion: {full}"
    );
    assert!(full > height.max(energy) + 0.3);
    // ... and yet not trivially easy either: the wave / circle pair needs the temporal
    // pattern, which a class mean averages away.
    assert!(
        full < 0.97,
        "full-sequence nearest mean is too easy: {full}"
    );
    assert!(height > chance * 0.5 && energy > chance * 0.5);
}
