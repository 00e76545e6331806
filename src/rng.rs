//! The one random number generator of pstl: ChaCha8 (`rand_chacha`), whose output is
//! fixed by its algorithm, unlike `rand::rngs::StdRng` (which may change between `rand`
//! versions). Every seeded draw (augmentations, masks, loader order, synthetic data,
//! evaluation subsets) uses it, so a seed gives the same run on any `rand` release.

/// The seeded RNG type (`PstlRng::seed_from_u64(seed)` via `rand::SeedableRng`).
pub type PstlRng = rand_chacha::ChaCha8Rng;

/// Seed of step `step` of a run seeded `seed` (SplitMix64 of the pair): every step of
/// pretraining, and every epoch of a classifier's training, draws from its own stream.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(step)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
