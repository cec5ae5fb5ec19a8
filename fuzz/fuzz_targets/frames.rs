//! The frame property under libFuzzer: for every input frame, the real XDP responder
//! (run with BPF_PROG_TEST_RUN) passes it untouched, drops it (a suppressed VIP), or
//! sends exactly the reply that `metallb_testkit::frame_oracle` (etherparse and the
//! RFCs, never our parser) decides. A disagreement panics, so libFuzzer keeps the
//! frame under `fuzz/artifacts/frames/`. Needs root (a network namespace of its own,
//! bpf()).
#![no_main]

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::PathBuf,
    process::Command,
    sync::OnceLock,
};

use libfuzzer_sys::fuzz_target;
use metallb_common::VipAction;
use metallb_user::datapath::{
    Datapath, DatapathOptions,
    iface::MacAddr,
    maps::{VipConfig, VipKey},
};

// The same reference as the property test's: its file, not the testkit crate (which
// would bring the whole test tooling into the fuzzer's build).
#[path = "../../metallb-testkit/src/frame_oracle.rs"]
#[allow(dead_code)]
mod frame_oracle;

use frame_oracle::{Expected, OracleVip, expected};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const IF_NAME: &str = "fuzz0";
const OTHER_IF: u32 = 99;
const VLAN: u16 = 10;
const NODE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xaa];

struct Fixture {
    dp: Datapath,
    ifindex: u32,
    vips: Vec<OracleVip>,
}

// SAFETY (Sync): libFuzzer calls the target from one thread; the datapath is only read.
struct Shared(Fixture);
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

static FIXTURE: OnceLock<Shared> = OnceLock::new();

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}

/// A network namespace of this process's own (gone when it exits) with a veth, the
/// datapath loaded with the property test's VIPs, and its pins removed at once (the
/// maps live on through this process's descriptors), so that nothing stays behind
/// however the fuzzer ends.
fn fixture() -> Fixture {
    // SAFETY: unshare(2) of the network namespace, checked; libFuzzer has no other
    // thread yet.
    assert_eq!(
        unsafe { libc::unshare(libc::CLONE_NEWNET) },
        0,
        "unshare: {}",
        std::io::Error::last_os_error()
    );
    run(
        "ip",
        &[
            "link", "add", IF_NAME, "type", "veth", "peer", "name", "fuzz1",
        ],
    );
    run("ip", &["link", "set", IF_NAME, "up"]);
    let ifindex = ifindex_of(IF_NAME);
    let pin_dir = PathBuf::from(format!("/sys/fs/bpf/mlb-fuzz-{}", std::process::id()));
    let mut dp = Datapath::load(&DatapathOptions {
        pin_dir: pin_dir.clone(),
        max_vips: 1024,
    })
    .expect("load the datapath");
    let config = |action| VipConfig {
        mac: MacAddr(NODE_MAC),
        action,
    };
    let key = |addr: IpAddr, ifindex, vlan_id| VipKey {
        addr,
        ifindex,
        vlan_id,
    };
    let v4 = |last| IpAddr::V4(Ipv4Addr::new(192, 0, 2, last));
    let v6 = |last| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last));
    let desired = BTreeMap::from([
        (key(v4(100), ifindex, 0), config(VipAction::Answer)),
        (key(v4(101), ifindex, 0), config(VipAction::Suppress)),
        (key(v4(102), OTHER_IF, 0), config(VipAction::Answer)),
        (key(v4(110), ifindex, VLAN), config(VipAction::Answer)),
        (key(v6(0x100), ifindex, 0), config(VipAction::Answer)),
        (key(v6(0x101), ifindex, 0), config(VipAction::Suppress)),
        (key(v6(0x110), ifindex, VLAN), config(VipAction::Answer)),
    ]);
    let report = dp.sync(&desired);
    assert!(report.errors.is_empty(), "sync: {:?}", report.errors);
    let _ = std::fs::remove_dir_all(&pin_dir);
    let vips = dp
        .installed()
        .into_iter()
        .map(|(key, config)| OracleVip {
            addr: key.addr,
            ifindex: key.ifindex,
            vlan_id: key.vlan_id,
            mac: config.mac.0,
            answer: config.action == VipAction::Answer,
        })
        .collect();
    Fixture { dp, ifindex, vips }
}

fn ifindex_of(name: &str) -> u32 {
    let name = std::ffi::CString::new(name).expect("no NUL");
    // SAFETY: a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(index, 0, "no interface {name:?}");
    index
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fuzz_target!(|frame: &[u8]| {
    // The kernel refuses test runs of frames shorter than an Ethernet header.
    if frame.len() < 14 || frame.len() > 1500 {
        return;
    }
    let Shared(f) = FIXTURE.get_or_init(|| Shared(fixture()));
    let want = expected(frame, f.ifindex, &f.vips);
    let (verdict, out) = f.dp.test_run(frame, f.ifindex).expect("test run");
    let agrees = match &want {
        Expected::Pass => verdict == XDP_PASS && out == frame,
        Expected::Drop => verdict == XDP_DROP,
        Expected::Tx(reply) => verdict == XDP_TX && &out == reply,
    };
    assert!(
        agrees,
        "frame {}\n  reference: {want:?}\n  program: verdict {verdict}, {}\n(add the frame to metallb-user/tests/fixtures/xdp_property_regressions.txt)",
        hex(frame),
        hex(&out)
    );
});
