//! Seeds and case counts of the property tests (configuration, allocator): a fixed
//! seed unless `PROPERTY_SEED` gives another, `PROPERTY_CASES` cases per property
//! (the default keeps CI at a few seconds); both are printed, to replay a failure.

use rand::{RngExt as _, SeedableRng as _, rngs::StdRng};

/// The seed when `PROPERTY_SEED` is not set.
const DEFAULT_SEED: u64 = 0x6d65_7461_6c6c_6232;

/// (seed, cases) for the property `name`, printed.
pub(crate) fn settings(name: &str, default_cases: usize) -> (u64, usize) {
    let read = |var: &str| std::env::var(var).ok().and_then(|v| v.trim().parse().ok());
    let seed = read("PROPERTY_SEED").unwrap_or(DEFAULT_SEED);
    let cases = read("PROPERTY_CASES").map_or(default_cases, |c: u64| c as usize);
    println!("{name}: PROPERTY_SEED={seed} PROPERTY_CASES={cases}");
    (seed, cases)
}

/// The generator of case `case`: each case replays alone from the seed.
pub(crate) fn case_rng(seed: u64, case: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (case as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// One element of `items` (not empty).
pub(crate) fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}
