//! The agent's side of self-fencing: a heartbeat that keeps moving the datapath's
//! fence deadline forward (see `metallb-ebpf/src/fence.rs` for the timer that
//! enforces it). A thread of its own, not a task: a busy runtime must not cost a
//! heartbeat. It writes one word of shared memory per beat; no syscall.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tracing::{info, warn};

use crate::{
    datapath::{fence_at, maps::FenceControl, monotonic_ns},
    membership::FenceTimings,
};

/// The running heartbeat.
pub struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<FenceControl>>,
}

impl Heartbeat {
    /// Starts renewing the deadline every [`FenceTimings::heartbeat_interval`]. When
    /// it finds the deadline passed (this process was paused, or the datapath was
    /// adopted fenced), it waits `rejoin_hold` before renewing, so that a peer that
    /// took over hears this node rejoin and lets go first.
    pub fn start(
        control: FenceControl,
        timings: FenceTimings,
        rejoin_hold: Duration,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("fence-heartbeat".into())
            .spawn({
                let stop = stop.clone();
                move || beat(control, timings, rejoin_hold, &stop)
            })?;
        info!(
            deadline = %humantime::format_duration(timings.deadline),
            interval = ?timings.heartbeat_interval(),
            "fencing on: the datapath stops answering if this agent misses its heartbeat"
        );
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops beating, and leaves the deadline at `last` from now (`None`: never).
    pub fn stop(mut self, last: Option<Duration>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(control) => control.set_fence_at(fence_at(last)),
                Err(_) => warn!("the fence heartbeat thread panicked"),
            }
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The heartbeat's real-time priority (SCHED_FIFO, 1 to 99): above every ordinary
/// thread, so that neither a saturated CPU nor the wake-up after a pause delays a
/// beat; low among real-time ones. The thread sleeps between beats and writes one
/// word per beat: it cannot starve anything.
const HEARTBEAT_PRIORITY: i32 = 10;

/// Runs the calling thread under SCHED_FIFO at `priority` where allowed (it needs
/// CAP_SYS_NICE), and logs whether it does: "`thread` runs SCHED_FIFO: `gained`", or
/// "`thread` at normal priority (...): `otherwise`". Refused, the thread goes on at
/// normal priority.
pub(crate) fn run_realtime(priority: i32, thread: &str, gained: &str, otherwise: &str) {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: 0 is the calling thread; a valid sched_param.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0 {
        info!(priority, "{thread} runs SCHED_FIFO: {gained}");
    } else {
        let error = std::io::Error::last_os_error();
        info!(
            %error,
            "{thread} at normal priority (SCHED_FIFO needs CAP_SYS_NICE): {otherwise}"
        );
    }
}

fn beat(
    control: FenceControl,
    timings: FenceTimings,
    rejoin_hold: Duration,
    stop: &AtomicBool,
) -> FenceControl {
    run_realtime(
        HEARTBEAT_PRIORITY,
        "fence heartbeat",
        "a busy CPU does not delay it",
        "a saturated CPU may delay it past --fence-deadline, and the datapath then fences for a moment",
    );
    let interval = timings.heartbeat_interval();
    // The deadline as last written (an earlier agent's, at first).
    let mut written = control.ctl().fence_at;
    let mut hold_until: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let now = monotonic_ns();
        // Past the deadline written last: the timer has fenced, or is about to.
        if written != 0 && now >= written && hold_until.is_none() {
            let late = Duration::from_nanos(now - written);
            warn!(
                late_by = ?late,
                hold = ?rejoin_hold,
                "the fence deadline passed (this agent was paused or started late): the datapath answers nothing until the hold is over"
            );
            hold_until = Some(Instant::now() + rejoin_hold);
        }
        match hold_until {
            Some(until) if Instant::now() < until => {}
            held => {
                if held.is_some() {
                    info!("heartbeat renewed after the hold: the datapath answers again");
                }
                hold_until = None;
                written = fence_at(Some(timings.deadline));
                control.set_fence_at(written);
            }
        }
        std::thread::sleep(interval);
    }
    control
}
