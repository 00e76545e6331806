//! The procedural synthetic skeleton-action dataset: a stand-in for NTU RGB+D that needs
//! no download, so that pretraining, the downstream protocols and the tests run anywhere.
//!
//! A skeleton on the NTU 25-joint layout (bone lengths of an adult as Kinect v2 measures
//! them; every bone of the method file's list is a rigid segment, so bone lengths stay
//! constant over time) is animated by forward kinematics from joint-angle curves:
//! spine bend / lean / twist, neck, per arm clavicle elevation, shoulder
//! flexion / abduction / horizontal rotation / twist, elbow and wrist, per leg hip
//! flexion / abduction, knee and ankle. The feet are kept on the floor (the pelvis height
//! follows from the lowest foot or knee) unless a motion lifts the body.
//!
//! Each class is one motion program ([`class_names`] lists the 60 available; the default
//! 10, all single-person, are the first 10). Classes come in groups that share limbs, pose
//! and motion energy and differ only in the temporal pattern, the motion plane or the
//! side: wave vs circle with the same hand, sit down vs stand up (one is the other played
//! backwards), raise the arms forward vs sideways, kick with the right vs the left leg
//! (the mirror image of each other, which the flip augmentation maps onto one another).
//! So no single global statistic (mean height, motion energy) tells the classes apart,
//! while the motion does. Classes 10-12 and 45-50 are two-person interactions (the second
//! person fills slot 1; which performer takes slot 0 is random).
//!
//! Nuisances, per sample: body size (0.85-1.15) and bone proportions, amplitude, speed
//! (number of cycles per sequence), phase, onset and duration of one-shot motions,
//! a smooth time warp, idle sway, rest-pose style, viewpoint rotation about the vertical
//! (+-45 degrees), camera tilt, position, per-joint Gaussian noise (1 cm) and the raw
//! length (40-150 frames). [`generate`] then applies AimCLR's frame-50 normalisation
//! ([`crate::data::normalize::frame50`]), as for the real data.
//!
//! Coordinates follow the Kinect camera frame: metres, x to the performer's right when
//! facing the camera, y up, z away from the camera (performers stand 2.5-4 m away).
//!
//! Reproducibility: every sample has its own [`PstlRng`] seeded from (seed, split, index),
//! so the output is the same for any number of rayon threads.

use std::f32::consts::{FRAC_1_SQRT_2, PI, TAU};

use crate::rng::PstlRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use crate::data::normalize::frame50;
use crate::data::{RawSeq, CHANNELS, FRAMES, NTU_JOINTS, PERSONS};

/// Number of distinct classes the generator knows.
pub const MAX_CLASSES: usize = 60;
/// The default number of classes (the first [`DEFAULT_CLASSES`] of [`class_names`]).
pub const DEFAULT_CLASSES: usize = 10;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthOpts {
    /// Number of classes, 1..=[`MAX_CLASSES`] (default 10).
    pub classes: usize,
    /// Training samples per class.
    pub train_per_class: usize,
    /// Test samples per class.
    pub test_per_class: usize,
    /// Generator seed.
    pub seed: u64,
    /// Frames after normalisation (50).
    pub frames: usize,
}

impl Default for SynthOpts {
    fn default() -> Self {
        SynthOpts {
            classes: DEFAULT_CLASSES,
            train_per_class: 200,
            test_per_class: 50,
            seed: 1,
            frames: FRAMES,
        }
    }
}

/// One generated split, normalised.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SynthSplit {
    /// `(N, 3, frames, 25, 2)` contiguous.
    pub x: Vec<f32>,
    /// Labels `0..classes`.
    pub y: Vec<i64>,
    /// Sample names, `synth_{split}_{index:06}_a{label + 1:03}`.
    pub names: Vec<String>,
}

impl SynthSplit {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// True when the split holds no sample.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// The nuisance ranges of [`generate_raw_with`] ([`Default`] = the dataset's; [`Nuisance::none`]
/// turns every one off, for tests of the kinematics).
#[derive(Debug, Clone, PartialEq)]
pub struct Nuisance {
    /// Raw length range in frames, inclusive.
    pub frames: (usize, usize),
    /// Body scale range.
    pub scale: (f32, f32),
    /// Relative standard deviation of each bone's length around `scale` (clamped at 2.5 sd).
    pub bone_jitter: f32,
    /// Motion amplitude factor range.
    pub amplitude: (f32, f32),
    /// Viewpoint rotation about the vertical, +- degrees.
    pub view_yaw_deg: f32,
    /// Camera tilt about x and z, +- degrees.
    pub tilt_deg: f32,
    /// Random position of the performer(s).
    pub offset: bool,
    /// Per-joint, per-coordinate Gaussian noise in metres.
    pub noise_std: f32,
    /// Smooth time-warp strength, 0..1 (0: constant speed).
    pub time_warp: f32,
    /// Idle sway and rest-pose style variation.
    pub style: bool,
}

impl Default for Nuisance {
    fn default() -> Self {
        Nuisance {
            frames: (40, 150),
            scale: (0.85, 1.15),
            bone_jitter: 0.03,
            amplitude: (0.75, 1.25),
            view_yaw_deg: 45.0,
            tilt_deg: 6.0,
            offset: true,
            noise_std: 0.01,
            time_warp: 0.35,
            style: true,
        }
    }
}

impl Nuisance {
    /// No nuisance: 90 frames, unit scale and amplitude, frontal view, no noise.
    pub fn none() -> Self {
        Nuisance {
            frames: (90, 90),
            scale: (1.0, 1.0),
            bone_jitter: 0.0,
            amplitude: (1.0, 1.0),
            view_yaw_deg: 0.0,
            tilt_deg: 0.0,
            offset: false,
            noise_std: 0.0,
            time_warp: 0.0,
            style: false,
        }
    }
}

/// The first `classes` class names.
///
/// # Panics
/// When `classes > MAX_CLASSES`.
pub fn class_names(classes: usize) -> Vec<&'static str> {
    assert!(
        classes <= MAX_CLASSES,
        "the synthetic dataset has at most {MAX_CLASSES} classes, asked for {classes}"
    );
    CLASSES[..classes].iter().map(|c| c.name).collect()
}

/// True when `class` is a two-person interaction (slot 1 filled).
///
/// # Panics
/// When `class >= MAX_CLASSES`.
pub fn is_two_person(class: usize) -> bool {
    CLASSES[class].motion.two_person()
}

/// Generates the train and test splits, normalised to `opts.frames` frames.
///
/// Samples are ordered class-major (`index / per_class` is the label). Sample `i` of split
/// `s` (0 train, 1 test) draws from its own RNG seeded from `(opts.seed, s, i)`.
///
/// # Panics
/// When `opts.classes` is 0 or above [`MAX_CLASSES`].
pub fn generate(opts: &SynthOpts) -> (SynthSplit, SynthSplit) {
    assert!(
        (1..=MAX_CLASSES).contains(&opts.classes),
        "classes must be in 1..={MAX_CLASSES}, got {}",
        opts.classes
    );
    let train = generate_split(opts, 0, opts.train_per_class);
    let test = generate_split(opts, 1, opts.test_per_class);
    (train, test)
}

fn generate_split(opts: &SynthOpts, split: u64, per_class: usize) -> SynthSplit {
    let n = opts.classes * per_class;
    let sample_len = CHANNELS * opts.frames * NTU_JOINTS * PERSONS;
    let label = |i: usize| i / per_class.max(1);
    let mut x = vec![0.0f32; n * sample_len];
    if sample_len > 0 {
        x.par_chunks_mut(sample_len)
            .enumerate()
            .for_each(|(i, out)| {
                let mut rng = PstlRng::seed_from_u64(sample_seed(opts.seed, split, i as u64));
                let raw = generate_raw(label(i), &mut rng);
                out.copy_from_slice(&frame50(&raw, opts.frames));
            });
    }
    let tag = if split == 0 { "train" } else { "test" };
    SynthSplit {
        x,
        y: (0..n).map(|i| label(i) as i64).collect(),
        names: (0..n)
            .map(|i| format!("synth_{tag}_{i:06}_a{:03}", label(i) + 1))
            .collect(),
    }
}

/// SplitMix64 of (seed, split, index): decorrelated per-sample seeds.
fn sample_seed(seed: u64, split: u64, index: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(split.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(index.wrapping_add(1).wrapping_mul(0x94D0_49BB_1331_11EB));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One raw sequence of `class` with the default nuisances (before normalisation).
///
/// # Panics
/// When `class >= MAX_CLASSES`.
pub fn generate_raw(class: usize, rng: &mut impl Rng) -> RawSeq {
    generate_raw_with(class, &Nuisance::default(), rng)
}

/// One raw sequence of `class` with the given nuisance ranges.
///
/// The draws from `rng` happen in a fixed order that does not depend on `class`.
///
/// # Panics
/// When `class >= MAX_CLASSES` or a range is empty.
pub fn generate_raw_with(class: usize, nuisance: &Nuisance, rng: &mut impl Rng) -> RawSeq {
    assert!(class < MAX_CLASSES, "class {class} >= {MAX_CLASSES}");
    let spec = &CLASSES[class];
    let nu = nuisance;
    let frames = rng.gen_range(nu.frames.0..=nu.frames.1).max(1);
    let style = Style::sample(spec.motion, nu, rng);
    let scales = [uniform(rng, nu.scale), uniform(rng, nu.scale)];
    let bodies = scales.map(|scale| Body::sample(scale, nu.bone_jitter, rng));

    // Scene: facing (two persons face each other across x), viewpoint, tilt, offset.
    let two = spec.motion.two_person();
    let gap = spec.motion.distance() + uniform(rng, (-0.08, 0.08));
    let swap = rng.gen_bool(0.5);
    let view = ry(uniform(rng, (-1.0, 1.0)) * nu.view_yaw_deg.to_radians());
    let tilt_x = uniform(rng, (-1.0, 1.0)) * nu.tilt_deg.to_radians();
    let tilt_z = uniform(rng, (-1.0, 1.0)) * nu.tilt_deg.to_radians();
    let tilt = mm(rx(tilt_x), rz(tilt_z));
    let offset = if nu.offset {
        [
            uniform(rng, (-0.6, 0.6)),
            uniform(rng, (-1.0, -0.4)),
            uniform(rng, (2.5, 4.0)),
        ]
    } else {
        [0.0, 0.0, 3.0]
    };
    let place = |who: usize| -> (M3, V3) {
        if !two {
            return (ry(0.0), [0.0; 3]);
        }
        // Actor at -x facing +x, partner at +x facing -x (forward is -z in body frame).
        let side = if who == 0 { -1.0 } else { 1.0 };
        (ry(side * PI / 2.0), [side * gap / 2.0, 0.0, 0.0])
    };
    let noise = Normal::new(0.0f32, nu.noise_std.max(0.0)).expect("finite noise std");

    let mut data = vec![0.0f32; CHANNELS * frames * NTU_JOINTS * PERSONS];
    let persons = if two { 2 } else { 1 };
    for t in 0..frames {
        let u = if frames > 1 {
            t as f32 / (frames - 1) as f32
        } else {
            0.0
        };
        let u = if spec.reverse { 1.0 - u } else { u };
        let poses = spec.motion.poses(&style, style.warp(u));
        for who in 0..persons {
            let pose = if spec.mirror {
                poses[who].mirrored()
            } else {
                poses[who]
            };
            let joints = skeleton(&bodies[who], &pose);
            let (facing, at) = place(who);
            let slot = if two && swap { 1 - who } else { who };
            for (v, j) in joints.iter().enumerate() {
                let p = add(mv(view, add(at, mv(facing, *j))), offset);
                let p = mv(tilt, p);
                for (c, value) in p.iter().enumerate() {
                    let jitter = if nu.noise_std > 0.0 {
                        noise.sample(rng)
                    } else {
                        0.0
                    };
                    data[((c * frames + t) * NTU_JOINTS + v) * PERSONS + slot] = value + jitter;
                }
            }
        }
    }
    RawSeq { frames, data }
}

fn uniform(rng: &mut impl Rng, (lo, hi): (f32, f32)) -> f32 {
    if hi > lo {
        rng.gen_range(lo..hi)
    } else {
        lo
    }
}

// ---------------------------------------------------------------------------------------
// Small 3-D algebra.

type V3 = [f32; 3];
type M3 = [[f32; 3]; 3];

fn rx(a: f32) -> M3 {
    let (s, c) = a.sin_cos();
    [[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]]
}

fn ry(a: f32) -> M3 {
    let (s, c) = a.sin_cos();
    [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
}

fn rz(a: f32) -> M3 {
    let (s, c) = a.sin_cos();
    [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
}

fn mm(a: M3, b: M3) -> M3 {
    let mut r = [[0.0; 3]; 3];
    for (i, row) in r.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            *cell = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    r
}

fn mv(a: M3, v: V3) -> V3 {
    [
        a[0][0] * v[0] + a[0][1] * v[1] + a[0][2] * v[2],
        a[1][0] * v[0] + a[1][1] * v[1] + a[1][2] * v[2],
        a[2][0] * v[0] + a[2][1] * v[1] + a[2][2] * v[2],
    ]
}

fn add(a: V3, b: V3) -> V3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

fn mirror_x(v: V3) -> V3 {
    [-v[0], v[1], v[2]]
}

fn deg(x: f32) -> f32 {
    x.to_radians()
}

fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

/// Smoothstep on `[0, 1]`, clamped outside.
fn smooth(x: f32) -> f32 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

// ---------------------------------------------------------------------------------------
// Body and forward kinematics.

/// Bone lengths (metres) of one performer; the right side is given, the left mirrors it.
#[derive(Debug, Clone)]
struct Body {
    pelvis_spine: f32,
    spine_upper: f32,
    neck: f32,
    head: f32,
    /// Right shoulder relative to the spine shoulder, torso frame.
    shoulder: V3,
    upper_arm: f32,
    forearm: f32,
    hand: f32,
    tip: f32,
    /// Right thumb relative to the hand, hand frame (palm facing the body, thumb forward).
    thumb: V3,
    /// Right hip relative to the spine base, pelvis frame.
    hip: V3,
    thigh: f32,
    shank: f32,
    /// Foot joint relative to the ankle, foot frame.
    foot: V3,
}

impl Body {
    fn sample(scale: f32, jitter: f32, rng: &mut impl Rng) -> Body {
        let mut f = |x: f32| {
            let z: f32 = if jitter > 0.0 {
                rng.sample::<f32, _>(rand_distr::StandardNormal)
                    .clamp(-2.5, 2.5)
            } else {
                0.0
            };
            x * scale * (1.0 + jitter * z)
        };
        let v = |x: V3, f: &mut dyn FnMut(f32) -> f32| {
            let k = f(1.0);
            [x[0] * k, x[1] * k, x[2] * k]
        };
        Body {
            pelvis_spine: f(0.27),
            spine_upper: f(0.22),
            neck: f(0.07),
            head: f(0.13),
            shoulder: v([0.16, -0.03, 0.0], &mut f),
            upper_arm: f(0.26),
            forearm: f(0.24),
            hand: f(0.07),
            tip: f(0.055),
            thumb: v([-0.01, -0.02, -0.03], &mut f),
            hip: v([0.075, -0.04, 0.0], &mut f),
            thigh: f(0.38),
            shank: f(0.37),
            foot: v([0.0, -0.05, -0.09], &mut f),
        }
    }
}

/// Arm angles (radians) in the right arm's convention; the left arm mirrors them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Arm {
    /// Shoulder flexion: + raises the arm forward.
    flex: f32,
    /// Shoulder abduction: + raises the arm sideways.
    abd: f32,
    /// Horizontal rotation about the vertical: + outward, - across the body.
    horiz: f32,
    /// Rotation about the upper arm: - turns the elbow's bending plane from forward to up
    /// when the arm is abducted.
    twist: f32,
    /// Elbow flexion, >= 0.
    elbow: f32,
    /// Wrist flexion.
    wrist: f32,
    /// Clavicle elevation (raises the shoulder joint).
    elev: f32,
}

impl Arm {
    fn lerp(self, o: Arm, t: f32) -> Arm {
        Arm {
            flex: lerp(self.flex, o.flex, t),
            abd: lerp(self.abd, o.abd, t),
            horiz: lerp(self.horiz, o.horiz, t),
            twist: lerp(self.twist, o.twist, t),
            elbow: lerp(self.elbow, o.elbow, t),
            wrist: lerp(self.wrist, o.wrist, t),
            elev: lerp(self.elev, o.elev, t),
        }
    }
}

/// Leg angles (radians) in the right leg's convention.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Leg {
    /// Hip flexion: + swings the thigh forward.
    flex: f32,
    /// Hip abduction: + outward.
    abd: f32,
    /// Knee flexion, >= 0 (shank backward).
    knee: f32,
    /// Ankle angle on top of the one that keeps the foot level.
    ankle: f32,
}

/// A whole-body pose. Index 0 of `arms` / `legs` is the right side, 1 the left.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Pose {
    /// Whole-body rotation about the vertical.
    yaw: f32,
    /// Height of the body above the floor contact (jumps, tiptoes), metres.
    lift: f32,
    /// Spine flexion: + bends forward.
    bend: f32,
    /// Lateral bend: + toward the right.
    lean: f32,
    /// Axial rotation of the spine: + brings the right shoulder forward.
    twist: f32,
    /// Neck flexion: + nods forward.
    nod: f32,
    arms: [Arm; 2],
    legs: [Leg; 2],
}

const R: usize = 0;
const L: usize = 1;

impl Pose {
    /// The left-right mirror image (what the flip augmentation produces).
    fn mirrored(self) -> Pose {
        Pose {
            yaw: -self.yaw,
            lean: -self.lean,
            twist: -self.twist,
            arms: [self.arms[L], self.arms[R]],
            legs: [self.legs[L], self.legs[R]],
            ..self
        }
    }
}

/// NTU indices of (shoulder, elbow, wrist, hand, hand tip, thumb), right then left.
const ARM_JOINTS: [[usize; 6]; 2] = [[8, 9, 10, 11, 23, 24], [4, 5, 6, 7, 21, 22]];
/// NTU indices of (hip, knee, ankle, foot), right then left.
const LEG_JOINTS: [[usize; 4]; 2] = [[16, 17, 18, 19], [12, 13, 14, 15]];
/// Joints that can touch the floor: knees, ankles, feet.
const FLOOR_JOINTS: [usize; 6] = [13, 14, 15, 17, 18, 19];

/// Right-arm chain relative to the shoulder, torso frame: elbow, wrist, hand, tip, thumb.
fn arm_chain(b: &Body, a: &Arm) -> [V3; 5] {
    let rs = mm(mm(mm(ry(-a.horiz), rz(a.abd)), rx(a.flex)), ry(a.twist));
    let elbow = mv(rs, [0.0, -b.upper_arm, 0.0]);
    let re = mm(rs, rx(a.elbow));
    let wrist = add(elbow, mv(re, [0.0, -b.forearm, 0.0]));
    let rw = mm(re, rx(a.wrist));
    let hand = add(wrist, mv(rw, [0.0, -b.hand, 0.0]));
    let tip = add(hand, mv(rw, [0.0, -b.tip, 0.0]));
    let thumb = add(hand, mv(rw, b.thumb));
    [elbow, wrist, hand, tip, thumb]
}

/// Right-leg chain relative to the hip, pelvis frame: knee, ankle, foot.
fn leg_chain(b: &Body, l: &Leg) -> [V3; 3] {
    let rh = mm(rz(l.abd), rx(l.flex));
    let knee = mv(rh, [0.0, -b.thigh, 0.0]);
    let rk = mm(rh, rx(-l.knee));
    let ankle = add(knee, mv(rk, [0.0, -b.shank, 0.0]));
    let ra = mm(rk, rx(l.knee - l.flex + l.ankle));
    let foot = add(ankle, mv(ra, b.foot));
    [knee, ankle, foot]
}

/// Joint positions of one pose in the body frame (x right, y up from the floor, forward
/// -z). Every NTU bone is a rigid offset in some segment frame, so bone lengths are exact.
fn skeleton(b: &Body, p: &Pose) -> [V3; NTU_JOINTS] {
    let mut j = [[0.0f32; 3]; NTU_JOINTS];
    let root = ry(p.yaw);
    let half = mm(mm(rx(-p.bend * 0.5), rz(-p.lean * 0.5)), ry(p.twist * 0.5));
    let r1 = mm(root, half);
    let rt = mm(r1, half);
    j[1] = mv(r1, [0.0, b.pelvis_spine, 0.0]);
    j[20] = add(j[1], mv(rt, [0.0, b.spine_upper, 0.0]));
    let rn = mm(rt, rx(-p.nod));
    j[2] = add(j[20], mv(rn, [0.0, b.neck, 0.0]));
    j[3] = add(j[2], mv(mm(rn, rx(-p.nod * 0.5)), [0.0, b.head, 0.0]));
    for side in [R, L] {
        let m = |v: V3| if side == R { v } else { mirror_x(v) };
        let arm = &p.arms[side];
        let ids = ARM_JOINTS[side];
        let sh = add(j[20], mv(rt, m(mv(rz(arm.elev), b.shoulder))));
        j[ids[0]] = sh;
        for (k, q) in arm_chain(b, arm).into_iter().enumerate() {
            j[ids[k + 1]] = add(sh, mv(rt, m(q)));
        }
        let leg = &p.legs[side];
        let ids = LEG_JOINTS[side];
        let hip = mv(root, m(b.hip));
        j[ids[0]] = hip;
        for (k, q) in leg_chain(b, leg).into_iter().enumerate() {
            j[ids[k + 1]] = add(hip, mv(root, m(q)));
        }
    }
    let floor = FLOOR_JOINTS
        .iter()
        .map(|&k| j[k][1])
        .fold(f32::INFINITY, f32::min);
    let dy = p.lift - floor;
    for q in &mut j {
        q[1] += dy;
    }
    j
}

// ---------------------------------------------------------------------------------------
// Per-sample style and timing.

/// Per-sample draws shared by all motion programs.
#[derive(Debug, Clone)]
struct Style {
    /// Amplitude factor.
    amp: f32,
    /// Cycles over the sequence (periodic parts).
    cycles: f32,
    /// Phase at the start, in cycles.
    phase0: f32,
    /// One-shot window `[lo, hi]` in (warped) sequence time.
    lo: f32,
    hi: f32,
    /// Time-warp strength.
    warp: f32,
    /// Rest pose of each person.
    rest: [Pose; 2],
    /// Idle sway: amplitude (rad), frequencies (cycles per sequence), phases.
    sway: f32,
    sway_freq: [f32; 2],
    sway_phase: [f32; 2],
}

impl Style {
    fn sample(motion: Motion, nu: &Nuisance, rng: &mut impl Rng) -> Style {
        let (cycles, window) = motion.timing();
        let amp = uniform(rng, nu.amplitude);
        let cycles = uniform(rng, cycles);
        let phase0 = rng.gen::<f32>();
        let center = uniform(rng, (0.4, 0.6));
        let width = uniform(rng, window);
        let warp = uniform(rng, (-1.0, 1.0)) * nu.time_warp;
        let rest = [rest_pose(nu.style, rng), rest_pose(nu.style, rng)];
        let on = if nu.style { 1.0 } else { 0.0 };
        Style {
            amp,
            cycles,
            phase0,
            lo: center - width / 2.0,
            hi: center + width / 2.0,
            warp,
            rest,
            sway: on * uniform(rng, (deg(1.0), deg(4.0))),
            sway_freq: [uniform(rng, (0.3, 1.2)), uniform(rng, (0.3, 1.2))],
            sway_phase: [rng.gen::<f32>(), rng.gen::<f32>()],
        }
    }

    /// Smooth monotone time warp of `[0, 1]` onto itself.
    fn warp(&self, u: f32) -> f32 {
        u + self.warp * (TAU * u).sin() / TAU
    }

    /// Rest pose of person `who` with its idle sway at time `w`.
    fn rest_at(&self, who: usize, w: f32) -> Pose {
        let mut p = self.rest[who];
        let s = |k: usize| (TAU * (self.sway_freq[k] * w + self.sway_phase[k])).sin();
        p.lean += self.sway * s(0);
        p.twist += 1.5 * self.sway * s(1);
        p.nod += 0.5 * self.sway * s(1);
        p
    }

    /// Phase in cycles.
    fn phase(&self, w: f32) -> f32 {
        self.phase0 + self.cycles * w
    }

    /// `sin` of the phase.
    fn osc(&self, w: f32) -> f32 {
        (TAU * self.phase(w)).sin()
    }

    /// `0.5 - 0.5 cos` of the phase: 0 at rest, 1 at the far end of a cycle.
    fn raised(&self, w: f32) -> f32 {
        0.5 - 0.5 * (TAU * self.phase(w)).cos()
    }

    /// Within-pulse time `0..1` when the current cycle is in its first `duty` part.
    fn pulse(&self, w: f32, duty: f32) -> Option<f32> {
        let f = self.phase(w).rem_euclid(1.0);
        (f < duty).then(|| f / duty)
    }

    /// One-shot progress 0 -> 1 over the window.
    fn ramp(&self, w: f32) -> f32 {
        smooth((w - self.lo) / (self.hi - self.lo))
    }

    /// Out, hold, back: rises over the first quarter of the window, falls over the last.
    fn env(&self, w: f32) -> f32 {
        let q = 0.25 * (self.hi - self.lo);
        smooth((w - self.lo) / q) * smooth((self.hi - w) / q)
    }

    /// Out and straight back: `sin^2` over the window.
    fn bump(&self, w: f32) -> f32 {
        let x = ((w - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0);
        (PI * x).sin().powi(2)
    }

    /// Amplitude with a third of the variation, for motions bounded by anatomy.
    fn soft_amp(&self) -> f32 {
        1.0 + (self.amp - 1.0) / 3.0
    }
}

/// A standing rest pose with some personal style.
fn rest_pose(style: bool, rng: &mut impl Rng) -> Pose {
    let mut r = |lo: f32, hi: f32, mid: f32| {
        if style {
            uniform(rng, (deg(lo), deg(hi)))
        } else {
            deg(mid)
        }
    };
    let mut arm = || Arm {
        flex: r(-3.0, 8.0, 2.0),
        abd: r(5.0, 14.0, 8.0),
        horiz: 0.0,
        twist: r(-10.0, 10.0, 0.0),
        elbow: r(5.0, 25.0, 12.0),
        wrist: r(-5.0, 10.0, 0.0),
        elev: 0.0,
    };
    let arms = [arm(), arm()];
    let mut leg = || Leg {
        flex: r(-2.0, 4.0, 0.0),
        abd: r(2.0, 7.0, 4.0),
        knee: r(0.0, 8.0, 3.0),
        ankle: 0.0,
    };
    let legs = [leg(), leg()];
    Pose {
        bend: r(-3.0, 6.0, 0.0),
        nod: r(-5.0, 10.0, 0.0),
        arms,
        legs,
        ..Pose::default()
    }
}

// ---------------------------------------------------------------------------------------
// Motion programs.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Motion {
    Wave,
    Circle,
    Punch,
    Kick,
    SitDown,
    RaiseForward,
    RaiseSideways,
    Squat,
    Handshake,
    Push,
    Hug,
    Clap,
    JumpingJack,
    WalkInPlace,
    Bow,
    ReachHigh,
    Throw,
    Drink,
    PhoneCall,
    Salute,
    Point,
    SideBend,
    TorsoTwist,
    TouchToes,
    JumpUp,
    Hop,
    Nod,
    ArmCircles,
    HandsOnHips,
    CrossArms,
    RaiseArm,
    HighFive,
    PunchOther,
    KickOther,
    PointAtOther,
    PatOnBack,
    GiveObject,
    Stretch,
    Shrug,
    ScratchHead,
    Lunge,
    LegSideRaise,
    KneelDown,
    PickUp,
}

struct ClassSpec {
    name: &'static str,
    motion: Motion,
    /// Played with left and right swapped.
    mirror: bool,
    /// Played backwards in time.
    reverse: bool,
}

const fn class(name: &'static str, motion: Motion) -> ClassSpec {
    ClassSpec {
        name,
        motion,
        mirror: false,
        reverse: false,
    }
}

const fn mirrored(name: &'static str, motion: Motion) -> ClassSpec {
    ClassSpec {
        name,
        motion,
        mirror: true,
        reverse: false,
    }
}

const fn reversed(name: &'static str, motion: Motion) -> ClassSpec {
    ClassSpec {
        name,
        motion,
        mirror: false,
        reverse: true,
    }
}

use Motion as M;

/// The class table; the first [`DEFAULT_CLASSES`] are the default dataset.
const CLASSES: [ClassSpec; MAX_CLASSES] = [
    class("wave right hand", M::Wave),
    class("circle right hand", M::Circle),
    class("punch right", M::Punch),
    class("kick right leg", M::Kick),
    mirrored("kick left leg", M::Kick),
    class("sit down", M::SitDown),
    reversed("stand up", M::SitDown),
    class("raise arms forward", M::RaiseForward),
    class("raise arms sideways", M::RaiseSideways),
    class("squat", M::Squat),
    // 10..: more, starting with two-person interactions.
    class("handshake", M::Handshake),
    class("push other person", M::Push),
    class("hug", M::Hug),
    mirrored("wave left hand", M::Wave),
    mirrored("circle left hand", M::Circle),
    mirrored("punch left", M::Punch),
    class("clap", M::Clap),
    class("jumping jack", M::JumpingJack),
    class("walk in place", M::WalkInPlace),
    class("bow", M::Bow),
    class("reach high right hand", M::ReachHigh),
    mirrored("reach high left hand", M::ReachHigh),
    class("throw right hand", M::Throw),
    mirrored("throw left hand", M::Throw),
    class("drink right hand", M::Drink),
    mirrored("drink left hand", M::Drink),
    class("phone call right hand", M::PhoneCall),
    mirrored("phone call left hand", M::PhoneCall),
    class("salute", M::Salute),
    class("point forward right hand", M::Point),
    mirrored("point forward left hand", M::Point),
    class("side bend", M::SideBend),
    class("torso twist", M::TorsoTwist),
    class("touch toes", M::TouchToes),
    class("jump up", M::JumpUp),
    class("hop on right leg", M::Hop),
    mirrored("hop on left leg", M::Hop),
    class("nod head", M::Nod),
    class("arm circles", M::ArmCircles),
    class("put hands on hips", M::HandsOnHips),
    reversed("take hands off hips", M::HandsOnHips),
    class("cross arms", M::CrossArms),
    reversed("uncross arms", M::CrossArms),
    class("raise right arm", M::RaiseArm),
    reversed("lower right arm", M::RaiseArm),
    class("high five", M::HighFive),
    class("punch other person", M::PunchOther),
    class("kick other person", M::KickOther),
    class("point at other person", M::PointAtOther),
    class("pat on back", M::PatOnBack),
    class("give object", M::GiveObject),
    class("stretch overhead", M::Stretch),
    class("shrug", M::Shrug),
    class("scratch head", M::ScratchHead),
    class("lunge right leg", M::Lunge),
    mirrored("lunge left leg", M::Lunge),
    class("raise right leg sideways", M::LegSideRaise),
    mirrored("raise left leg sideways", M::LegSideRaise),
    class("kneel down", M::KneelDown),
    class("pick up", M::PickUp),
];

fn arm(flex: f32, abd: f32, horiz: f32, twist: f32, elbow: f32) -> Arm {
    Arm {
        flex: deg(flex),
        abd: deg(abd),
        horiz: deg(horiz),
        twist: deg(twist),
        elbow: deg(elbow),
        wrist: 0.0,
        elev: 0.0,
    }
}

/// Boxing guard: fists in front of the chin.
fn guard() -> Arm {
    Arm {
        elev: deg(4.0),
        ..arm(40.0, 20.0, -15.0, -30.0, 120.0)
    }
}

/// Punch profile within a pulse: fast out, slower back.
fn punch_profile(f: f32) -> f32 {
    if f < 0.35 {
        smooth(f / 0.35)
    } else {
        1.0 - smooth((f - 0.35) / 0.65)
    }
}

impl Motion {
    fn two_person(self) -> bool {
        matches!(
            self,
            M::Handshake
                | M::Push
                | M::Hug
                | M::HighFive
                | M::PunchOther
                | M::KickOther
                | M::PointAtOther
                | M::PatOnBack
                | M::GiveObject
        )
    }

    /// Distance between the two pelvises (two-person motions).
    fn distance(self) -> f32 {
        match self {
            M::Hug => 0.45,
            M::PatOnBack => 0.6,
            M::PointAtOther => 1.6,
            M::KickOther => 1.1,
            _ => 0.85,
        }
    }

    /// (cycles range, one-shot window width range).
    fn timing(self) -> ((f32, f32), (f32, f32)) {
        match self {
            M::Wave | M::Circle | M::ScratchHead | M::Handshake | M::PatOnBack => {
                ((2.0, 4.0), (0.75, 1.05))
            }
            M::Punch | M::PunchOther | M::Clap | M::ArmCircles | M::TorsoTwist => {
                ((1.5, 3.5), (0.8, 1.1))
            }
            M::Kick | M::KickOther | M::JumpUp => ((1.0, 2.5), (0.8, 1.1)),
            M::WalkInPlace | M::Hop | M::JumpingJack | M::SideBend => ((1.5, 3.5), (0.8, 1.1)),
            M::RaiseForward | M::RaiseSideways | M::Squat | M::Nod | M::Shrug => {
                ((1.0, 2.5), (0.8, 1.1))
            }
            M::LegSideRaise => ((1.0, 2.5), (0.8, 1.1)),
            M::SitDown | M::HandsOnHips | M::CrossArms | M::RaiseArm | M::KneelDown => {
                ((1.0, 1.0), (0.25, 0.55))
            }
            M::PhoneCall | M::Throw | M::Push => ((1.0, 1.0), (0.35, 0.65)),
            _ => ((1.0, 1.0), (0.45, 0.85)),
        }
    }

    /// The pose of the actor and the partner (unused for one person) at warped time `w`.
    fn poses(self, s: &Style, w: f32) -> [Pose; 2] {
        let mut a = s.rest_at(0, w);
        let mut b = s.rest_at(1, w);
        match self {
            M::Wave => {
                let o = s.osc(w);
                let t = Arm {
                    wrist: deg(15.0) * o,
                    elev: deg(6.0),
                    ..arm(10.0, 85.0, 0.0, -90.0, 90.0 + s.amp * 30.0 * o)
                };
                a.arms[R] = a.arms[R].lerp(t, s.env(w));
            }
            M::Circle => {
                // Same arm and energy as the wave; the forearm sweeps a cone instead.
                let (sn, cs) = (TAU * s.phase(w)).sin_cos();
                let r = s.amp * 30.0 * FRAC_1_SQRT_2;
                let t = Arm {
                    wrist: deg(10.0) * sn,
                    elev: deg(6.0),
                    ..arm(10.0, 85.0, 0.0, -90.0 + r * sn, 90.0 + r * cs)
                };
                a.arms[R] = a.arms[R].lerp(t, s.env(w));
            }
            M::Punch => punch(s, w, &mut a),
            M::Kick => kick(s, w, &mut a),
            M::SitDown => {
                let r = s.ramp(w);
                let k = s.soft_amp();
                for side in [R, L] {
                    let leg = &mut a.legs[side];
                    leg.flex = lerp(leg.flex, deg(88.0) * k, r);
                    leg.knee = lerp(leg.knee, deg(90.0) * k, r);
                    a.arms[side].flex += deg(25.0) * r;
                    a.arms[side].elbow += deg(35.0) * r;
                }
                a.bend += deg(30.0) * (PI * r).sin() + deg(8.0) * r;
            }
            M::RaiseForward | M::RaiseSideways => {
                let e = s.raised(w);
                for side in [R, L] {
                    let arm = &mut a.arms[side];
                    if self == M::RaiseForward {
                        arm.flex += s.amp * deg(85.0) * e;
                    } else {
                        arm.abd += s.amp * deg(85.0) * e;
                    }
                    arm.elbow = lerp(arm.elbow, deg(5.0), e);
                }
            }
            M::Squat => {
                let e = s.raised(w) * s.soft_amp();
                for side in [R, L] {
                    a.legs[side].flex = lerp(a.legs[side].flex, deg(95.0), e);
                    a.legs[side].knee = lerp(a.legs[side].knee, deg(120.0), e);
                    a.arms[side].flex = lerp(a.arms[side].flex, deg(75.0), e);
                    a.arms[side].elbow = lerp(a.arms[side].elbow, deg(10.0), e);
                }
                a.bend += deg(30.0) * e;
            }
            M::Clap => {
                let g = s.env(w);
                let open = 0.5 + 0.5 * (TAU * s.phase(w)).cos();
                let t = arm(75.0, 5.0, -20.0 + s.amp * 40.0 * open, 0.0, 35.0);
                a.arms[R] = a.arms[R].lerp(t, g);
                a.arms[L] = a.arms[L].lerp(t, g);
            }
            M::JumpingJack => {
                let e = s.raised(w);
                let k = s.soft_amp();
                for side in [R, L] {
                    a.arms[side].abd += deg(140.0) * k * e;
                    a.arms[side].elbow = lerp(a.arms[side].elbow, deg(10.0), e);
                    a.legs[side].abd += deg(15.0) * e;
                }
                a.lift = 0.06 * k * (TAU * s.phase(w)).sin().abs();
            }
            M::WalkInPlace => {
                let o = s.osc(w);
                let (up_r, up_l) = (o.max(0.0), (-o).max(0.0));
                a.legs[R].flex += s.amp * deg(45.0) * up_r;
                a.legs[R].knee += s.amp * deg(80.0) * up_r;
                a.legs[L].flex += s.amp * deg(45.0) * up_l;
                a.legs[L].knee += s.amp * deg(80.0) * up_l;
                a.arms[R].flex -= s.amp * deg(25.0) * o;
                a.arms[L].flex += s.amp * deg(25.0) * o;
                a.arms[R].elbow += deg(15.0);
                a.arms[L].elbow += deg(15.0);
            }
            M::Bow => {
                let r = s.bump(w) * s.soft_amp();
                a.bend += deg(50.0) * r;
                a.nod += deg(15.0) * r;
                a.arms[R].flex += deg(40.0) * r;
                a.arms[L].flex += deg(40.0) * r;
            }
            M::ReachHigh => {
                let e = s.env(w);
                let t = Arm {
                    elev: deg(12.0),
                    ..arm(150.0 + 15.0 * s.soft_amp(), 10.0, 0.0, 0.0, 5.0)
                };
                a.arms[R] = a.arms[R].lerp(t, e);
                a.lean -= deg(6.0) * e;
                a.lift = 0.03 * e;
            }
            M::Throw => {
                let r = s.ramp(w);
                let (k1, k2, k3) = (
                    smooth(r / 0.5),
                    smooth((r - 0.5) / 0.15),
                    smooth((r - 0.7) / 0.3),
                );
                let rest = a.arms[R];
                let wind = arm(150.0, 30.0, 0.0, 0.0, 110.0);
                let release = arm(40.0 + 15.0 * s.amp, 15.0, -10.0, 0.0, 10.0);
                a.arms[R] = rest.lerp(wind, k1).lerp(release, k2).lerp(rest, k3);
                a.twist += (deg(-20.0) * k1 + deg(40.0) * k2) * (1.0 - k3);
                a.bend += deg(15.0) * k2 * (1.0 - k3);
            }
            M::Drink => {
                let e = s.env(w);
                let t = Arm {
                    wrist: deg(-20.0),
                    ..arm(35.0, 15.0, -25.0, -10.0, 140.0)
                };
                a.arms[R] = a.arms[R].lerp(t, e);
                a.nod -= deg(15.0) * e * e;
            }
            M::PhoneCall => {
                let r = s.ramp(w);
                a.arms[R] = a.arms[R].lerp(arm(25.0, 30.0, 0.0, -70.0, 145.0), r);
                a.lean += deg(4.0) * r;
            }
            M::Salute => {
                let e = s.env(w);
                a.arms[R] = a.arms[R].lerp(arm(20.0, 80.0, -25.0, -90.0, 135.0), e);
            }
            M::Point => {
                let e = s.env(w);
                a.arms[R] = a.arms[R].lerp(arm(75.0 + 10.0 * s.amp, 5.0, -5.0, 0.0, 5.0), e);
            }
            M::SideBend => {
                a.lean += s.amp * deg(22.0) * s.osc(w);
            }
            M::TorsoTwist => {
                let g = s.env(w);
                a.twist += s.amp * deg(35.0) * s.osc(w) * g;
                for side in [R, L] {
                    a.arms[side] = a.arms[side].lerp(arm(0.0, 75.0, 0.0, 0.0, 90.0), g);
                }
            }
            M::TouchToes => {
                let r = s.bump(w) * s.soft_amp();
                a.bend += deg(85.0) * r;
                a.nod += deg(10.0) * r;
                for side in [R, L] {
                    a.arms[side].flex += deg(80.0) * r;
                    a.legs[side].knee += deg(8.0) * r;
                }
            }
            M::JumpUp => {
                if let Some(f) = s.pulse(w, 0.8) {
                    let bell = |x: f32| {
                        if (0.0..=1.0).contains(&x) {
                            (PI * x).sin().powi(2)
                        } else {
                            0.0
                        }
                    };
                    let crouch = bell(f / 0.4).max(0.7 * bell((f - 0.6) / 0.4));
                    let fly = bell((f - 0.35) / 0.35);
                    for side in [R, L] {
                        a.legs[side].flex += deg(55.0) * crouch;
                        a.legs[side].knee += deg(80.0) * crouch;
                        a.arms[side].flex += deg(-30.0) * crouch + deg(140.0) * fly;
                    }
                    a.bend += deg(20.0) * crouch;
                    a.lift = 0.22 * s.soft_amp() * (PI * ((f - 0.35) / 0.35).clamp(0.0, 1.0)).sin();
                }
            }
            M::Hop => {
                let g = s.env(w);
                a.legs[L].flex += deg(25.0) * g;
                a.legs[L].knee += deg(85.0) * g;
                let h = (PI * s.phase(w)).sin().abs();
                a.lift = 0.07 * s.soft_amp() * h * g;
                a.legs[R].knee += deg(20.0) * (1.0 - h) * g;
                a.arms[R].abd += deg(20.0) * g;
                a.arms[L].abd += deg(20.0) * g;
            }
            M::Nod => {
                a.nod += s.amp * deg(25.0) * s.raised(w);
            }
            M::ArmCircles => {
                let g = s.env(w);
                let (sn, cs) = (TAU * s.phase(w)).sin_cos();
                let t = Arm {
                    flex: deg(20.0) * s.amp * sn,
                    abd: deg(90.0) + deg(20.0) * s.amp * cs,
                    elbow: deg(5.0),
                    ..Arm::default()
                };
                a.arms[R] = a.arms[R].lerp(t, g);
                a.arms[L] = a.arms[L].lerp(t, g);
            }
            M::HandsOnHips => {
                let r = s.ramp(w);
                let t = arm(-5.0, 45.0, 0.0, 90.0, 75.0);
                a.arms[R] = a.arms[R].lerp(t, r);
                a.arms[L] = a.arms[L].lerp(t, r);
            }
            M::CrossArms => {
                let r = s.ramp(w);
                let t = arm(30.0, 10.0, -20.0, 85.0, 100.0);
                a.arms[R] = a.arms[R].lerp(t, r);
                a.arms[L] = a.arms[L].lerp(
                    Arm {
                        flex: deg(20.0),
                        ..t
                    },
                    r,
                );
            }
            M::RaiseArm => {
                let r = s.ramp(w);
                a.arms[R] =
                    a.arms[R].lerp(arm(10.0, 150.0 + 15.0 * s.soft_amp(), 0.0, 0.0, 5.0), r);
            }
            M::Stretch => {
                let e = s.env(w);
                let t = Arm {
                    elev: deg(10.0),
                    ..arm(165.0, 15.0, 0.0, 0.0, 5.0)
                };
                a.arms[R] = a.arms[R].lerp(t, e);
                a.arms[L] = a.arms[L].lerp(t, e);
                a.bend -= deg(10.0) * e * s.soft_amp();
                a.nod -= deg(10.0) * e;
                a.lift = 0.03 * e;
            }
            M::Shrug => {
                let e = s.raised(w);
                for side in [R, L] {
                    a.arms[side].elev += s.amp * deg(20.0) * e;
                    a.arms[side].abd += deg(6.0) * e;
                    a.arms[side].elbow += deg(25.0) * e;
                }
            }
            M::ScratchHead => {
                let t = arm(30.0, 100.0, -20.0, -90.0, 140.0 + 12.0 * s.osc(w));
                a.arms[R] = a.arms[R].lerp(t, s.env(w));
            }
            M::Lunge => {
                let e = s.bump(w) * s.soft_amp();
                a.legs[R].flex += deg(80.0) * e;
                a.legs[R].knee += deg(90.0) * e;
                a.legs[L].flex -= deg(25.0) * e;
                a.legs[L].knee += deg(85.0) * e;
                a.bend -= deg(5.0) * e;
            }
            M::LegSideRaise => {
                let e = s.raised(w);
                a.legs[R].abd += s.amp * deg(40.0) * e;
                a.lean -= deg(12.0) * e;
                a.arms[R].abd += deg(15.0) * e;
                a.arms[L].abd += deg(15.0) * e;
            }
            M::KneelDown => {
                let r = s.ramp(w);
                a.legs[R].flex = lerp(a.legs[R].flex, 0.0, r);
                a.legs[R].knee = lerp(a.legs[R].knee, deg(90.0), r);
                a.legs[L].flex = lerp(a.legs[L].flex, deg(90.0), r);
                a.legs[L].knee = lerp(a.legs[L].knee, deg(90.0), r);
                a.bend += deg(20.0) * (PI * r).sin();
            }
            M::PickUp => {
                let e = s.bump(w) * s.soft_amp();
                for side in [R, L] {
                    a.legs[side].flex += deg(60.0) * e;
                    a.legs[side].knee += deg(80.0) * e;
                }
                a.bend += deg(50.0) * e;
                a.nod += deg(10.0) * e;
                a.arms[R].flex += deg(95.0) * e;
                a.arms[L].flex += deg(40.0) * e;
            }
            M::Handshake => {
                let e = s.env(w);
                let shake = 10.0 * s.osc(w);
                let t = arm(45.0, 5.0, -10.0, 0.0, 35.0 + shake);
                a.arms[R] = a.arms[R].lerp(t, e);
                b.arms[R] = b.arms[R].lerp(t, e);
            }
            M::Push => {
                let r = s.ramp(w);
                let (k1, k2, k3) = (
                    smooth(r / 0.4),
                    smooth((r - 0.4) / 0.15),
                    smooth((r - 0.75) / 0.25),
                );
                let ready = arm(70.0, 15.0, -10.0, 0.0, 100.0);
                let out = arm(85.0, 10.0, -10.0, 0.0, 10.0);
                for side in [R, L] {
                    let rest = a.arms[side];
                    a.arms[side] = rest.lerp(ready, k1).lerp(out, k2).lerp(rest, k3);
                    b.arms[side].abd += deg(25.0) * k2 * (1.0 - k3);
                }
                a.bend += deg(10.0) * k2 * (1.0 - k3);
                b.bend -= s.amp * deg(20.0) * k2 * (1.0 - k3);
                b.nod -= deg(10.0) * k2 * (1.0 - k3);
            }
            M::Hug => {
                let e = s.env(w);
                let t = arm(80.0, 10.0, -20.0, 85.0, 70.0);
                for p in [&mut a, &mut b] {
                    p.arms[R] = p.arms[R].lerp(t, e);
                    p.arms[L] = p.arms[L].lerp(
                        Arm {
                            flex: deg(65.0),
                            ..t
                        },
                        e,
                    );
                    p.bend += deg(10.0) * e;
                }
            }
            M::HighFive => {
                let e = s.bump(w);
                let t = arm(150.0, 10.0, -10.0, 0.0, 25.0);
                a.arms[R] = a.arms[R].lerp(t, e);
                b.arms[R] = b.arms[R].lerp(t, e);
            }
            M::PunchOther => {
                punch(s, w, &mut a);
                let k = s.pulse(w, 0.5).map_or(0.0, punch_profile) * s.env(w);
                b.bend -= deg(15.0) * k;
                b.arms[R] = b.arms[R].lerp(guard(), 0.5 * k);
                b.arms[L] = b.arms[L].lerp(guard(), 0.5 * k);
            }
            M::KickOther => {
                kick(s, w, &mut a);
                let k = s.pulse(w, 0.6).map_or(0.0, |f| (PI * f).sin().powi(2));
                b.bend += deg(20.0) * k;
                b.arms[R].flex += deg(30.0) * k;
                b.arms[L].flex += deg(30.0) * k;
            }
            M::PointAtOther => {
                let e = s.env(w);
                a.arms[R] = a.arms[R].lerp(arm(80.0 + 10.0 * s.amp, 5.0, -5.0, 0.0, 5.0), e);
                b.nod -= deg(8.0) * e;
            }
            M::PatOnBack => {
                let e = s.env(w);
                let t = arm(75.0, 20.0, -30.0, 0.0, 50.0 + 15.0 * s.osc(w));
                a.arms[R] = a.arms[R].lerp(t, e);
                b.nod += deg(10.0) * e;
            }
            M::GiveObject => {
                let t = arm(55.0, 5.0, -5.0, 0.0, 40.0);
                a.arms[R] = a.arms[R].lerp(t, s.env(w));
                b.arms[R] = b.arms[R].lerp(t, s.env(w - 0.15));
            }
        }
        [a, b]
    }
}

/// Boxing: both fists up, the right one strikes once per cycle.
fn punch(s: &Style, w: f32, a: &mut Pose) {
    let g = s.env(w);
    a.arms[R] = a.arms[R].lerp(guard(), g);
    a.arms[L] = a.arms[L].lerp(guard(), g);
    if let Some(f) = s.pulse(w, 0.5) {
        let k = punch_profile(f) * g;
        let strike = Arm {
            elev: deg(2.0),
            ..arm(60.0 + 25.0 * s.amp, 8.0, -12.0, -10.0, 5.0)
        };
        a.arms[R] = a.arms[R].lerp(strike, k);
        a.twist += deg(15.0) * k;
        a.bend += deg(5.0) * k;
    }
}

/// A front kick with the right leg once per cycle: chamber, extend, chamber, down.
fn kick(s: &Style, w: f32, a: &mut Pose) {
    if let Some(f) = s.pulse(w, 0.6) {
        let k = (PI * f).sin().powi(2);
        a.legs[R].flex += s.amp * deg(70.0) * (PI * f).sin();
        a.legs[R].knee += deg(65.0) * (TAU * f).sin().powi(2);
        a.bend -= deg(10.0) * k;
        a.arms[R].abd += deg(20.0) * k;
        a.arms[L].abd += deg(20.0) * k;
    }
}
