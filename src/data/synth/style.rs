//! The per-sample style of a performance: amplitude, speed, phase, the one-shot window,
//! the time warp, each person's rest pose and idle sway, and the timing curves (cycle
//! phase, pulses, ramps, envelopes) that the motion programs are written in.

use std::f32::consts::{PI, TAU};

use rand::Rng;

use super::motions::Timing;
use super::skeleton::{deg, smooth, Arm, Leg, Pose};
use super::{uniform, Nuisance};

/// Per-sample draws shared by all motion programs.
#[derive(Debug, Clone)]
pub(super) struct Style {
    /// Amplitude factor.
    pub(super) amp: f32,
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
    /// Draws the style of one performance of a motion with `timing`.
    pub(super) fn sample(timing: Timing, nu: &Nuisance, rng: &mut impl Rng) -> Style {
        let amp = uniform(rng, nu.amplitude);
        let cycles = uniform(rng, timing.cycles);
        let phase0 = rng.gen::<f32>();
        let center = uniform(rng, (0.4, 0.6));
        let width = uniform(rng, timing.window);
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
    pub(super) fn warp(&self, u: f32) -> f32 {
        u + self.warp * (TAU * u).sin() / TAU
    }

    /// Rest pose of person `who` with its idle sway at time `w`.
    pub(super) fn rest_at(&self, who: usize, w: f32) -> Pose {
        let mut p = self.rest[who];
        let s = |k: usize| (TAU * (self.sway_freq[k] * w + self.sway_phase[k])).sin();
        p.lean += self.sway * s(0);
        p.twist += 1.5 * self.sway * s(1);
        p.nod += 0.5 * self.sway * s(1);
        p
    }

    /// Phase in cycles.
    pub(super) fn phase(&self, w: f32) -> f32 {
        self.phase0 + self.cycles * w
    }

    /// `sin` of the phase.
    pub(super) fn osc(&self, w: f32) -> f32 {
        (TAU * self.phase(w)).sin()
    }

    /// `0.5 - 0.5 cos` of the phase: 0 at rest, 1 at the far end of a cycle.
    pub(super) fn raised(&self, w: f32) -> f32 {
        0.5 - 0.5 * (TAU * self.phase(w)).cos()
    }

    /// Within-pulse time `0..1` when the current cycle is in its first `duty` part.
    pub(super) fn pulse(&self, w: f32, duty: f32) -> Option<f32> {
        let f = self.phase(w).rem_euclid(1.0);
        (f < duty).then(|| f / duty)
    }

    /// One-shot progress 0 -> 1 over the window.
    pub(super) fn ramp(&self, w: f32) -> f32 {
        smooth((w - self.lo) / (self.hi - self.lo))
    }

    /// Out, hold, back: rises over the first quarter of the window, falls over the last.
    pub(super) fn env(&self, w: f32) -> f32 {
        let q = 0.25 * (self.hi - self.lo);
        smooth((w - self.lo) / q) * smooth((self.hi - w) / q)
    }

    /// Out and straight back: `sin^2` over the window.
    pub(super) fn bump(&self, w: f32) -> f32 {
        let x = ((w - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0);
        (PI * x).sin().powi(2)
    }

    /// Amplitude with a third of the variation, for motions bounded by anatomy.
    pub(super) fn soft_amp(&self) -> f32 {
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
