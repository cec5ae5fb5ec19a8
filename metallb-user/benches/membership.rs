//! `cargo xtask bench membership`: the membership protocol (SWIM, `foca`, and the
//! speakers' sync) at 10, 100 and 1,000 members, in one process with simulated time
//! (no sockets, a 200 µs network taken in ticks of 1 ms): how long a killed member
//! takes to be declared down by the first member and by all of them (p50, p99, and
//! the worst of the kills), how long a member that missed every copy of the news
//! (a lossy link to it) takes to catch up (p50, worst), the membership traffic per
//! node in a steady cluster, and the wall time of each size. Default timings
//! (`--probe-interval`, `--suspicion-timeout`, a sync every 500 ms).
//! Also the CPU time of the run (this thread's) per simulated member per simulated
//! second: what one speaker's membership costs, plus the simulator's own share.
//! `MEMBERSHIP_TRIALS` sets the kills per size (default 20), `MEMBERSHIP_MISSED` the
//! kills with a member that misses the news (default as many); `MEMBERSHIP_SIZES`
//! the sizes (default `10,100,1000`; 1,000 members take one to two CPU-minutes, the
//! others seconds); `MEMBERSHIP_SYNC` the sync interval in milliseconds, or `off` for
//! foca alone (then a member that missed the news waits for its own probe: 1,000
//! members take several minutes).

mod cpu;

use std::time::{Duration, Instant};

use cpu::cpu_time;

use metallb_user::membership::{
    Timings,
    simulation::{measure, quantile},
};

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn env_count(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    let trials = env_count("MEMBERSHIP_TRIALS").unwrap_or(20);
    let missed = env_count("MEMBERSHIP_MISSED").unwrap_or(trials);
    let mut timings = Timings::default();
    if let Ok(sync) = std::env::var("MEMBERSHIP_SYNC") {
        timings.sync_interval = match sync.parse() {
            Ok(ms) => Some(Duration::from_millis(ms)),
            Err(_) => None,
        };
    }
    println!(
        "membership: probe interval {}, suspicion timeout {}, sync {}, {trials} kills per size, {missed} more with a member that misses the news",
        ms(timings.probe_interval),
        ms(timings.suspicion_timeout),
        timings.sync_interval.map_or_else(
            || "off".to_string(),
            |interval| format!("every {}", ms(interval))
        ),
    );
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11} {:>12} {:>10} {:>12} {:>8}",
        "members",
        "first p50",
        "first p99",
        "all p50",
        "all p99",
        "all max",
        "missed p50",
        "missed max",
        "bytes/s/node",
        "simulated",
        "CPU/node/s",
        "wall"
    );
    let sizes: Vec<usize> = std::env::var("MEMBERSHIP_SIZES")
        .unwrap_or_else(|_| "10,100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for members in sizes {
        let (started, cpu) = (Instant::now(), cpu_time(libc::CLOCK_THREAD_CPUTIME_ID));
        let figures = measure(members, timings, trials, missed, 42);
        let cpu = cpu_time(libc::CLOCK_THREAD_CPUTIME_ID) - cpu;
        // Per member and per second of simulated time.
        let per_node_second =
            cpu.as_secs_f64() / members as f64 / figures.simulated.as_secs_f64().max(1e-9);
        println!(
            "{members:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11} {:>12.0} {:>9.1}s {:>9.0} µs {:>7.1}s",
            ms(quantile(&figures.first_detection, 0.5)),
            ms(quantile(&figures.first_detection, 0.99)),
            ms(quantile(&figures.full_detection, 0.5)),
            ms(quantile(&figures.full_detection, 0.99)),
            ms(quantile(&figures.full_detection, 1.0)),
            ms(quantile(&figures.missed_news, 0.5)),
            ms(quantile(&figures.missed_news, 1.0)),
            figures.bytes_per_second_per_node,
            figures.simulated.as_secs_f64(),
            per_node_second * 1e6,
            started.elapsed().as_secs_f64(),
        );
    }
}
