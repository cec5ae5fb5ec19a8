//! The benches' CPU clock.

use std::time::Duration;

/// The CPU time `clock` counted: `CLOCK_THREAD_CPUTIME_ID`, this thread's (on a shared
/// machine, wall time also counts the others' work); `CLOCK_PROCESS_CPUTIME_ID`, every
/// thread's of this process, those ended included.
pub fn cpu_time(clock: libc::clockid_t) -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `now` is.
    let status = unsafe { libc::clock_gettime(clock, &mut now) };
    assert_eq!(status, 0, "clock_gettime({clock})");
    Duration::new(
        u64::try_from(now.tv_sec).expect("positive"),
        u32::try_from(now.tv_nsec).expect("under a second"),
    )
}
