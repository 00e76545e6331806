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
//!
//! This file holds the options, the class table and the generation with its scene
//! nuisances; `skeleton` the bone lengths and forward kinematics, `style` the per-sample
//! style and timing curves, `motions` the motion table and its interpreter, `programs`
//! the motion programs.

use std::f32::consts::PI;

use crate::rng::PstlRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use crate::data::normalize::frame50;
use crate::data::{RawSeq, CHANNELS, FRAMES, NTU_JOINTS, PERSONS};

mod motions;
mod programs;
mod skeleton;
mod style;

use motions::{self as m, Motion};
use skeleton::{add, mm, mv, rx, ry, rz, skeleton, Body, Pose, M3, V3};
use style::Style;

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
    let style = Style::sample(spec.motion.timing, nu, rng);
    let scales = [uniform(rng, nu.scale), uniform(rng, nu.scale)];
    let bodies = scales.map(|scale| Body::sample(scale, nu.bone_jitter, rng));
    let scene = Scene::sample(&spec.motion, nu, rng);
    let noise = Normal::new(0.0f32, nu.noise_std.max(0.0)).expect("finite noise std");

    let mut data = vec![0.0f32; CHANNELS * frames * NTU_JOINTS * PERSONS];
    for t in 0..frames {
        let poses = spec.poses(&style, t, frames);
        for who in 0..scene.persons() {
            let joints = skeleton(&bodies[who], &poses[who]);
            let (facing, at) = scene.place(who);
            let slot = scene.slot(who);
            for (v, j) in joints.iter().enumerate() {
                let p = scene.to_camera(facing, at, *j);
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

/// Where the performers stand and how the camera sees them: drawn once per sample.
struct Scene {
    /// Two performers facing each other across x (an interaction).
    two: bool,
    /// Distance between their pelvises.
    gap: f32,
    /// The partner takes slot 0 and the actor slot 1.
    swap: bool,
    /// Viewpoint rotation about the vertical.
    view: M3,
    /// Camera tilt about x and z.
    tilt: M3,
    /// Position of the performers in the camera frame.
    offset: V3,
}

impl Scene {
    fn sample(motion: &Motion, nu: &Nuisance, rng: &mut impl Rng) -> Scene {
        let two = motion.two_person();
        let gap = motion.gap() + uniform(rng, (-0.08, 0.08));
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
        Scene {
            two,
            gap,
            swap,
            view,
            tilt,
            offset,
        }
    }

    fn persons(&self) -> usize {
        if self.two {
            2
        } else {
            1
        }
    }

    /// The person slot of performer `who` (0 the actor, 1 the partner).
    fn slot(&self, who: usize) -> usize {
        if self.two && self.swap {
            1 - who
        } else {
            who
        }
    }

    /// Facing and position of performer `who` in the scene.
    fn place(&self, who: usize) -> (M3, V3) {
        if !self.two {
            return (ry(0.0), [0.0; 3]);
        }
        // Actor at -x facing +x, partner at +x facing -x (forward is -z in body frame).
        let side = if who == 0 { -1.0 } else { 1.0 };
        (ry(side * PI / 2.0), [side * self.gap / 2.0, 0.0, 0.0])
    }

    /// A body-frame joint of a performer placed by `facing` and `at`, in camera
    /// coordinates.
    fn to_camera(&self, facing: M3, at: V3, joint: V3) -> V3 {
        let p = add(mv(self.view, add(at, mv(facing, joint))), self.offset);
        mv(self.tilt, p)
    }
}

// ---------------------------------------------------------------------------------------
// The classes.

/// One class: a motion, played as it is, mirrored or backwards.
struct ClassSpec {
    name: &'static str,
    motion: Motion,
    /// Played with left and right swapped.
    mirror: bool,
    /// Played backwards in time.
    reverse: bool,
}

impl ClassSpec {
    /// The poses of the actor and the partner in frame `t` of `frames`.
    fn poses(&self, style: &Style, t: usize, frames: usize) -> [Pose; 2] {
        let u = if frames > 1 {
            t as f32 / (frames - 1) as f32
        } else {
            0.0
        };
        let u = if self.reverse { 1.0 - u } else { u };
        let poses = self.motion.poses(style, style.warp(u));
        if self.mirror {
            poses.map(Pose::mirrored)
        } else {
            poses
        }
    }
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

/// The class table; the first [`DEFAULT_CLASSES`] are the default dataset.
const CLASSES: [ClassSpec; MAX_CLASSES] = [
    class("wave right hand", m::WAVE),
    class("circle right hand", m::CIRCLE),
    class("punch right", m::PUNCH),
    class("kick right leg", m::KICK),
    mirrored("kick left leg", m::KICK),
    class("sit down", m::SIT_DOWN),
    reversed("stand up", m::SIT_DOWN),
    class("raise arms forward", m::RAISE_FORWARD),
    class("raise arms sideways", m::RAISE_SIDEWAYS),
    class("squat", m::SQUAT),
    // 10..: more, starting with two-person interactions.
    class("handshake", m::HANDSHAKE),
    class("push other person", m::PUSH),
    class("hug", m::HUG),
    mirrored("wave left hand", m::WAVE),
    mirrored("circle left hand", m::CIRCLE),
    mirrored("punch left", m::PUNCH),
    class("clap", m::CLAP),
    class("jumping jack", m::JUMPING_JACK),
    class("walk in place", m::WALK_IN_PLACE),
    class("bow", m::BOW),
    class("reach high right hand", m::REACH_HIGH),
    mirrored("reach high left hand", m::REACH_HIGH),
    class("throw right hand", m::THROW),
    mirrored("throw left hand", m::THROW),
    class("drink right hand", m::DRINK),
    mirrored("drink left hand", m::DRINK),
    class("phone call right hand", m::PHONE_CALL),
    mirrored("phone call left hand", m::PHONE_CALL),
    class("salute", m::SALUTE),
    class("point forward right hand", m::POINT),
    mirrored("point forward left hand", m::POINT),
    class("side bend", m::SIDE_BEND),
    class("torso twist", m::TORSO_TWIST),
    class("touch toes", m::TOUCH_TOES),
    class("jump up", m::JUMP_UP),
    class("hop on right leg", m::HOP),
    mirrored("hop on left leg", m::HOP),
    class("nod head", m::NOD),
    class("arm circles", m::ARM_CIRCLES),
    class("put hands on hips", m::HANDS_ON_HIPS),
    reversed("take hands off hips", m::HANDS_ON_HIPS),
    class("cross arms", m::CROSS_ARMS),
    reversed("uncross arms", m::CROSS_ARMS),
    class("raise right arm", m::RAISE_ARM),
    reversed("lower right arm", m::RAISE_ARM),
    class("high five", m::HIGH_FIVE),
    class("punch other person", m::PUNCH_OTHER),
    class("kick other person", m::KICK_OTHER),
    class("point at other person", m::POINT_AT_OTHER),
    class("pat on back", m::PAT_ON_BACK),
    class("give object", m::GIVE_OBJECT),
    class("stretch overhead", m::STRETCH),
    class("shrug", m::SHRUG),
    class("scratch head", m::SCRATCH_HEAD),
    class("lunge right leg", m::LUNGE),
    mirrored("lunge left leg", m::LUNGE),
    class("raise right leg sideways", m::LEG_SIDE_RAISE),
    mirrored("raise left leg sideways", m::LEG_SIDE_RAISE),
    class("kneel down", m::KNEEL_DOWN),
    class("pick up", m::PICK_UP),
];
