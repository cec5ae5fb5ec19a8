//! Lookups in the VIP tables.
//!
//! A lookup must not call into the kernel: on CPUs with return-thunk mitigations every
//! call costs tens of nanoseconds, more than the whole budget of an answer. Hash maps
//! are calls; array lookups are inlined by the verifier. So each address family's VIPs
//! live in an array used as an open-addressing hash table that the agent maintains:
//!
//! - `vip_ctl` says which half of the tables is live, and with which hash seed;
//! - a cell holds a VIP key, its MAC and action, and the id of its per-CPU counters;
//!   lookups probe linearly from the key's home cell until an empty cell.
//!
//! The agent never changes a cell of the live half except for its `action` byte (read
//! once, with a volatile load): it rebuilds the idle half, then flips `active`, and
//! touches the old half again only after a grace period.

use aya_ebpf::{
    btf_maps::{Array, PerCpuArray},
    macros::btf_map,
};
use metallb_common::{
    DEFAULT_MAX_VIPS, MAX_PROBES, Outcome, VipAction, VipCellV4, VipCellV6, VipCounters, VipKeyV4,
    VipKeyV6, VipTableCtl, home_cell, table_cells,
};

/// `BPF_F_MMAPABLE`: the agent writes the tables through shared memory, with the
/// ordering a flip needs, and without a syscall per cell.
const MMAPABLE: usize = 1 << 10;
/// Compile-time sizes; the agent sets the real ones when it creates the maps.
const CELLS: usize = 2 * table_cells(DEFAULT_MAX_VIPS) as usize;
const COUNTERS: usize = DEFAULT_MAX_VIPS as usize + 1;

#[btf_map(name = "vip_ctl")]
static VIP_CTL: Array<VipTableCtl, 1, MMAPABLE> = Array::new();

#[btf_map(name = "vips_v4")]
static VIPS_V4: Array<VipCellV4, CELLS, MMAPABLE> = Array::new();

#[btf_map(name = "vips_v6")]
static VIPS_V6: Array<VipCellV6, CELLS, MMAPABLE> = Array::new();

#[btf_map(name = "vip_stats_v4")]
static VIP_STATS_V4: PerCpuArray<VipCounters, COUNTERS> = PerCpuArray::new();

#[btf_map(name = "vip_stats_v6")]
static VIP_STATS_V6: PerCpuArray<VipCounters, COUNTERS> = PerCpuArray::new();

/// A VIP entry found for a request: its MAC, its action, and this CPU's counters.
pub struct Vip {
    pub mac: [u8; 6],
    /// `None` for an action byte this program does not know.
    pub action: Option<VipAction>,
    pub counters: &'static mut VipCounters,
}

impl Vip {
    /// Counts a request for this VIP. `None` when this node answers it; otherwise
    /// what to do instead (drop for a suppressed VIP, pass for an action this program
    /// does not know).
    #[inline(always)]
    pub fn take_request(&mut self) -> Option<Outcome> {
        self.counters.requests += 1;
        match self.action {
            Some(VipAction::Answer) => None,
            Some(VipAction::Suppress) => {
                self.counters.suppressed += 1;
                Some(Outcome::DropSuppressed)
            }
            None => Some(Outcome::PassUnknownTarget),
        }
    }
}

/// The live half: its first cell, the cell mask, the hash shift and seeds.
struct Half {
    base: u32,
    mask: u32,
    shift: u32,
    seed_v4: u64,
    seed_v6: u64,
}

#[inline(always)]
fn live_half() -> Option<Half> {
    let ctl = VIP_CTL.get_ptr(0)?;
    // SAFETY: a valid map value. `active` is written by the agent at any time: read it
    // once; what the half it names needs does not change while it is live.
    unsafe {
        let half = &(*ctl).halves[(core::ptr::read_volatile(&(*ctl).active) & 1) as usize];
        Some(Half {
            base: half.base as u32,
            mask: (*ctl).cell_mask,
            shift: (*ctl).shift,
            seed_v4: half.seed_v4,
            seed_v6: half.seed_v6,
        })
    }
}

#[inline(always)]
fn same_v4(a: &VipKeyV4, b: &VipKeyV4) -> bool {
    u32::from_ne_bytes(a.addr) == u32::from_ne_bytes(b.addr)
        && a.ifindex == b.ifindex
        && a.vlan_id == b.vlan_id
}

#[inline(always)]
fn same_v6(a: &VipKeyV6, b: &VipKeyV6) -> bool {
    let (x, y) = (&a.addr, &b.addr);
    let word = |v: &[u8; 16], i: usize| u32::from_ne_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
    word(x, 12) == word(y, 12)
        && word(x, 8) == word(y, 8)
        && word(x, 4) == word(y, 4)
        && word(x, 0) == word(y, 0)
        && a.ifindex == b.ifindex
        && a.vlan_id == b.vlan_id
}

macro_rules! find {
    ($name:ident, $key:ty, $cell:ty, $table:ident, $stats:ident, $seed:ident, $same:ident) => {
        /// The VIP for `key`, if the live half has it.
        #[inline(always)]
        pub fn $name(key: &$key) -> Option<Vip> {
            let half = live_half()?;
            let mut cell = home_cell(key.folded(), half.$seed, half.shift);
            for _ in 0..MAX_PROBES {
                let slot: *const $cell = $table.get_ptr(half.base + (cell & half.mask))?;
                // SAFETY: a valid map value; cells of the live half are immutable but
                // for `action`.
                let slot = unsafe { &*slot };
                if slot.counter_id == 0 {
                    return None;
                }
                if $same(&slot.key, key) {
                    let action = unsafe { core::ptr::read_volatile(&slot.action) };
                    let counters = $stats.get_ptr_mut(slot.counter_id)?;
                    return Some(Vip {
                        mac: slot.mac,
                        action: VipAction::from_u8(action),
                        // SAFETY: this CPU's slot; only this program on this CPU writes it.
                        counters: unsafe { &mut *counters },
                    });
                }
                cell = cell.wrapping_add(1);
            }
            None
        }
    };
}

find!(
    find_v4,
    VipKeyV4,
    VipCellV4,
    VIPS_V4,
    VIP_STATS_V4,
    seed_v4,
    same_v4
);
find!(
    find_v6,
    VipKeyV6,
    VipCellV6,
    VIPS_V6,
    VIP_STATS_V6,
    seed_v6,
    same_v6
);
