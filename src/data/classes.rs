//! Class names for plots and tables: the NTU RGB+D action names (A001-A120, NTU-60 is
//! the first 60), the synthetic dataset's motion programs, and `class <i>` otherwise
//! (e.g. PKU-MMD).

use std::path::Path;

/// NTU RGB+D 120 action names, in label order (label = action id - 1).
pub const NTU_ACTIONS: [&str; 120] = [
    "drink water",
    "eat meal/snack",
    "brushing teeth",
    "brushing hair",
    "drop",
    "pickup",
    "throw",
    "sitting down",
    "standing up",
    "clapping",
    "reading",
    "writing",
    "tear up paper",
    "wear jacket",
    "take off jacket",
    "wear a shoe",
    "take off a shoe",
    "wear on glasses",
    "take off glasses",
    "put on a hat/cap",
    "take off a hat/cap",
    "cheer up",
    "hand waving",
    "kicking something",
    "reach into pocket",
    "hopping",
    "jump up",
    "make a phone call",
    "playing with phone/tablet",
    "typing on a keyboard",
    "pointing to something",
    "taking a selfie",
    "check time (from watch)",
    "rub two hands together",
    "nod head/bow",
    "shake head",
    "wipe face",
    "salute",
    "put the palms together",
    "cross hands in front",
    "sneeze/cough",
    "staggering",
    "falling",
    "touch head (headache)",
    "touch chest",
    "touch back (backache)",
    "touch neck (neckache)",
    "nausea or vomiting",
    "use a fan / feeling warm",
    "punching/slapping other person",
    "kicking other person",
    "pushing other person",
    "pat on back of other person",
    "point finger at the other person",
    "hugging other person",
    "giving something to other person",
    "touch other person's pocket",
    "handshaking",
    "walking towards each other",
    "walking apart from each other",
    "put on headphone",
    "take off headphone",
    "shoot at the basket",
    "bounce ball",
    "tennis bat swing",
    "juggling table tennis balls",
    "hush (quite)",
    "flick hair",
    "thumb up",
    "thumb down",
    "make ok sign",
    "make victory sign",
    "staple book",
    "counting money",
    "cutting nails",
    "cutting paper (using scissors)",
    "snapping fingers",
    "open bottle",
    "sniff (smell)",
    "squat down",
    "toss a coin",
    "fold paper",
    "ball up paper",
    "play magic cube",
    "apply cream on face",
    "apply cream on hand back",
    "put on bag",
    "take off bag",
    "put something into a bag",
    "take something out of a bag",
    "open a box",
    "move heavy objects",
    "shake fist",
    "throw up cap/hat",
    "hands up (both hands)",
    "cross arms",
    "arm circles",
    "arm swings",
    "running on the spot",
    "butt kicks (kick backward)",
    "cross toe touch",
    "side kick",
    "yawn",
    "stretch oneself",
    "blow nose",
    "hit other person with something",
    "wield knife towards other person",
    "knock over other person",
    "grab other person's stuff",
    "shoot at other person with a gun",
    "step on foot",
    "high-five",
    "cheers and drink",
    "carry something with other person",
    "take a photo of other person",
    "follow other person",
    "whisper in other person's ear",
    "exchange things with other person",
    "support somebody with hand",
    "finger-guessing game",
];

/// Names of the `k` classes of `dataset` (a store's `dataset` attribute).
pub fn class_names(dataset: &str, k: usize) -> Vec<String> {
    let known: Option<Vec<&str>> = match dataset {
        "ntu60" | "ntu120" => Some(NTU_ACTIONS.iter().take(k).copied().collect()),
        "synthetic" if k <= super::synth::MAX_CLASSES => Some(super::synth::class_names(k)),
        _ => None,
    };
    let mut names: Vec<String> = known
        .unwrap_or_default()
        .into_iter()
        .map(str::to_string)
        .collect();
    names.extend((names.len()..k).map(|i| format!("class {i}")));
    names
}

/// Class names of the store at `path` (empty when it cannot be opened).
pub fn for_store(path: &Path) -> Vec<String> {
    match super::store::Store::open(path) {
        Ok(store) => class_names(&store.meta().dataset, store.meta().num_classes),
        Err(e) => {
            tracing::debug!("no class names: {e}");
            Vec::new()
        }
    }
}
