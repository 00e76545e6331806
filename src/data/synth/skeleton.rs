//! The performer: bone lengths (an adult as Kinect v2 measures them, scaled and jittered
//! per sample), the joint angles of a pose, and the forward kinematics from a pose to the
//! 25 NTU joints, with the small 3-D algebra they need.

use rand::Rng;

use crate::data::NTU_JOINTS;

// ---------------------------------------------------------------------------------------
// Small 3-D algebra.

pub(super) type V3 = [f32; 3];
pub(super) type M3 = [[f32; 3]; 3];

pub(super) fn rx(a: f32) -> M3 {
    let (s, c) = a.sin_cos();
    [[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]]
}

pub(super) fn ry(a: f32) -> M3 {
    let (s, c) = a.sin_cos();
    [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
}

pub(super) fn rz(a: f32) -> M3 {
    let (s, c) = a.sin_cos();
    [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
}

pub(super) fn mm(a: M3, b: M3) -> M3 {
    let mut r = [[0.0; 3]; 3];
    for (i, row) in r.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            *cell = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    r
}

pub(super) fn mv(a: M3, v: V3) -> V3 {
    [
        a[0][0] * v[0] + a[0][1] * v[1] + a[0][2] * v[2],
        a[1][0] * v[0] + a[1][1] * v[1] + a[1][2] * v[2],
        a[2][0] * v[0] + a[2][1] * v[1] + a[2][2] * v[2],
    ]
}

pub(super) fn add(a: V3, b: V3) -> V3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

fn mirror_x(v: V3) -> V3 {
    [-v[0], v[1], v[2]]
}

pub(super) fn deg(x: f32) -> f32 {
    x.to_radians()
}

pub(super) fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

/// Smoothstep on `[0, 1]`, clamped outside.
pub(super) fn smooth(x: f32) -> f32 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

// ---------------------------------------------------------------------------------------
// Body and forward kinematics.

/// Bone lengths (metres) of one performer; the right side is given, the left mirrors it.
#[derive(Debug, Clone)]
pub(super) struct Body {
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
    pub(super) fn sample(scale: f32, jitter: f32, rng: &mut impl Rng) -> Body {
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
pub(super) struct Arm {
    /// Shoulder flexion: + raises the arm forward.
    pub(super) flex: f32,
    /// Shoulder abduction: + raises the arm sideways.
    pub(super) abd: f32,
    /// Horizontal rotation about the vertical: + outward, - across the body.
    pub(super) horiz: f32,
    /// Rotation about the upper arm: - turns the elbow's bending plane from forward to up
    /// when the arm is abducted.
    pub(super) twist: f32,
    /// Elbow flexion, >= 0.
    pub(super) elbow: f32,
    /// Wrist flexion.
    pub(super) wrist: f32,
    /// Clavicle elevation (raises the shoulder joint).
    pub(super) elev: f32,
}

impl Arm {
    pub(super) fn lerp(self, o: Arm, t: f32) -> Arm {
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
pub(super) struct Leg {
    /// Hip flexion: + swings the thigh forward.
    pub(super) flex: f32,
    /// Hip abduction: + outward.
    pub(super) abd: f32,
    /// Knee flexion, >= 0 (shank backward).
    pub(super) knee: f32,
    /// Ankle angle on top of the one that keeps the foot level.
    pub(super) ankle: f32,
}

/// A whole-body pose. Index 0 of `arms` / `legs` is the right side, 1 the left.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Pose {
    /// Whole-body rotation about the vertical.
    pub(super) yaw: f32,
    /// Height of the body above the floor contact (jumps, tiptoes), metres.
    pub(super) lift: f32,
    /// Spine flexion: + bends forward.
    pub(super) bend: f32,
    /// Lateral bend: + toward the right.
    pub(super) lean: f32,
    /// Axial rotation of the spine: + brings the right shoulder forward.
    pub(super) twist: f32,
    /// Neck flexion: + nods forward.
    pub(super) nod: f32,
    pub(super) arms: [Arm; 2],
    pub(super) legs: [Leg; 2],
}

/// Index of the right arm / leg in a [`Pose`].
pub(super) const R: usize = 0;
/// Index of the left arm / leg in a [`Pose`].
pub(super) const L: usize = 1;

impl Pose {
    /// The left-right mirror image (what the flip augmentation produces).
    pub(super) fn mirrored(self) -> Pose {
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
pub(super) fn skeleton(b: &Body, p: &Pose) -> [V3; NTU_JOINTS] {
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
