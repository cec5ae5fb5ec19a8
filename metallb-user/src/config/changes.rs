//! The word a source whose Services come sorted by key gives the replan ([`Changes`]):
//! from the keys it knows were touched since its last read (Kubernetes mode: the
//! Services and the owners of the EndpointSlices that watch events named), the keys
//! of that read and the keys now, one contiguous range of places. Pure.

use std::collections::BTreeSet;

use super::Changes;

/// A range of at most this many places is always said; a wider one only if it covers
/// at most half of the Services (wider, the word would save little: planning whole
/// looks at every Service anyway).
pub const NARROW: usize = 64;

/// What changed between a read whose Services had the keys `before` and one whose
/// Services have the keys `now` (each sorted, each key once), when the Services and
/// EndpointSlices of every key not in `touched` are those of the read before: the
/// places from the first to the last touched key, in one range (keys touched but in
/// neither list have no place, and change nothing). `None` when the lists are not
/// sorted or not alike outside the range (`touched` then misses a key), when more
/// Services were touched than a replan takes on (more than one in eight, and more
/// than 16), or when the range is wide ([`NARROW`]).
pub fn between<K: Ord>(before: &[K], now: &[K], touched: &BTreeSet<K>) -> Option<Changes> {
    let sorted = |keys: &[K]| keys.windows(2).all(|pair| pair[0] < pair[1]);
    if !sorted(before) || !sorted(now) {
        return None;
    }
    let (Some(first), Some(last)) = (touched.first(), touched.last()) else {
        return (before == now).then_some(Changes::default());
    };
    if touched.len() > 16.max(before.len().max(now.len()) / 8) {
        return None;
    }
    let at = now.partition_point(|k| k < first);
    let end_now = now.partition_point(|k| k <= last);
    let end_before = before.partition_point(|k| k <= last);
    if before.partition_point(|k| k < first) != at
        || before[..at] != now[..at]
        || before[end_before..] != now[end_now..]
    {
        return None;
    }
    // Inside the range, the keys not touched are in both reads.
    let kept = |k: &&K| !touched.contains(*k);
    if !(before[at..end_before].iter().filter(kept)).eq(now[at..end_now].iter().filter(kept)) {
        return None;
    }
    let changes = Changes {
        at,
        was: end_before - at,
        now: end_now - at,
    };
    let wide = changes.was.max(changes.now);
    (wide <= NARROW || wide <= before.len().max(now.len()) / 2).then_some(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &str) -> Vec<String> {
        names.split_whitespace().map(str::to_owned).collect()
    }

    fn set(names: &str) -> BTreeSet<String> {
        keys(names).into_iter().collect()
    }

    fn c(at: usize, was: usize, now: usize) -> Option<Changes> {
        Some(Changes { at, was, now })
    }

    #[test]
    fn the_touched_keys_give_one_range_of_places() {
        let abc = "a b c d e f g h";
        #[rustfmt::skip]
        let cases: &[(&str, &str, &str, &str, Option<Changes>)] = &[
            ("nothing touched", abc, abc, "", c(0, 0, 0)),
            ("nothing touched, but the keys differ", abc, "a b c", "", None),
            ("one changed", abc, abc, "d", c(3, 1, 1)),
            ("the first changed", abc, abc, "a", c(0, 1, 1)),
            ("the last changed", abc, abc, "h", c(7, 1, 1)),
            ("one inserted", abc, "a b c cc d e f g h", "cc", c(3, 0, 1)),
            ("inserted first", abc, "0 a b c d e f g h", "0", c(0, 0, 1)),
            ("inserted last", abc, "a b c d e f g h i", "i", c(8, 0, 1)),
            ("one removed", abc, "a b c e f g h", "d", c(3, 1, 0)),
            ("the first removed", abc, "b c d e f g h", "a", c(0, 1, 0)),
            ("the last removed", abc, "a b c d e f g", "h", c(7, 1, 0)),
            ("one removed, one inserted next to it", abc, "a b c dd e f g h", "d dd", c(3, 1, 1)),
            ("two far apart: one range", abc, abc, "b g", c(1, 6, 6)),
            ("far apart, one removed one inserted", abc, "a c d e f g gg h", "b gg", c(1, 6, 6)),
            ("touched, in neither read (made and deleted)", abc, abc, "cc", c(3, 0, 0)),
            ("touched, in neither read, after all", abc, abc, "z", c(8, 0, 0)),
            ("an unknown key and a change", abc, abc, "0 b", c(0, 2, 2)),
            ("a change not told (inserted, untouched)", abc, "a b c cc d e f g h", "f", None),
            ("a change not told (removed, untouched)", abc, "a b c e f g h", "f", None),
            ("a change not told, inside the range", abc, "a b c e f g h", "b f", None),
            ("not sorted now", abc, "a c b d e f g h", "a", None),
            ("not sorted before", "a c b", "a b c", "a", None),
            ("a key twice", "a a b", "a b", "a", None),
            ("from nothing", "", "a b", "a b", c(0, 0, 2)),
            ("to nothing", "a b", "", "a b", c(0, 2, 0)),
        ];
        for (what, before, now, touched, want) in cases {
            assert_eq!(
                between(&keys(before), &keys(now), &set(touched)),
                *want,
                "{what}"
            );
        }
    }

    #[test]
    fn too_many_touched_or_too_wide_a_range_says_nothing() {
        let many: Vec<String> = (0..1000).map(|i| format!("s{i:04}")).collect();
        let touched = |range: std::ops::Range<usize>| -> BTreeSet<String> {
            range.map(|i| many[i].clone()).collect()
        };
        // 125 = 1000 / 8 touched: said; 126: not.
        assert_eq!(between(&many, &many, &touched(100..225)), c(100, 125, 125));
        assert_eq!(between(&many, &many, &touched(100..226)), None);
        // Two far apart: one range, up to half of the Services.
        let two =
            |a: usize, b: usize| -> BTreeSet<String> { [many[a].clone(), many[b].clone()].into() };
        assert_eq!(between(&many, &many, &two(10, 509)), c(10, 500, 500));
        assert_eq!(between(&many, &many, &two(10, 510)), None);
        // A few Services: up to NARROW places whatever the share.
        let few = &many[..NARROW];
        assert_eq!(between(few, few, &two(0, NARROW - 1)), c(0, NARROW, NARROW));
    }

    /// Random reads of up to 40 keys, some inserted, removed or changed between them:
    /// told every changed key (and some unknown ones), the range covers every change
    /// and the reads are alike outside it; not told an inserted or removed one, no
    /// word at all.
    #[test]
    fn the_range_covers_every_change_told_and_none_hides_one_untold() {
        use rand::RngExt as _;
        let (seed, cases) = crate::property::settings("changes::between", 2000);
        let universe: Vec<String> = (0..40).map(|i| format!("k{i:02}")).collect();
        for case in 0..cases {
            let mut rng = crate::property::case_rng(seed, case);
            let before: Vec<String> = (universe.iter())
                .filter(|_| rng.random_range(0..3) > 0)
                .cloned()
                .collect();
            let mut now = before.clone();
            let mut changed = BTreeSet::new();
            for _ in 0..rng.random_range(0..6) {
                let key = crate::property::pick(&mut rng, &universe).clone();
                match now.binary_search(&key) {
                    // Removed, or its content changed.
                    Ok(at) if rng.random() => {
                        now.remove(at);
                    }
                    Ok(_) => {}
                    Err(at) => now.insert(at, key.clone()),
                }
                changed.insert(key);
            }
            let mut touched = changed.clone();
            for _ in 0..rng.random_range(0..3) {
                touched.insert(format!("x{}", rng.random_range(0..50)));
            }
            let what = format!("case {case}: {before:?} -> {now:?}, touched {touched:?}");
            let Some(c) = between(&before, &now, &touched) else {
                panic!("no word: {what}");
            };
            assert_eq!(before.len() - c.was, now.len() - c.now, "{what}");
            assert_eq!(before[..c.at], now[..c.at], "{what}");
            assert_eq!(before[c.at + c.was..], now[c.at + c.now..], "{what}");
            for key in &changed {
                let inside = |keys: &[String], n| keys[c.at..c.at + n].contains(key);
                assert!(
                    inside(&before, c.was) || !before.contains(key),
                    "{key}: {what}"
                );
                assert!(inside(&now, c.now) || !now.contains(key), "{key}: {what}");
            }
            // An insertion or removal not told: no word that leaves it out.
            let untold: Vec<&String> = (changed.iter())
                .filter(|k| before.contains(k) != now.contains(k))
                .collect();
            if let Some(&hidden) = untold.first() {
                let mut told = touched.clone();
                told.remove(hidden);
                assert_eq!(between(&before, &now, &told), None, "{hidden}: {what}");
            }
        }
    }

    /// The Kubernetes source's keys: by namespace, then name.
    #[test]
    fn service_keys_are_ordered_by_namespace_then_name() {
        use crate::allocator::ServiceKey;
        let key = |namespace: &str, name: &str| ServiceKey {
            namespace: namespace.into(),
            name: name.into(),
        };
        let before = vec![key("a", "z"), key("b", "a"), key("b", "c")];
        let now = vec![key("a", "z"), key("b", "a"), key("b", "b"), key("b", "c")];
        assert_eq!(between(&before, &now, &[key("b", "b")].into()), c(2, 0, 1));
    }
}
