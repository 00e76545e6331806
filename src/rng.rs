//! The one random number generator of pstl: ChaCha8 (`rand_chacha`), whose output is
//! fixed by its algorithm, unlike `rand::rngs::StdRng` (which may change between `rand`
//! versions). Every seeded draw (augmentations, masks, loader order, synthetic data,
//! evaluation subsets) uses it, so a seed gives the same run on any `rand` release.

/// The seeded RNG type (`PstlRng::seed_from_u64(seed)` via `rand::SeedableRng`).
pub type PstlRng = rand_chacha::ChaCha8Rng;
