//! The calling thread's time on a CPU and its time runnable but waiting for one, as the
//! kernel keeps them (`/proc/thread-self/schedstat`, nanoseconds). On a node whose CPUs
//! are busy with other work, the wall time of a step includes that wait; the speaker
//! logs it apart, so that a slow apply can be told from a busy machine.

use std::time::Duration;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadClock {
    pub on_cpu: Duration,
    pub waited_for_cpu: Duration,
}

impl ThreadClock {
    /// The calling thread's clock; `None` where the kernel keeps no schedstat
    /// (CONFIG_SCHED_INFO off) or /proc is not mounted.
    pub fn now() -> Option<Self> {
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        Self::parse(&text)
    }

    /// `on-cpu-ns waited-ns timeslices`.
    fn parse(text: &str) -> Option<Self> {
        let mut fields = text.split_ascii_whitespace();
        let mut next =
            || -> Option<Duration> { Some(Duration::from_nanos(fields.next()?.parse().ok()?)) };
        Some(Self {
            on_cpu: next()?,
            waited_for_cpu: next()?,
        })
    }

    /// What the thread spent of each since `earlier` (a clock of the same thread).
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            on_cpu: self.on_cpu.saturating_sub(earlier.on_cpu),
            waited_for_cpu: self.waited_for_cpu.saturating_sub(earlier.waited_for_cpu),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kernels_line_and_refuses_anything_else() {
        let table: &[(&str, Option<(u64, u64)>)] = &[
            ("2087161 4093 26\n", Some((2_087_161, 4_093))),
            ("0 0 0", Some((0, 0))),
            ("18446744073709551615 1 1\n", Some((u64::MAX, 1))),
            ("", None),
            ("12\n", None),
            ("12 x 3\n", None),
            ("-1 2 3\n", None),
        ];
        for (text, expected) in table {
            let parsed = ThreadClock::parse(text).map(|c| {
                (
                    c.on_cpu.as_nanos() as u64,
                    c.waited_for_cpu.as_nanos() as u64,
                )
            });
            assert_eq!(parsed, *expected, "{text:?}");
        }
    }

    #[test]
    fn the_time_since_an_earlier_clock_is_the_difference_of_both_fields() {
        let ms = Duration::from_millis;
        let earlier = ThreadClock {
            on_cpu: ms(5),
            waited_for_cpu: ms(2),
        };
        let later = ThreadClock {
            on_cpu: ms(8),
            waited_for_cpu: ms(12),
        };
        assert_eq!(
            later.since(&earlier),
            ThreadClock {
                on_cpu: ms(3),
                waited_for_cpu: ms(10)
            }
        );
        // A clock of another thread may be behind: nothing, not a wrap.
        assert_eq!(earlier.since(&later), ThreadClock::default());
    }

    #[test]
    fn this_threads_clock_moves_forward_with_work() {
        let before = ThreadClock::now().expect("this kernel keeps schedstat");
        let mut x = 0u64;
        let busy = std::time::Instant::now();
        while busy.elapsed() < Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let after = ThreadClock::now().expect("schedstat was readable a moment ago");
        assert!(after.since(&before).on_cpu > Duration::ZERO);
    }
}
