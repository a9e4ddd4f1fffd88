//! Unleash-compatible sticky bucketing, so a user keeps their store as a rollout grows.

use std::io::Cursor;

/// The group name hashed with every key; changing it would reshuffle every user.
pub const ROLLOUT_GROUP: &str = "unified_attributes";

/// The bucket (1..=100) of `key` in `group`: `murmur3_x86_32("{group}:{key}", 0) % 100 + 1`,
/// as Unleash's flexible rollout computes it.
pub fn normalized_bucket(group: &str, key: &str) -> u32 {
    let input = format!("{group}:{key}");
    // Reading from an in-memory cursor cannot fail.
    let hash = murmur3::murmur3_32(&mut Cursor::new(input.as_bytes()), 0).unwrap_or_default();
    hash % 100 + 1
}

/// Whether `key` is in the first `percent` buckets. Raising `percent` only adds keys.
pub fn in_rollout(group: &str, key: &str, percent: u8) -> bool {
    percent > 0 && normalized_bucket(group, key) <= u32::from(percent)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    // Vectors of the Unleash client specification (flexible rollout).
    #[test]
    fn unleash_specification_vectors() {
        assert_eq!(normalized_bucket("Feature.flexibleRollout.10", "174"), 10);
        assert_eq!(normalized_bucket("Feature.flexibleRollout.10", "499"), 32);
        assert_eq!(
            normalized_bucket("Feature.flexibleRollout.userId.55", "25"),
            55
        );
        assert_eq!(
            normalized_bucket("Feature.flexibleRollout.sessionId.42", "147"),
            42
        );
    }

    #[test]
    fn zero_percent_includes_nobody_and_hundred_everybody() {
        for key in ["0", "1", "anonymous", ""] {
            assert!(!in_rollout(ROLLOUT_GROUP, key, 0));
            assert!(in_rollout(ROLLOUT_GROUP, key, 100));
        }
    }

    #[test]
    fn ten_percent_takes_about_a_tenth_of_users() {
        let inside = (0..10_000)
            .filter(|id| in_rollout(ROLLOUT_GROUP, &id.to_string(), 10))
            .count();
        assert!(
            (800..=1200).contains(&inside),
            "{inside} of 10000 in a 10% rollout"
        );
    }

    proptest! {
        #[test]
        fn raising_the_percentage_never_removes_a_key(key in ".{0,40}", low in 0u8..=100, step in 0u8..=100) {
            let high = low.saturating_add(step).min(100);
            if in_rollout(ROLLOUT_GROUP, &key, low) {
                prop_assert!(in_rollout(ROLLOUT_GROUP, &key, high));
            }
        }

        #[test]
        fn buckets_are_between_1_and_100(group in ".{0,20}", key in ".{0,40}") {
            prop_assert!((1..=100).contains(&normalized_bucket(&group, &key)));
        }
    }
}
