//! `cargo xtask bench membership`: the membership protocol (SWIM, `foca`, and the
//! speakers' sync) at 10, 100 and 1,000 members, in one process with simulated time
//! (no sockets, a 200 µs network taken in ticks of 1 ms): how long a killed member
//! takes to be declared down by the first member and by all of them (p50, p99, and
//! the worst of the kills), how long a member that missed every copy of the news
//! (a lossy link to it) takes to catch up (p50, worst), the membership traffic per
//! node in a steady cluster, and the wall time of each size. Default timings
//! (`--probe-interval`, `--suspicion-timeout`, a sync every 500 ms).
//! `MEMBERSHIP_TRIALS` sets the kills per size (default 20), and as many again with a
//! member that misses the news; `MEMBERSHIP_SIZES` the sizes (default `10,100,1000`;
//! 1,000 members take about a minute, the others seconds, on 2 loaded cores);
//! `MEMBERSHIP_SYNC` the sync interval in milliseconds, or `off` for foca alone (then
//! a member that missed the news waits for its own probe: 1,000 members take
//! minutes).

use std::time::{Duration, Instant};

use metallb_user::membership::{
    Timings,
    simulation::{measure, quantile},
};

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let trials = std::env::var("MEMBERSHIP_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut timings = Timings::default();
    if let Ok(sync) = std::env::var("MEMBERSHIP_SYNC") {
        timings.sync_interval = match sync.parse() {
            Ok(ms) => Some(Duration::from_millis(ms)),
            Err(_) => None,
        };
    }
    println!(
        "membership: probe interval {}, suspicion timeout {}, sync {}, {trials} kills per size, {trials} more with a member that misses the news",
        ms(timings.probe_interval),
        ms(timings.suspicion_timeout),
        timings.sync_interval.map_or_else(
            || "off".to_string(),
            |interval| format!("every {}", ms(interval))
        ),
    );
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11} {:>12} {:>8}",
        "members",
        "first p50",
        "first p99",
        "all p50",
        "all p99",
        "all max",
        "missed p50",
        "missed max",
        "bytes/s/node",
        "wall"
    );
    let sizes: Vec<usize> = std::env::var("MEMBERSHIP_SIZES")
        .unwrap_or_else(|_| "10,100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for members in sizes {
        let started = Instant::now();
        let figures = measure(members, timings, trials, trials, 42);
        println!(
            "{members:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11} {:>12.0} {:>7.1}s",
            ms(quantile(&figures.first_detection, 0.5)),
            ms(quantile(&figures.first_detection, 0.99)),
            ms(quantile(&figures.full_detection, 0.5)),
            ms(quantile(&figures.full_detection, 0.99)),
            ms(quantile(&figures.full_detection, 1.0)),
            ms(quantile(&figures.missed_news, 0.5)),
            ms(quantile(&figures.missed_news, 1.0)),
            figures.bytes_per_second_per_node,
            started.elapsed().as_secs_f64(),
        );
    }
}
