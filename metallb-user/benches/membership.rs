//! `cargo xtask bench membership`: the membership protocol (SWIM, `foca`) at 10, 100
//! and 1,000 members, in one process with simulated time (no sockets, a 200 µs
//! network taken in ticks of 1 ms): how long a killed member takes to be declared down by the first member
//! and by all of them (p50, p99), and the membership traffic per node in a steady
//! cluster, and the wall time of each size. Default timings (`--probe-interval`,
//! `--suspicion-timeout`). `MEMBERSHIP_TRIALS` sets the kills per size (default 20),
//! `MEMBERSHIP_SIZES` the sizes (default `10,100,1000`; 1,000 members take about 30 s,
//! the others a second or less, on 2 loaded cores).

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
    let timings = Timings::default();
    println!(
        "membership: probe interval {}, suspicion timeout {}, {trials} kills per size",
        ms(timings.probe_interval),
        ms(timings.suspicion_timeout)
    );
    println!(
        "{:>8} {:>14} {:>14} {:>14} {:>14} {:>12} {:>10}",
        "members", "first p50", "first p99", "all p50", "all p99", "bytes/s/node", "wall"
    );
    let sizes: Vec<usize> = std::env::var("MEMBERSHIP_SIZES")
        .unwrap_or_else(|_| "10,100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    for members in sizes {
        let started = Instant::now();
        let figures = measure(members, timings, trials, 42);
        println!(
            "{members:>8} {:>14} {:>14} {:>14} {:>14} {:>12.0} {:>9.1}s",
            ms(quantile(&figures.first_detection, 0.5)),
            ms(quantile(&figures.first_detection, 0.99)),
            ms(quantile(&figures.full_detection, 0.5)),
            ms(quantile(&figures.full_detection, 0.99)),
            figures.bytes_per_second_per_node,
            started.elapsed().as_secs_f64(),
        );
    }
}
