//! `cargo xtask bench datapath`: nanoseconds per frame of the XDP responder, next to
//! two floor programs (XDP_PASS, XDP_TX), with 1, 1,000 and 100,000 VIPs per family.
//!
//! Two methods, both printed:
//!
//! - **Hot loop** (the figures the targets are checked against): BPF_PROG_TEST_RUN
//!   with `repeat` = 50,000, timed by the kernel's bpf_stats (run_time_ns / run_cnt of
//!   the entry program). The kernel runs a program again on its own output, and an
//!   answered request has become a reply, so the hit rows go through the `replay`
//!   program: it restores a pristine request before every run and tail-calls the
//!   program in its slot. The floor of such a row is the same replay with the floor
//!   program in the slot, so the difference is the responder's own cost. Hit rows
//!   cycle over 16 VIPs spread over the table (caches warm: the cost of the code and
//!   of the probe distances of a full table), and over up to 1,024 VIPs (big tables
//!   then pay cache and TLB misses). After each run the responder's outcome counter
//!   (for answers: the replies of the VIPs asked) must have grown by exactly
//!   `repeat`: every run took the path named.
//! - **One frame per syscall**: BPF_PROG_TEST_RUN with repeat = 1 and the kernel's
//!   bpf_stats (run_time_ns / run_cnt), which adds the same two clock reads to every
//!   program, floors included. Caches and branch predictors are cold-ish here: the
//!   syscall runs a lot of kernel code between two frames.
//!
//! While tuning: `BENCH_HOT_ONLY=1` skips the second method, `BENCH_PATHS_ONLY=1`
//! both (it prints the JITed instruction counts only), `BENCH_SIZES=1000` (a
//! comma list) measures only those table sizes, and `BENCH_BASELINE=PATH` also runs
//! another build of the responder object (same map layouts: it shares the maps) in
//! the same hot-loop rounds, for a side-by-side comparison.
//!
//! Scenarios are interleaved in rounds, so that the noise of a shared machine hits all
//! rows alike. The hot loop loads each program (the responder, the floors, a baseline)
//! several times, `BENCH_PLACEMENTS` (5 by default): the JIT puts each load at a random
//! offset, and the code's alignment moves a row by up to 2 ns. It reports, per load,
//! the fastest round (the code is deterministic: anything slower is the machine's
//! noise, which also scales the differences), and the median over the loads, with the
//! range of the loads' differences to the floor. The one-frame-per-syscall method
//! reports medians (a difference to a floor is the median of the per-round
//! differences) of one load.

mod jit;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use anyhow::Context as _;
use aya::{
    Ebpf, TestRun as _, include_bytes_aligned,
    maps::{Array, MapData, ProgramArray},
    programs::{ProgramInfo, TestRunOptions, Xdp},
    sys::{Stats, enable_stats},
};
use etherparse::PacketBuilder;
use metallb_common::{
    Outcome, VipAction,
    replay::{self, ReplayCursor, ReplayFrame},
};
use metallb_testkit::lab::{NetnsGuard, ScratchPinDir};
use metallb_user::datapath::{
    Datapath, DatapathOptions, HELPERS_OBJECT, RESPONDER_OBJECT,
    iface::MacAddr,
    load_object,
    maps::{VipConfig, VipKey},
    test_run, xdp_md,
};

const SIZES: [u32; 3] = [1, 1_000, 100_000];
/// The responder's table capacity: the largest size.
const MAX_VIPS: u32 = 100_000;
const HOT_ROUNDS: usize = 61;
/// Loads of each program in the hot loop (see [`Estimator::Fastest`]).
const PLACEMENTS: usize = 5;
const HOT_REPEAT: u32 = 50_000;
const COLD_ROUNDS: usize = 15;
const COLD_FRAMES_PER_ROUND: u32 = 2_000;
/// The replay program: see the module comment.
static REPLAY_OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/replay"));
const ASKER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const NODE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];
const ASKER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const ASKER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
/// Loopback: where BPF_PROG_TEST_RUN delivers frames without a device.
const IFINDEX: u32 = 1;

/// The i-th VIP of each family: 10.x.y.z and 2001:db8::/96 + i.
fn vip_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + i)
}
fn vip_v6(i: u32) -> Ipv6Addr {
    Ipv6Addr::from((0x2001_0db8u128 << 96) + i as u128)
}
/// Addresses in none of the tables.
fn missing_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0ac8_0000 + i)
}

/// Up to `count` VIP indexes spread evenly over a table of `size` VIPs.
fn spread(size: u32, count: u32) -> impl Iterator<Item = u32> {
    let count = size.min(count);
    (0..count).map(move |j| (j as u64 * size as u64 / count as u64) as u32)
}

/// VIPs the hit rows ask for in turn: few enough to stay in the caches, enough to
/// average over the probe distances of a full table.
const WARM_VIPS: u32 = 16;

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    metallb_testkit::frames::arp_request(ASKER_MAC, ASKER_V4, target)
}

fn neighbor_solicitation(target: Ipv6Addr) -> Vec<u8> {
    metallb_testkit::frames::neighbor_solicitation(ASKER_MAC, ASKER_V6, target)
}

fn udp_frame() -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(ASKER_MAC, NODE_MAC)
        .ipv4(ASKER_V4.octets(), vip_v4(0).octets(), 64)
        .udp(40000, 443)
        .write(&mut out, &[0u8; 64])
        .expect("UDP frame");
    out
}

#[derive(Clone, Copy)]
enum Floor {
    Pass,
    Tx,
}

struct Scenario {
    name: &'static str,
    /// The frames of a run with a table of `size` VIPs (the first one alone for a run
    /// without replay, and for the one-frame-per-syscall method).
    frames: fn(u32) -> Vec<Vec<u8>>,
    /// What the responder must do with every one of them.
    outcome: Outcome,
    floor: Floor,
    /// Through the replay program (the frame is rewritten, or frames vary).
    replayed: bool,
    /// The bound the issue sets for (row - floor), in ns.
    target_ns: Option<f64>,
}

const SCENARIOS: [Scenario; 6] = [
    Scenario {
        name: "pass-through (IPv4 UDP)",
        frames: |_| vec![udp_frame()],
        outcome: Outcome::PassNotArpOrNdp,
        floor: Floor::Pass,
        replayed: false,
        target_ns: Some(3.0),
    },
    Scenario {
        name: "ARP request, hit",
        frames: |size| {
            spread(size, WARM_VIPS)
                .map(|i| arp_request(vip_v4(i)))
                .collect()
        },
        outcome: Outcome::TxArpReply,
        floor: Floor::Tx,
        replayed: true,
        target_ns: Some(15.0),
    },
    Scenario {
        name: "NS, hit",
        frames: |size| {
            spread(size, WARM_VIPS)
                .map(|i| neighbor_solicitation(vip_v6(i)))
                .collect()
        },
        outcome: Outcome::TxNeighborAdvert,
        floor: Floor::Tx,
        replayed: true,
        target_ns: Some(15.0),
    },
    Scenario {
        name: "ARP request, miss",
        frames: |_| vec![arp_request(missing_v4(0))],
        outcome: Outcome::PassUnknownTarget,
        floor: Floor::Pass,
        replayed: false,
        target_ns: None,
    },
    Scenario {
        name: "ARP hit, 1,024 VIPs",
        frames: |size| {
            spread(size, replay::MAX_FRAMES)
                .map(|i| arp_request(vip_v4(i)))
                .collect()
        },
        outcome: Outcome::TxArpReply,
        floor: Floor::Tx,
        replayed: true,
        target_ns: None,
    },
    Scenario {
        name: "NS hit, 1,024 VIPs",
        frames: |size| {
            spread(size, replay::MAX_FRAMES)
                .map(|i| neighbor_solicitation(vip_v6(i)))
                .collect()
        },
        outcome: Outcome::TxNeighborAdvert,
        floor: Floor::Tx,
        replayed: true,
        target_ns: None,
    },
];

/// Rows timed one frame per syscall too: the first four (the others cycle frames).
const COLD_SCENARIOS: usize = 4;

fn verdict(outcome: Outcome) -> u32 {
    match outcome {
        Outcome::TxArpReply | Outcome::TxNeighborAdvert => 3,
        Outcome::DropSuppressed => 1,
        _ => 2,
    }
}

/// The VIP that a frame of an answering scenario asks for (the ARP target or the
/// solicitation's target).
fn answered_vip(outcome: Outcome, frame: &[u8]) -> Option<VipKey> {
    let addr: IpAddr = match outcome {
        Outcome::TxArpReply => Ipv4Addr::from(<[u8; 4]>::try_from(frame.get(38..42)?).ok()?).into(),
        Outcome::TxNeighborAdvert => {
            Ipv6Addr::from(<[u8; 16]>::try_from(frame.get(62..78)?).ok()?).into()
        }
        _ => return None,
    };
    Some(VipKey {
        addr,
        ifindex: IFINDEX,
        vlan_id: 0,
    })
}

/// How many frames have had `outcome` so far. The program counts answers as their
/// VIPs' replies: for those, the replies of the VIPs that `frames` ask for.
fn outcome_count(dp: &Datapath, outcome: Outcome, frames: &[Vec<u8>]) -> anyhow::Result<u64> {
    let vips: BTreeSet<VipKey> = frames
        .iter()
        .filter_map(|frame| answered_vip(outcome, frame))
        .collect();
    if vips.is_empty() {
        return Ok(dp.stats()?.get(outcome));
    }
    vips.iter().try_fold(0, |sum, key| {
        let counters = dp
            .vip_counters(key)?
            .context("an asked VIP is not installed")?;
        Ok(sum + counters.replies)
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The programs of a run: the responder, the floors, and the replay program with its
/// maps.
struct Bench<'a> {
    /// One load of each floor program per placement (see [`placements`]).
    floor_pass: Vec<&'a Xdp>,
    floor_tx: Vec<&'a Xdp>,
    replay: &'a Xdp,
    frames: Array<MapData, ReplayFrame>,
    cursor: Array<MapData, ReplayCursor>,
    subject: ProgramArray<MapData>,
    /// See [`ReplayCursor::settle`].
    settle: bool,
}

impl<'a> Bench<'a> {
    fn floor(&self, floor: Floor, placement: usize) -> &'a Xdp {
        match floor {
            Floor::Pass => self.floor_pass[placement],
            Floor::Tx => self.floor_tx[placement],
        }
    }

    /// Loads the frames into the replay program and rewinds it.
    fn load_frames(&mut self, frames: &[Vec<u8>]) -> anyhow::Result<()> {
        for (i, frame) in frames.iter().enumerate() {
            let mut slot = ReplayFrame {
                bytes: [0; replay::FRAME_BYTES],
            };
            anyhow::ensure!(
                frame.len() == frames[0].len(),
                "replayed frames differ in length"
            );
            slot.bytes[..frame.len()].copy_from_slice(frame);
            self.frames.set(i as u32, slot, 0)?;
        }
        self.cursor.set(
            0,
            ReplayCursor {
                next: 0,
                count: frames.len() as u32,
                settle: u64::from(self.settle),
                settled: 0,
            },
            0,
        )?;
        Ok(())
    }

    /// ns per frame of `program` over `HOT_REPEAT` runs, directly or through the
    /// replay program (whose frames are loaded), and the verdict of the last run.
    fn hot(&mut self, program: &Xdp, frame: &[u8], replayed: bool) -> anyhow::Result<(f64, u32)> {
        let entry = if replayed {
            self.subject.set(0, program.fd()?, 0)?;
            self.cursor.set(
                0,
                ReplayCursor {
                    next: 0,
                    ..self.cursor.get(&0, 0)?
                },
                0,
            )?;
            self.replay
        } else {
            program
        };
        let ctx = xdp_md(frame.len(), IFINDEX);
        let mut options = TestRunOptions::new();
        options.data_in = Some(frame);
        options.ctx_in = Some(&ctx);
        options.repeat = HOT_REPEAT;
        let before = run_time(entry)?;
        let result = entry.test_run(options)?;
        let after = run_time(entry)?;
        anyhow::ensure!(after.1 - before.1 == HOT_REPEAT as u64, "runs not counted");
        Ok((
            (after.0 - before.0) as f64 / HOT_REPEAT as f64,
            result.return_value,
        ))
    }
}

fn run_time(program: &Xdp) -> anyhow::Result<(u64, u64)> {
    let info: ProgramInfo = program.info().context("program info")?;
    Ok((info.run_time().as_nanos() as u64, info.run_count()))
}

/// Per scenario: the responder's and the floor's ns per frame, per size, per round.
#[derive(Clone, Default)]
struct Samples {
    subject: Vec<Vec<f64>>,
    floor: Vec<Vec<f64>>,
    /// The `BENCH_BASELINE` build, if any.
    baseline: Vec<Vec<f64>>,
}

/// One round: every scenario, and in each, every placement's floor, responder and
/// baseline, one after another. The samples of a size are kept round by round, and
/// within a round placement by placement.
fn hot_round(
    bench: &mut Bench,
    dp: &Datapath,
    subjects: &[&Xdp],
    baselines: &[&Xdp],
    size: u32,
    samples: &mut [Samples],
    keep: bool,
) -> anyhow::Result<()> {
    for (scenario, samples) in SCENARIOS.iter().zip(samples.iter_mut()) {
        let frames = (scenario.frames)(size);
        if scenario.replayed {
            bench.load_frames(&frames)?;
        }
        for (placement, subject) in subjects.iter().enumerate() {
            let floor = bench.floor(scenario.floor, placement);
            let (floor_ns, floor_verdict) = bench.hot(floor, &frames[0], scenario.replayed)?;
            anyhow::ensure!(
                floor_verdict == verdict(scenario.outcome),
                "{}: floor verdict {floor_verdict}",
                scenario.name
            );
            let mut run_subject = |program: &Xdp| -> anyhow::Result<f64> {
                let before = outcome_count(dp, scenario.outcome, &frames)?;
                let (ns, subject_verdict) = bench.hot(program, &frames[0], scenario.replayed)?;
                let counted = outcome_count(dp, scenario.outcome, &frames)? - before;
                anyhow::ensure!(
                    subject_verdict == verdict(scenario.outcome)
                        && (counted == HOT_REPEAT as u64
                            || std::env::var_os("BENCH_NOCOUNT").is_some()),
                    "{}: verdict {subject_verdict}, {counted} of {HOT_REPEAT} runs counted as {}",
                    scenario.name,
                    scenario.outcome.name()
                );
                Ok(ns)
            };
            let ns = run_subject(subject)?;
            let baseline_ns = baselines
                .get(placement)
                .map(|baseline| run_subject(baseline))
                .transpose()?;
            if keep {
                samples.subject.last_mut().context("no size")?.push(ns);
                samples.floor.last_mut().context("no size")?.push(floor_ns);
                if let Some(baseline_ns) = baseline_ns {
                    samples
                        .baseline
                        .last_mut()
                        .context("no size")?
                        .push(baseline_ns);
                }
            }
        }
    }
    Ok(())
}

fn cold_round(
    bench: &Bench,
    dp: &Datapath,
    size: u32,
    samples: &mut [Samples],
    keep: bool,
) -> anyhow::Result<()> {
    for (scenario, samples) in SCENARIOS[..COLD_SCENARIOS].iter().zip(samples.iter_mut()) {
        let frame = &(scenario.frames)(size)[0];
        let subject = dp.program()?;
        let mut per_program = [0.0; 2];
        for (program, ns) in [bench.floor(scenario.floor, 0), subject]
            .into_iter()
            .zip(&mut per_program)
        {
            let before = run_time(program)?;
            for _ in 0..COLD_FRAMES_PER_ROUND {
                let (got, _) = test_run(program, frame, IFINDEX)?;
                anyhow::ensure!(
                    got == verdict(scenario.outcome),
                    "{}: verdict {got}",
                    scenario.name
                );
            }
            let after = run_time(program)?;
            *ns = (after.0 - before.0) as f64 / (after.1 - before.1).max(1) as f64;
        }
        if keep {
            samples
                .floor
                .last_mut()
                .context("no size")?
                .push(per_program[0]);
            samples
                .subject
                .last_mut()
                .context("no size")?
                .push(per_program[1]);
        }
    }
    Ok(())
}

/// How a row's rounds are summarised.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Estimator {
    /// Per load of a program (a placement: the JIT puts each load at a random offset,
    /// and the code's alignment moves its time by up to 2 ns), the fastest round; then
    /// the median over the loads. For a hot loop of deterministic code, everything
    /// slower than the fastest round is noise added by the machine (interrupts, a busy
    /// sibling thread, frequency changes), which scales the difference too; the
    /// placement is not noise but a draw, made again at every load: the median is
    /// the typical one. Samples are kept round by round, placement by placement.
    Fastest { placements: usize },
    /// The median round, and the median of the per-round differences.
    Median,
}

fn minimum(values: impl IntoIterator<Item = f64>) -> f64 {
    values.into_iter().fold(f64::MAX, f64::min)
}

/// Each placement's fastest round (see [`Estimator::Fastest`]).
fn fastest_per_placement(values: &[f64], placements: usize) -> Vec<f64> {
    (0..placements)
        .map(|p| minimum(values.iter().skip(p).step_by(placements).copied()))
        .collect()
}

fn estimate(values: &[f64], estimator: Estimator) -> f64 {
    match estimator {
        Estimator::Fastest { placements } => median(fastest_per_placement(values, placements)),
        Estimator::Median => median(values.to_vec()),
    }
}

fn print_table(title: &str, sizes: &[u32], samples: &[Samples], estimator: Estimator) {
    println!("\n{title}");
    print!("{:<26}", "scenario");
    for size in sizes {
        print!("{:>12}", format!("{size} VIPs"));
    }
    println!("   vs floor (worst size)   target");
    for (scenario, samples) in SCENARIOS.iter().zip(samples) {
        if samples.subject.iter().all(Vec::is_empty) {
            continue;
        }
        let summary = |rows: &Vec<Vec<f64>>| {
            rows.iter()
                .map(|r| estimate(r, estimator))
                .collect::<Vec<_>>()
        };
        let floor_name = match scenario.floor {
            Floor::Pass => "  floor XDP_PASS",
            Floor::Tx => "  floor XDP_TX",
        };
        let diffs: Vec<f64> = samples
            .subject
            .iter()
            .zip(&samples.floor)
            .map(|(s, f)| match estimator {
                Estimator::Fastest { .. } => estimate(s, estimator) - estimate(f, estimator),
                Estimator::Median => median(s.iter().zip(f).map(|(a, b)| a - b).collect()),
            })
            .collect();
        let worst = diffs.iter().cloned().fold(f64::MIN, f64::max);
        // How far the placements' own differences spread, at the worst size.
        let placements_range = match estimator {
            Estimator::Fastest { placements } if placements > 1 => {
                let at = diffs.iter().position(|d| *d == worst).unwrap_or(0);
                let each: Vec<f64> = fastest_per_placement(&samples.subject[at], placements)
                    .iter()
                    .zip(fastest_per_placement(&samples.floor[at], placements))
                    .map(|(s, f)| s - f)
                    .collect();
                format!(
                    "   (each load: {:+.1} to {:+.1})",
                    minimum(each.iter().copied()),
                    each.iter().copied().fold(f64::MIN, f64::max)
                )
            }
            _ => String::new(),
        };
        print!("{:<26}", scenario.name);
        for ns in summary(&samples.subject) {
            print!("{ns:>12.1}");
        }
        // The targets are checked against the hot loop's figures: one frame per
        // syscall times the kernel's cache misses between frames as much as the program.
        let target = match scenario
            .target_ns
            .filter(|_| matches!(estimator, Estimator::Fastest { .. }))
        {
            Some(target) => format!(
                "<= {target:.0} ns ({})",
                if worst <= target { "met" } else { "NOT met" }
            ),
            None => "-".to_string(),
        };
        println!("   {worst:>+14.1} ns   {target}{placements_range}");
        print!("{floor_name:<26}");
        for ns in summary(&samples.floor) {
            print!("{ns:>12.1}");
        }
        let spread = diffs.iter().cloned().fold(f64::MIN, f64::max)
            - diffs.iter().cloned().fold(f64::MAX, f64::min);
        println!("   (vs floor across the table sizes: spread {spread:.1} ns)");
        if samples.baseline.iter().any(|rows| !rows.is_empty()) {
            // Only the hot loop runs the baseline, with as many placements.
            let baseline_worst = samples
                .baseline
                .iter()
                .zip(&samples.floor)
                .map(|(b, f)| estimate(b, estimator) - estimate(f, estimator))
                .fold(f64::MIN, f64::max);
            print!("{:<26}", "  BENCH_BASELINE");
            for ns in summary(&samples.baseline) {
                print!("{ns:>12.1}");
            }
            println!("   {baseline_worst:>+14.1} ns");
        }
    }
}

/// The machine instructions the JIT made of each program: a figure that does not
/// depend on the CPU kind (the ns do), for every path at once. The code is read from
/// the kernel (BPF_OBJ_GET_INFO_BY_FD, as `bpftool prog dump jited` does; Debian's
/// bpftool is built without its disassembler) and decoded by objdump (binutils, there
/// with the linker).
fn print_jited(programs: &[(&str, &Xdp)]) -> anyhow::Result<()> {
    println!("\nJITed code (x86-64 instructions; the whole program, every path):");
    println!("   {:<26} {:>12} {:>8}", "program", "instructions", "bytes");
    let scratch = std::env::temp_dir().join(format!("metallb-jited-{}", std::process::id()));
    for (name, program) in programs {
        let code = jit::Jited::read(program)?.code;
        let instructions = match jit::decode(&code, &scratch) {
            Ok(insns) => insns.len().to_string(),
            Err(error) => format!("({error:#})"),
        };
        println!("   {name:<26} {instructions:>12} {:>8}", code.len());
    }
    let _ = std::fs::remove_file(&scratch);
    Ok(())
}

fn xdp_program<'a>(object: &'a Ebpf, name: &str) -> anyhow::Result<&'a Xdp> {
    Ok(object.program(name).context(name.to_string())?.try_into()?)
}

/// Keeps every run on the CPU the bench starts on: floors and responder then share
/// its caches and its (shared machine's) load.
fn pin_to_current_cpu() -> anyhow::Result<usize> {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    anyhow::ensure!(cpu >= 0, "sched_getcpu failed");
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu as usize)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)?;
    Ok(cpu as usize)
}

/// A load of a responder `object` (this build's, or another's for `BENCH_BASELINE`:
/// `strict` false) on the maps pinned in `pin_dir`: a placement of its own.
fn load_responder(
    object: &[u8],
    pin_dir: &std::path::Path,
    strict: bool,
    what: &str,
) -> anyhow::Result<Ebpf> {
    let mut object = load_object(object, pin_dir, MAX_VIPS, strict)
        .with_context(|| format!("loading {what}"))?;
    let program: &mut Xdp = object
        .program_mut(metallb_common::PROGRAM_NAME)
        .with_context(|| format!("{what} has no responder"))?
        .try_into()?;
    program
        .load()
        .with_context(|| format!("loading the program of {what}"))?;
    Ok(object)
}

/// A load of the floor programs.
fn load_floors() -> anyhow::Result<Ebpf> {
    let mut helpers = Ebpf::load(HELPERS_OBJECT).context("loading the floor programs")?;
    for name in ["floor_pass", "floor_tx"] {
        let program: &mut Xdp = helpers.program_mut(name).context(name)?.try_into()?;
        program.load()?;
    }
    Ok(helpers)
}

/// Loads of each program measured in the hot loop: [`PLACEMENTS`], or
/// `BENCH_PLACEMENTS`.
fn placements() -> anyhow::Result<usize> {
    let Some(value) = std::env::var_os("BENCH_PLACEMENTS") else {
        return Ok(PLACEMENTS);
    };
    let value = value.to_string_lossy();
    let placements: usize = value
        .trim()
        .parse()
        .with_context(|| format!("BENCH_PLACEMENTS: {value}"))?;
    anyhow::ensure!(
        (1..=16).contains(&placements),
        "BENCH_PLACEMENTS: {placements} is not between 1 and 16"
    );
    Ok(placements)
}

/// The table sizes to measure: all of [`SIZES`], or those `BENCH_SIZES` lists.
fn table_sizes() -> anyhow::Result<Vec<u32>> {
    let Some(list) = std::env::var_os("BENCH_SIZES") else {
        return Ok(SIZES.to_vec());
    };
    let list = list.to_string_lossy();
    list.split(',')
        .map(|size| {
            let size: u32 = size
                .trim()
                .parse()
                .with_context(|| format!("BENCH_SIZES: {list}"))?;
            anyhow::ensure!(
                (1..=MAX_VIPS).contains(&size),
                "BENCH_SIZES: {size} is not between 1 and {MAX_VIPS}"
            );
            Ok(size)
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let cpu = pin_to_current_cpu().context("pinning the bench to one CPU")?;
    let _netns = NetnsGuard::enter_new().context("entering a scratch network namespace")?;
    let pins = ScratchPinDir::new("bench");
    let mut dp = Datapath::load(&DatapathOptions {
        pin_dir: pins.path.clone(),
        max_vips: MAX_VIPS,
    })?;
    // For counting instructions only: no timing at all, so one load of each program.
    let paths_only = std::env::var_os("BENCH_PATHS_ONLY").is_some();
    let placements = if paths_only { 1 } else { placements()? };
    let helpers = (0..placements)
        .map(|_| load_floors())
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The responder's other loads, beside the agent's own (the first placement).
    let more_responders = (1..placements)
        .map(|_| load_responder(RESPONDER_OBJECT, &pins.path, true, "the responder"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut replay_object = Ebpf::load(REPLAY_OBJECT).context("loading the replay program")?;
    let program: &mut Xdp = replay_object
        .program_mut(replay::PROGRAM_NAME)
        .context("replay program")?
        .try_into()?;
    program.load()?;
    let mut take = |name: &str| replay_object.take_map(name).context(name.to_string());
    let (frames, cursor, subject) = (
        take(replay::FRAMES)?.try_into()?,
        take(replay::CURSOR)?.try_into()?,
        take(replay::SUBJECT)?.try_into()?,
    );
    let mut bench = Bench {
        floor_pass: helpers
            .iter()
            .map(|object| xdp_program(object, "floor_pass"))
            .collect::<anyhow::Result<_>>()?,
        floor_tx: helpers
            .iter()
            .map(|object| xdp_program(object, "floor_tx"))
            .collect::<anyhow::Result<_>>()?,
        replay: xdp_program(&replay_object, replay::PROGRAM_NAME)?,
        frames,
        cursor,
        subject,
        settle: std::env::var_os("BENCH_REPLAY_UNSETTLED").is_none(),
    };

    let _stats = enable_stats(Stats::RunTime).context("enabling bpf_stats")?;
    // For quick comparisons while working on the program: the hot loop only.
    let hot_only = std::env::var_os("BENCH_HOT_ONLY").is_some();
    let sizes = table_sizes()?;
    let baseline_objects = match std::env::var_os("BENCH_BASELINE") {
        Some(path) => {
            let path = std::path::PathBuf::from(path);
            let bytes = std::fs::read(&path)
                .with_context(|| format!("BENCH_BASELINE {}", path.display()))?;
            let what = format!("BENCH_BASELINE {}", path.display());
            (0..placements)
                .map(|_| load_responder(&bytes, &pins.path, false, &what))
                .collect::<anyhow::Result<Vec<_>>>()?
        }
        None => Vec::new(),
    };
    let baselines = baseline_objects
        .iter()
        .map(|object| xdp_program(object, metallb_common::PROGRAM_NAME))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let baseline = baselines.first().copied();
    let mut scrapes = Vec::new();
    let mut paths = Vec::new();
    let mut baseline_paths = Vec::new();
    let mut hot: Vec<Samples> = vec![Samples::default(); SCENARIOS.len()];
    let mut cold: Vec<Samples> = vec![Samples::default(); SCENARIOS.len()];
    for &size in &sizes {
        let answer = VipConfig {
            mac: MacAddr(NODE_MAC),
            action: VipAction::Answer,
        };
        let desired: BTreeMap<VipKey, VipConfig> = (0..size)
            .flat_map(|i| [IpAddr::from(vip_v4(i)), IpAddr::from(vip_v6(i))])
            .map(|addr| {
                (
                    VipKey {
                        addr,
                        ifindex: IFINDEX,
                        vlan_id: 0,
                    },
                    answer,
                )
            })
            .collect();
        let report = dp.sync(&desired);
        anyhow::ensure!(report.errors.is_empty(), "sync: {:?}", report.errors);
        anyhow::ensure!(dp.installed().len() == 2 * size as usize);
        scrapes.push(scrape_times(&dp)?);
        for (program, counts) in [Some(dp.program()?), baseline]
            .into_iter()
            .zip([&mut paths, &mut baseline_paths])
        {
            if let Some(program) = program {
                counts.push(path_counts(program, size)?);
            }
        }
        for samples in hot.iter_mut().chain(cold.iter_mut()) {
            samples.subject.push(Vec::new());
            samples.floor.push(Vec::new());
            samples.baseline.push(Vec::new());
        }

        if paths_only {
            continue;
        }
        // One round more than measured: the first warms caches and is dropped.
        let subjects = std::iter::once(dp.program().map_err(anyhow::Error::from))
            .chain(
                more_responders
                    .iter()
                    .map(|object| xdp_program(object, metallb_common::PROGRAM_NAME)),
            )
            .collect::<anyhow::Result<Vec<_>>>()?;
        for round in 0..=HOT_ROUNDS {
            hot_round(
                &mut bench,
                &dp,
                &subjects,
                &baselines,
                size,
                &mut hot,
                round > 0,
            )?;
        }
        let cold_rounds = if hot_only { 0 } else { COLD_ROUNDS + 1 };
        for round in 0..cold_rounds {
            cold_round(&bench, &dp, size, &mut cold, round > 0)?;
        }
    }

    println!(
        "datapath benchmark: ns per frame, responder vs floor program (CPU {cpu}: {})",
        metallb_testkit::cpu_model()
    );
    print_jited(&[
        ("responder (metallb_xdp)", dp.program()?),
        ("floor_pass", bench.floor_pass[0]),
        ("floor_tx", bench.floor_tx[0]),
    ])?;
    print_paths(&sizes, &paths, &baseline_paths);
    if paths_only {
        let errors = dp.shutdown();
        anyhow::ensure!(errors.is_empty(), "shutdown: {errors:?}");
        return Ok(());
    }
    print_table(
        &format!(
            "hot loop, each program loaded {placements} times (placements), each load's fastest of {HOT_ROUNDS} rounds of BPF_PROG_TEST_RUN with repeat = {HOT_REPEAT} (bpf_stats), median over the loads; hits replayed over {WARM_VIPS} VIPs spread over the table, or up to {} VIPs (caches cold)",
            replay::MAX_FRAMES
        ),
        &sizes,
        &hot,
        Estimator::Fastest { placements },
    );
    print_table(
        &format!(
            "one frame per syscall, median of {COLD_ROUNDS} rounds x {COLD_FRAMES_PER_ROUND} BPF_PROG_TEST_RUNs (bpf_stats run_time_ns / run_cnt, which adds ~60 ns of clock reads to every row; caches cold-ish, targets checked on the hot loop)"
        ),
        &sizes,
        &cold,
        Estimator::Median,
    );
    println!(
        "\nreading every VIP's counters from the counters' mmap, median of {SCRAPES}: as a /metrics scrape does (the counter view's per-VIP sums and total replies), as `metallb inspect` does (every entry with its cell), and one `vip_counters` per VIP"
    );
    for (size, times) in sizes.iter().zip(&scrapes) {
        println!(
            "   {:>7} VIPs: {:>10.2?} scrape, {:>10.2?} inspect, {:>10.2?} one by one",
            2 * size,
            times.scrape,
            times.inspect,
            times.one_by_one
        );
    }
    let errors = dp.shutdown();
    anyhow::ensure!(errors.is_empty(), "shutdown: {errors:?}");
    Ok(())
}

/// Frames of a row whose paths are counted: at most this many, spread over the row's.
const PATH_FRAMES: usize = 64;

/// Per scenario: the path of each counted frame (see [`jit`]).
type RowPaths = Vec<Vec<jit::PathCount>>;

/// The x86-64 instructions that `program` executes on each scenario's frames, for a
/// table of `size` VIPs, as the tables are now. Each run must end with the verdict
/// of the scenario's outcome, as the real runs do.
fn path_counts(program: &Xdp, size: u32) -> anyhow::Result<RowPaths> {
    let scratch = std::env::temp_dir().join(format!("metallb-paths-{}", std::process::id()));
    let jited = jit::Jited::read(program)?;
    let model = jit::Model::new(&jited, &scratch)?;
    let listing = std::env::var_os("BENCH_PATHS_DIR")
        .map(|dir| jit::decode(&jited.code, &scratch).map(|insns| (dir, insns)))
        .transpose()?;
    let mut rows = RowPaths::new();
    for scenario in &SCENARIOS {
        let frames = (scenario.frames)(size);
        let step = frames.len().div_ceil(PATH_FRAMES).max(1);
        let mut row = Vec::new();
        for frame in frames.iter().step_by(step) {
            let path = model.run(frame, IFINDEX)?;
            anyhow::ensure!(
                path.verdict == verdict(scenario.outcome),
                "{}: the modelled run returned {}, not {}",
                scenario.name,
                path.verdict,
                verdict(scenario.outcome)
            );
            if let Some((dir, insns)) = &listing
                && row.is_empty()
            {
                write_path(dir.as_ref(), scenario.name, size, insns, &path)?;
            }
            row.push(path);
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Writes the instructions of a path, in the order executed, to
/// `DIR/SCENARIO-SIZE.txt` (`BENCH_PATHS_DIR`), for reading.
fn write_path(
    dir: &std::path::Path,
    scenario: &str,
    size: u32,
    insns: &[jit::Insn],
    path: &jit::PathCount,
) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let by_offset: BTreeMap<u64, &jit::Insn> = insns
        .iter()
        .map(|insn| (insn.offset as u64, insn))
        .collect();
    let mut text = String::new();
    for offset in &path.offsets {
        let insn = by_offset.get(offset).map_or("?", |insn| insn.text.as_str());
        writeln!(text, "{offset:6x}: {insn}")?;
    }
    let name: String = scenario
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(format!("{name}-{size}.txt")), text)?;
    Ok(())
}

/// Prints, per scenario and table size, the instructions executed (mean, and the
/// range over the row's frames), and what the path calls and which maps it loads.
fn print_paths(sizes: &[u32], paths: &[RowPaths], baseline: &[RowPaths]) {
    println!(
        "\nJITed instructions executed per path (x86-64, one frame; mean and range over the row's frames, at most {PATH_FRAMES}):"
    );
    print!("{:<26}", "scenario");
    for size in sizes {
        print!("{:>18}", format!("{size} VIPs"));
    }
    println!("   calls out; map loads (first frame)");
    let cell = |row: &[jit::PathCount]| -> String {
        let counts: Vec<u64> = row.iter().map(|p| p.instructions).collect();
        let (low, high) = (
            counts.iter().copied().min().unwrap_or(0),
            counts.iter().copied().max().unwrap_or(0),
        );
        let mean = counts.iter().sum::<u64>() as f64 / counts.len().max(1) as f64;
        if low == high {
            format!("{low}")
        } else {
            format!("{mean:.1} ({low}-{high})")
        }
    };
    for (i, scenario) in SCENARIOS.iter().enumerate() {
        for (label, table) in [(scenario.name, paths), ("  BENCH_BASELINE", baseline)] {
            if table.is_empty() {
                continue;
            }
            print!("{label:<26}");
            for rows in table {
                print!("{:>18}", cell(&rows[i]));
            }
            if let Some(first) = table.last().and_then(|rows| rows[i].first()) {
                let calls = if first.calls.is_empty() {
                    "no calls".to_string()
                } else {
                    first.calls.join(", ")
                };
                let loads: Vec<String> = first
                    .map_loads
                    .iter()
                    .map(|(map, n)| format!("{map} x{n}"))
                    .collect();
                print!("   {calls}; {}", loads.join(", "));
            }
            println!();
        }
    }
}

const SCRAPES: usize = 5;

/// The medians of reading every VIP's counters three ways, all from the counters' mmap
/// (no syscall per VIP).
struct ScrapeTimes {
    /// What a `/metrics` scrape reads: the per-VIP sums and the total of the replies
    /// (`CounterView::per_ip`, `replies`) of the view the speaker takes after each
    /// change of the entries.
    scrape: std::time::Duration,
    /// What `metallb inspect` reads: `vips()`, every live entry with its cell and
    /// counters.
    inspect: std::time::Duration,
    /// One `vip_counters` lookup per VIP.
    one_by_one: std::time::Duration,
}

fn scrape_times(dp: &Datapath) -> anyhow::Result<ScrapeTimes> {
    let keys: Vec<VipKey> = dp.installed().into_keys().collect();
    let view = dp.counter_view()?;
    let mut scrape = Vec::new();
    let mut inspect = Vec::new();
    let mut one_by_one = Vec::new();
    for _ in 0..SCRAPES {
        let start = std::time::Instant::now();
        let per_ip = view.per_ip();
        let replies = view.replies();
        scrape.push(start.elapsed());
        anyhow::ensure!(per_ip.len() == keys.len());
        std::hint::black_box(replies);
        let start = std::time::Instant::now();
        let records = dp.vips()?;
        inspect.push(start.elapsed());
        anyhow::ensure!(records.len() == keys.len());
        let start = std::time::Instant::now();
        for key in &keys {
            dp.vip_counters(key)?;
        }
        one_by_one.push(start.elapsed());
    }
    let median_time = |times: Vec<std::time::Duration>| {
        std::time::Duration::from_secs_f64(median(
            times.iter().map(std::time::Duration::as_secs_f64).collect(),
        ))
    };
    Ok(ScrapeTimes {
        scrape: median_time(scrape),
        inspect: median_time(inspect),
        one_by_one: median_time(one_by_one),
    })
}
