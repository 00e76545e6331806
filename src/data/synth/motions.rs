//! The motion table: one row per motion, naming its program ([`super::programs`]), its
//! timing and, for an interaction, the distance between the two performers; and
//! [`Motion::poses`], the interpreter that runs a row at one instant.
//!
//! Classes ([`super::CLASSES`]) are motions played as they are, mirrored or backwards.

use super::programs as p;
use super::skeleton::Pose;
use super::style::Style;

/// How a motion is spread over the sequence (ranges drawn per sample by [`Style`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Timing {
    /// Number of cycles over the sequence (periodic parts).
    pub(super) cycles: (f32, f32),
    /// Width of the one-shot window, in (warped) sequence time.
    pub(super) window: (f32, f32),
}

/// Repeated briskly: waving, scratching, shaking hands.
const BRISK: Timing = Timing {
    cycles: (2.0, 4.0),
    window: (0.75, 1.05),
};
/// Repeated: punches, claps, steps.
const REPEATED: Timing = Timing {
    cycles: (1.5, 3.5),
    window: (0.8, 1.1),
};
/// Repeated slowly: kicks, raises, squats.
const SLOW: Timing = Timing {
    cycles: (1.0, 2.5),
    window: (0.8, 1.1),
};
/// Once, quickly: a change of posture (sit down, hands on hips).
const ONCE_QUICK: Timing = Timing {
    cycles: (1.0, 1.0),
    window: (0.25, 0.55),
};
/// Once, at a moderate pace: a throw, a push, answering the phone.
const ONCE_MODERATE: Timing = Timing {
    cycles: (1.0, 1.0),
    window: (0.35, 0.65),
};
/// Once, out and back: a bow, a salute, a hug.
const ONCE: Timing = Timing {
    cycles: (1.0, 1.0),
    window: (0.45, 0.85),
};

/// What a motion moves.
#[derive(Clone, Copy)]
pub(super) enum Program {
    /// One performer.
    Solo(fn(&Style, f32, &mut Pose)),
    /// An interaction: the actor and the partner, `gap` metres apart (pelvis to pelvis).
    Pair {
        gap: f32,
        program: fn(&Style, f32, &mut Pose, &mut Pose),
    },
}

/// One row of the motion table.
#[derive(Clone, Copy)]
pub(super) struct Motion {
    pub(super) timing: Timing,
    pub(super) program: Program,
}

const fn solo(timing: Timing, program: fn(&Style, f32, &mut Pose)) -> Motion {
    Motion {
        timing,
        program: Program::Solo(program),
    }
}

const fn pair(timing: Timing, gap: f32, program: fn(&Style, f32, &mut Pose, &mut Pose)) -> Motion {
    Motion {
        timing,
        program: Program::Pair { gap, program },
    }
}

/// The usual distance between two interacting performers.
const PAIR_GAP: f32 = 0.85;

// The motion table.
pub(super) const WAVE: Motion = solo(BRISK, p::wave);
pub(super) const CIRCLE: Motion = solo(BRISK, p::circle);
pub(super) const SCRATCH_HEAD: Motion = solo(BRISK, p::scratch_head);
pub(super) const PUNCH: Motion = solo(REPEATED, p::punch);
pub(super) const CLAP: Motion = solo(REPEATED, p::clap);
pub(super) const ARM_CIRCLES: Motion = solo(REPEATED, p::arm_circles);
pub(super) const TORSO_TWIST: Motion = solo(REPEATED, p::torso_twist);
pub(super) const WALK_IN_PLACE: Motion = solo(REPEATED, p::walk_in_place);
pub(super) const HOP: Motion = solo(REPEATED, p::hop);
pub(super) const JUMPING_JACK: Motion = solo(REPEATED, p::jumping_jack);
pub(super) const SIDE_BEND: Motion = solo(REPEATED, p::side_bend);
pub(super) const KICK: Motion = solo(SLOW, p::kick);
pub(super) const JUMP_UP: Motion = solo(SLOW, p::jump_up);
pub(super) const RAISE_FORWARD: Motion = solo(SLOW, p::raise_forward);
pub(super) const RAISE_SIDEWAYS: Motion = solo(SLOW, p::raise_sideways);
pub(super) const SQUAT: Motion = solo(SLOW, p::squat);
pub(super) const NOD: Motion = solo(SLOW, p::nod);
pub(super) const SHRUG: Motion = solo(SLOW, p::shrug);
pub(super) const LEG_SIDE_RAISE: Motion = solo(SLOW, p::leg_side_raise);
pub(super) const SIT_DOWN: Motion = solo(ONCE_QUICK, p::sit_down);
pub(super) const HANDS_ON_HIPS: Motion = solo(ONCE_QUICK, p::hands_on_hips);
pub(super) const CROSS_ARMS: Motion = solo(ONCE_QUICK, p::cross_arms);
pub(super) const RAISE_ARM: Motion = solo(ONCE_QUICK, p::raise_arm);
pub(super) const KNEEL_DOWN: Motion = solo(ONCE_QUICK, p::kneel_down);
pub(super) const PHONE_CALL: Motion = solo(ONCE_MODERATE, p::phone_call);
pub(super) const THROW: Motion = solo(ONCE_MODERATE, p::throw);
pub(super) const BOW: Motion = solo(ONCE, p::bow);
pub(super) const REACH_HIGH: Motion = solo(ONCE, p::reach_high);
pub(super) const DRINK: Motion = solo(ONCE, p::drink);
pub(super) const SALUTE: Motion = solo(ONCE, p::salute);
pub(super) const POINT: Motion = solo(ONCE, p::point);
pub(super) const TOUCH_TOES: Motion = solo(ONCE, p::touch_toes);
pub(super) const STRETCH: Motion = solo(ONCE, p::stretch);
pub(super) const LUNGE: Motion = solo(ONCE, p::lunge);
pub(super) const PICK_UP: Motion = solo(ONCE, p::pick_up);
pub(super) const HANDSHAKE: Motion = pair(BRISK, PAIR_GAP, p::handshake);
pub(super) const PAT_ON_BACK: Motion = pair(BRISK, 0.6, p::pat_on_back);
pub(super) const PUNCH_OTHER: Motion = pair(REPEATED, PAIR_GAP, p::punch_other);
pub(super) const KICK_OTHER: Motion = pair(SLOW, 1.1, p::kick_other);
pub(super) const PUSH: Motion = pair(ONCE_MODERATE, PAIR_GAP, p::push);
pub(super) const HUG: Motion = pair(ONCE, 0.45, p::hug);
pub(super) const HIGH_FIVE: Motion = pair(ONCE, PAIR_GAP, p::high_five);
pub(super) const POINT_AT_OTHER: Motion = pair(ONCE, 1.6, p::point_at_other);
pub(super) const GIVE_OBJECT: Motion = pair(ONCE, PAIR_GAP, p::give_object);

impl Motion {
    /// True for an interaction (the partner fills slot 1).
    pub(super) fn two_person(&self) -> bool {
        matches!(self.program, Program::Pair { .. })
    }

    /// Distance between the two pelvises of an interaction (0 for one performer).
    pub(super) fn gap(&self) -> f32 {
        match self.program {
            Program::Solo(_) => 0.0,
            Program::Pair { gap, .. } => gap,
        }
    }

    /// The pose of the actor and the partner (the rest pose for one performer) at warped
    /// time `w`.
    pub(super) fn poses(&self, s: &Style, w: f32) -> [Pose; 2] {
        let mut a = s.rest_at(0, w);
        let mut b = s.rest_at(1, w);
        match self.program {
            Program::Solo(program) => program(s, w, &mut a),
            Program::Pair { program, .. } => program(s, w, &mut a, &mut b),
        }
        [a, b]
    }
}
