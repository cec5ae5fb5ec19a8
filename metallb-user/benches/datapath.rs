//! `cargo xtask bench datapath`: nanoseconds per frame of the XDP responder, next to
//! two floor programs (XDP_PASS, XDP_TX), with 1, 1,000 and 100,000 VIPs per family.
//!
//! BPF_PROG_TEST_RUN with `repeat > 1` runs a program again on its own output (an ARP
//! request becomes a reply, which takes the pass path), so every frame here is one
//! BPF_PROG_TEST_RUN with repeat = 1, and the time is the kernel's own accounting of
//! the program (bpf_stats: run_time_ns / run_cnt). That accounting adds the same
//! clock-read cost to every program, floors included: compare rows, not absolutes.
//! Scenarios are interleaved in rounds, and every figure is the median over rounds (a
//! difference to a floor is the median of the per-round differences), so that the
//! noise of a shared machine hits all rows alike and outliers drop out.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use anyhow::Context as _;
use aya::{
    Ebpf,
    programs::{ProgramInfo, Xdp},
    sys::{Stats, enable_stats},
};
use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv6Type, PacketBuilder};
use metallb_common::VipAction;
use metallb_user::{
    datapath::{
        Datapath, DatapathOptions, HELPERS_OBJECT,
        iface::MacAddr,
        maps::{VipConfig, VipKey},
        test_run,
    },
    lab::{NetnsGuard, ScratchPinDir},
};

const SIZES: [u32; 3] = [1, 1_000, 100_000];
const ROUNDS: u32 = 25;
const FRAMES_PER_ROUND: u32 = 4_000;
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

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    let packet = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &ASKER_MAC,
        &ASKER_V4.octets(),
        &[0; 6],
        &target.octets(),
    )
    .expect("ARP packet");
    let mut out = Vec::new();
    PacketBuilder::ethernet2(ASKER_MAC, [0xff; 6])
        .arp(packet)
        .write(&mut out)
        .expect("ARP frame");
    out
}

fn neighbor_solicitation(target: Ipv6Addr) -> Vec<u8> {
    let o = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | o[13] as u16,
        u16::from_be_bytes([o[14], o[15]]),
    );
    let mut body = o.to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&ASKER_MAC);
    let mut out = Vec::new();
    PacketBuilder::ethernet2(ASKER_MAC, [0x33, 0x33, 0xff, o[13], o[14], o[15]])
        .ipv6(ASKER_V6.octets(), group.octets(), 255)
        .icmpv6(Icmpv6Type::NeighborSolicitation)
        .write(&mut out, &body)
        .expect("NS frame");
    out
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

struct Scenario {
    name: &'static str,
    program: usize,
    frame: Vec<u8>,
    expected_verdict: u32,
    /// Index of the floor row this row is compared with.
    floor: Option<usize>,
    /// The bound the issue sets for (row - floor), in ns.
    target_ns: f64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn run_time(program: &Xdp) -> anyhow::Result<(u64, u64)> {
    let info: ProgramInfo = program.info().context("program info")?;
    Ok((info.run_time().as_nanos() as u64, info.run_count()))
}

fn main() -> anyhow::Result<()> {
    let _netns = NetnsGuard::enter_new().context("entering a scratch network namespace")?;
    let pins = ScratchPinDir::new("bench");
    let mut dp = Datapath::load(&DatapathOptions {
        pin_dir: pins.path.clone(),
        max_vips: 100_000,
    })?;
    let mut helpers = Ebpf::load(HELPERS_OBJECT).context("loading the floor programs")?;
    for name in ["floor_pass", "floor_tx"] {
        let program: &mut Xdp = helpers.program_mut(name).context(name)?.try_into()?;
        program.load()?;
    }
    let floor_pass: &Xdp = helpers
        .program("floor_pass")
        .context("floor_pass")?
        .try_into()?;
    let floor_tx: &Xdp = helpers
        .program("floor_tx")
        .context("floor_tx")?
        .try_into()?;
    let _stats = enable_stats(Stats::RunTime).context("enabling bpf_stats")?;

    let scenarios = [
        Scenario {
            name: "floor: XDP_PASS",
            program: 0,
            frame: udp_frame(),
            expected_verdict: 2,
            floor: None,
            target_ns: 0.0,
        },
        Scenario {
            name: "floor: XDP_TX",
            program: 1,
            frame: arp_request(vip_v4(0)),
            expected_verdict: 3,
            floor: None,
            target_ns: 0.0,
        },
        Scenario {
            name: "pass-through (IPv4 UDP)",
            program: 2,
            frame: udp_frame(),
            expected_verdict: 2,
            floor: Some(0),
            target_ns: 3.0,
        },
        Scenario {
            name: "ARP request, hit",
            program: 2,
            frame: arp_request(vip_v4(0)),
            expected_verdict: 3,
            floor: Some(1),
            target_ns: 15.0,
        },
        Scenario {
            name: "NS, hit",
            program: 2,
            frame: neighbor_solicitation(vip_v6(0)),
            expected_verdict: 3,
            floor: Some(1),
            target_ns: 15.0,
        },
        Scenario {
            name: "ARP request, miss",
            program: 2,
            frame: arp_request(Ipv4Addr::new(198, 18, 9, 9)),
            expected_verdict: 2,
            floor: Some(0),
            target_ns: f64::NAN,
        },
    ];

    println!("datapath benchmark: ns per frame, bpf_stats run_time_ns / run_cnt");
    println!(
        "({ROUNDS} rounds x {FRAMES_PER_ROUND} frames per cell, one BPF_PROG_TEST_RUN per frame, scenarios interleaved; medians over rounds)"
    );
    // table[scenario][size] = ns per frame in each round
    let mut table: Vec<Vec<Vec<f64>>> = vec![Vec::new(); scenarios.len()];
    for &size in &SIZES {
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

        let programs = [floor_pass, floor_tx, dp.program()?];
        let mut rounds = vec![Vec::new(); scenarios.len()];
        // One round more than measured: the first warms caches and is dropped.
        for round in 0..=ROUNDS {
            for (scenario, per_round) in scenarios.iter().zip(rounds.iter_mut()) {
                let program = programs[scenario.program];
                let before = run_time(program)?;
                for _ in 0..FRAMES_PER_ROUND {
                    let (verdict, _) = test_run(program, &scenario.frame, IFINDEX)?;
                    anyhow::ensure!(
                        verdict == scenario.expected_verdict,
                        "{}: verdict {verdict}",
                        scenario.name
                    );
                }
                let after = run_time(program)?;
                if round > 0 {
                    per_round
                        .push((after.0 - before.0) as f64 / (after.1 - before.1).max(1) as f64);
                }
            }
        }
        for (row, per_round) in table.iter_mut().zip(rounds) {
            row.push(per_round);
        }
    }

    println!();
    print!("{:<26}", "scenario");
    for size in SIZES {
        print!("{:>14}", format!("{size} VIPs"));
    }
    println!("   vs floor (worst size)   target");
    let medians: Vec<Vec<f64>> = table
        .iter()
        .map(|row| row.iter().map(|r| median(r.clone())).collect())
        .collect();
    for (i, scenario) in scenarios.iter().enumerate() {
        print!("{:<26}", scenario.name);
        for ns in &medians[i] {
            print!("{ns:>14.1}");
        }
        if let Some(floor) = scenario.floor {
            let worst = (0..SIZES.len())
                .map(|size| {
                    let diffs = table[i][size]
                        .iter()
                        .zip(&table[floor][size])
                        .map(|(a, b)| a - b)
                        .collect();
                    median(diffs)
                })
                .fold(f64::MIN, f64::max);
            let target = if scenario.target_ns.is_nan() {
                "-".to_string()
            } else {
                let verdict = if worst <= scenario.target_ns {
                    "met"
                } else {
                    "NOT met"
                };
                format!("<= {:.0} ns ({verdict})", scenario.target_ns)
            };
            print!("   {worst:>+14.1} ns   {target}");
        }
        println!();
    }
    let spread = |row: &Vec<f64>| {
        row.iter().cloned().fold(f64::MIN, f64::max) - row.iter().cloned().fold(f64::MAX, f64::min)
    };
    println!(
        "\nspread of the medians from 1 to 100,000 VIPs (max - min): pass-through {:.1} ns, ARP hit {:.1} ns, NS hit {:.1} ns, ARP miss {:.1} ns",
        spread(&medians[2]),
        spread(&medians[3]),
        spread(&medians[4]),
        spread(&medians[5])
    );
    let errors = dp.shutdown();
    anyhow::ensure!(errors.is_empty(), "shutdown: {errors:?}");
    Ok(())
}
