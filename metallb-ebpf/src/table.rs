//! Lookups in the VIP tables.
//!
//! A lookup must not call into the kernel: on CPUs with return-thunk mitigations every
//! call costs tens of nanoseconds, more than the whole budget of an answer. Hash maps
//! are calls; array lookups are inlined by the verifier. So each address family's VIPs
//! live in an array used as an open-addressing hash table that the agent maintains:
//!
//! - `vip_ctl` says which half of the tables is live, and with which hash seed. The
//!   program reads it as global data (one direct load, no lookup): the agent loads
//!   the program's `.data.vip_ctl` section onto the `vip_ctl` map;
//! - a cell holds a VIP key, its MAC and action, and the id of its per-CPU counters;
//!   lookups probe linearly from the key's home cell until an empty cell. Each map
//!   value is a bucket of cells, so one (inlined) map lookup reads several; a home
//!   cell is the first of its bucket.
//!
//! The agent never changes what a cell of the live half holds except for its `action`
//! byte (read once, with a volatile load): it rebuilds the idle half, then flips
//! `active`, and touches the old half again only after a grace period. (An agent that
//! adopts the tables may rewrite a live cell's bytes, with the values they have, or
//! with derived fields that an older agent left out, before its own program runs.)
//!
//! Keys are compared as whole words loaded from the cell, never built on the stack:
//! a cell's key starts at offset 0 of an 8-byte aligned map value.

use aya_ebpf::{
    btf_maps::{Array, HashMap},
    helpers::generated::bpf_get_smp_processor_id,
    macros::btf_map,
};
use metallb_common::{
    BUCKET_CELLS, DEFAULT_MAX_VIPS, MAX_PROBES, Outcome, VipAction, VipBucketV4, VipBucketV6,
    VipCellV4, VipCellV6, VipCounters, VipKeyV4, VipKeyV6, VipTableCtl, VipViewKey, VipViewValue,
    home_cell, table_cells,
};

use crate::packet::{Mac, MacWord, load};

/// `BPF_F_MMAPABLE`: the agent writes the tables through shared memory, with the
/// ordering a flip needs, and without a syscall per cell.
const MMAPABLE: usize = 1 << 10;
/// `BPF_F_NO_PREALLOC`.
const NO_PREALLOC: usize = 1;
/// Compile-time sizes; the agent sets the real ones when it creates the maps.
const BUCKETS: usize = (2 * table_cells(DEFAULT_MAX_VIPS) / BUCKET_CELLS) as usize;
const COUNTERS: usize = DEFAULT_MAX_VIPS as usize + 1;

/// The declaration that gives `vip_ctl` its BTF (for `bpftool`) and its mmapable
/// flag (for the agent). The program reads the map's value through
/// [`VIP_CTL_VALUE`] instead.
#[btf_map(name = "vip_ctl")]
#[allow(dead_code)]
static VIP_CTL: Array<VipTableCtl, 1, MMAPABLE> = Array::new();

/// `vip_ctl`'s value, as global data: the agent makes this section's map the
/// `vip_ctl` map itself. Read with volatile loads only: the compiler must not assume
/// the initial value, nor that a field stays the same between two reads. Not all
/// zeroes, so that the section has contents (an empty one would be relocated as a
/// map, not as a value).
#[unsafe(no_mangle)]
#[unsafe(link_section = ".data.vip_ctl")]
pub(crate) static mut VIP_CTL_VALUE: VipTableCtl = VipTableCtl {
    generation: u64::MAX,
    ..VipTableCtl::ZERO
};

#[btf_map(name = "vips_v4")]
static VIPS_V4: Array<VipBucketV4, BUCKETS, MMAPABLE> = Array::new();

#[btf_map(name = "vips_v6")]
static VIPS_V6: Array<VipBucketV6, BUCKETS, MMAPABLE> = Array::new();

/// Every live VIP, for people: the agent keeps it equal to the tables, for `bpftool
/// map dump`, which would otherwise print every cell of the tables, nearly all empty.
/// The program never reads it (no instruction refers to it); the declaration gives it
/// its BTF, and its exported symbol keeps it in the object. Allocated per entry: it
/// costs memory only for the VIPs there are.
#[btf_map(name = "vips")]
#[allow(dead_code)]
static VIPS: HashMap<VipViewKey, VipViewValue, { 2 * DEFAULT_MAX_VIPS as usize }, NO_PREALLOC> =
    HashMap::new();

#[btf_map(name = "vip_stats_v4")]
static VIP_STATS_V4: Array<VipCounters, COUNTERS, MMAPABLE> = Array::new();

#[btf_map(name = "vip_stats_v6")]
static VIP_STATS_V6: Array<VipCounters, COUNTERS, MMAPABLE> = Array::new();

const ANSWER: u8 = VipAction::Answer as u8;
const SUPPRESS: u8 = VipAction::Suppress as u8;

/// What the program reads of a table cell.
pub trait TableCell {
    fn mac(&self) -> &[u8; 6];
    fn action(&self) -> &u8;
    fn counter_id(&self) -> &u32;
}

macro_rules! impl_table_cell {
    ($cell:ty) => {
        impl TableCell for $cell {
            #[inline(always)]
            fn mac(&self) -> &[u8; 6] {
                &self.mac
            }
            #[inline(always)]
            fn action(&self) -> &u8 {
                &self.action
            }
            #[inline(always)]
            fn counter_id(&self) -> &u32 {
                &self.counter_id
            }
        }
    };
}

impl_table_cell!(VipCellV4);
impl_table_cell!(VipCellV6);

/// A VIP entry found for a request: its cell (fields are read where they are used,
/// not kept in registers across the checks in between) and this CPU's counters.
pub struct Vip<C: 'static> {
    pub cell: &'static C,
    pub counters: &'static mut VipCounters,
}

impl<C: TableCell> Vip<C> {
    /// The interface's MAC, the sender of every answer.
    #[inline(always)]
    pub fn mac(&self) -> Mac {
        // SAFETY: six bytes of a live cell.
        unsafe { Mac::load(self.cell.mac().as_ptr() as usize) }
    }

    /// The interface's MAC, for comparisons.
    #[inline(always)]
    pub fn mac_word(&self) -> MacWord {
        // SAFETY: the six bytes of the MAC and the two after them (the action and a
        // padding byte, shifted out by every comparison) of a live cell.
        unsafe { MacWord::load(self.cell.mac().as_ptr() as usize) }
    }

    /// A [`VipAction`] byte, possibly one this program does not know. The agent may
    /// change it at any time: read it once.
    #[inline(always)]
    fn action(&self) -> u8 {
        // SAFETY: a byte of a live cell.
        unsafe { core::ptr::read_volatile(self.cell.action()) }
    }

    /// Counts a request for this VIP. `None` when this node answers it; otherwise
    /// what to do instead (drop for a suppressed VIP, pass for an action this program
    /// does not know).
    #[inline(always)]
    pub fn take_request(&mut self) -> Option<Outcome> {
        self.counters.requests += 1;
        match self.action() {
            // Fenced: the node's kernel may own the VIP too (kube-ipvs0), so the
            // request is dropped, as a suppressed one is, not passed.
            ANSWER if fenced() => Some(Outcome::DropFenced),
            ANSWER => None,
            SUPPRESS => {
                self.counters.suppressed += 1;
                Some(Outcome::DropSuppressed)
            }
            _ => Some(Outcome::PassUnknownTarget),
        }
    }

    /// Counts a claim of this VIP by another host, if this node answers for it.
    #[inline(always)]
    pub fn take_claim(&mut self) -> Outcome {
        if self.action() == ANSWER {
            self.counters.conflicts += 1;
            Outcome::PassConflict
        } else {
            Outcome::PassNotRequest
        }
    }
}

/// Whether the fence timer has fenced the datapath: one load from the control
/// block's first cache line, which every lookup has just read. No helper call.
#[inline(always)]
fn fenced() -> bool {
    // SAFETY: a field of the map value, written by the fence timer at any time.
    unsafe { core::ptr::read_volatile(&raw const VIP_CTL_VALUE.fenced) != 0 }
}

/// The live half: its first cell, the cell mask, the hash shift and seed.
struct Half {
    base: u64,
    mask: u32,
    shift: u32,
    seed: u64,
}

/// Reads the control block. `V6` picks the seed of the IPv6 table.
#[inline(always)]
fn live_half<const V6: bool>() -> Half {
    use core::ptr::read_volatile;
    let ctl = &raw const VIP_CTL_VALUE;
    // SAFETY: the map value, which is never moved or freed while the program runs.
    // `active` is written by the agent at any time: read it once; what the half it
    // names needs does not change while it is live.
    unsafe {
        let half = &(*ctl).halves[(read_volatile(&(*ctl).active) & 1) as usize];
        Half {
            base: read_volatile(&half.base),
            mask: read_volatile(&(*ctl).cell_mask),
            shift: read_volatile(&(*ctl).shift),
            seed: read_volatile(if V6 { &half.seed_v6 } else { &half.seed_v4 }),
        }
    }
}

/// Walks the probe sequence of a lookup: the cells from `home` on, wrapping within
/// the live half, reading a bucket (one map lookup) whenever the sequence enters one.
/// `check` says whether a cell is the one sought (`Some(true)`), the empty cell that
/// ends the search (`Some(false)`), or neither. The cells of the home bucket, where
/// nearly every key sits, are checked on a straight path, with no map lookup (a call,
/// as far as the compiler knows, which would send what the cells are compared with
/// to the stack) until the search leaves the bucket.
macro_rules! probe {
    ($table:ident, $bucket:ty, $half:expr, $home:expr, |$cell:ident| $check:expr) => {{
        let half = $half;
        let home = $home & half.mask;
        let mut found = None;
        'search: {
            let Some(bucket) = $table.get_ptr(bucket_index(half.base, home)) else {
                break 'search;
            };
            // SAFETY: a valid map value; cells of the live half are immutable but for
            // `action`.
            let bucket: &$bucket = unsafe { &*bucket };
            // Ends the search at a cell that is the key or empty.
            macro_rules! check {
                ($at:expr) => {
                    let $cell = $at;
                    match $check {
                        Some(true) => {
                            found = Some($cell);
                            break 'search;
                        }
                        Some(false) => break 'search,
                        None => {}
                    }
                };
            }
            let first = home % BUCKET_CELLS;
            check!(&bucket.cells[first as usize]);
            // The cells of the home bucket after the home cell, each at a constant
            // offset in the bucket (for the verifier: an offset derived from the home
            // cell's would lose its bounds).
            const _: () = assert!(BUCKET_CELLS == 4);
            if first < 1 {
                check!(&bucket.cells[1]);
            }
            if first < 2 {
                check!(&bucket.cells[2]);
            }
            if first < 3 {
                check!(&bucket.cells[3]);
            }
            // The cells after it, while probes are left (at least: a key is never
            // further from its home cell).
            let mut cell = home | (BUCKET_CELLS - 1);
            let mut slots = bucket;
            for _ in 1..MAX_PROBES {
                cell = (cell + 1) & half.mask;
                if cell % BUCKET_CELLS == 0 {
                    let Some(next) = $table.get_ptr(bucket_index(half.base, cell)) else {
                        break 'search;
                    };
                    // SAFETY: as above.
                    slots = unsafe { &*next };
                }
                check!(&slots.cells[(cell % BUCKET_CELLS) as usize]);
            }
        }
        found
    }};
}

/// The map index of the bucket of `cell` in the half starting at `base`: in 64 bits,
/// which needs no truncation before the shift (the index fits in 32 bits: tables
/// have fewer than 2^32 cells).
#[inline(always)]
fn bucket_index(base: u64, cell: u32) -> u32 {
    ((base + cell as u64) / BUCKET_CELLS as u64) as u32
}

/// What a probe learns from a cell: the key sought (`Some(true)`), the empty cell
/// that ends the search (`Some(false)`), or neither (`None`).
#[inline(always)]
fn probe_step(found: bool, counter_id: u32) -> Option<bool> {
    if found {
        Some(true)
    } else if counter_id == 0 {
        Some(false)
    } else {
        None
    }
}

/// The IPv4 VIP `addr` (its bytes as a native word) on `ifindex`, in `vlan_id`.
#[inline(always)]
pub fn find_v4(addr: u32, ifindex: u32, vlan_id: u16) -> Option<Vip<VipCellV4>> {
    let half = live_half::<false>();
    let home = home_cell(VipKeyV4::fold(addr, vlan_id), half.seed, half.shift);
    let head = VipKeyV4::head_word(addr, ifindex);
    // An empty cell is all zeroes, and no key has interface 0.
    let cell = probe!(VIPS_V4, VipBucketV4, half, home, |cell| {
        // SAFETY: the key starts the cell, which is 8-byte aligned in the bucket.
        let found = unsafe { load::<u64>(cell as *const VipCellV4 as usize) } == head
            && cell.key.vlan_id == vlan_id;
        probe_step(found, cell.counter_id)
    })?;
    vip(&VIP_STATS_V4, cell)
}

/// The IPv6 VIP `high:low` (the address as two native words) on `ifindex`, in
/// `vlan_id`.
#[inline(always)]
pub fn find_v6(high: u64, low: u64, ifindex: u32, vlan_id: u16) -> Option<Vip<VipCellV6>> {
    let half = live_half::<true>();
    let tail = VipKeyV6::tail_word(ifindex, vlan_id);
    let home = home_cell(VipKeyV6::fold(high, low, vlan_id), half.seed, half.shift);
    let cell = probe!(VIPS_V6, VipBucketV6, half, home, |cell| {
        let at = cell as *const VipCellV6 as usize;
        // SAFETY: the key's three words start the cell, 8-byte aligned in the bucket.
        // The low half first: VIPs of one prefix differ there.
        let found = unsafe {
            load::<u64>(at + 8) == low && load::<u64>(at) == high && load::<u64>(at + 16) == tail
        };
        probe_step(found, cell.counter_id)
    })?;
    vip(&VIP_STATS_V6, cell)
}

/// The entry of a cell that was found, with this CPU's counters: at index
/// `cpu * counter_stride + counter_id` of a plain array. The CPU number is inlined by
/// the verifier (no call), and the counters are one load away from the cell, not two
/// (a per-CPU array reaches them through its pointer table, one more page per VIP).
#[inline(always)]
fn vip<C: TableCell, const N: usize>(
    stats: &Array<VipCounters, N, MMAPABLE>,
    cell: &'static C,
) -> Option<Vip<C>> {
    // SAFETY: a field of the control block, set when the maps were created.
    let stride = unsafe { core::ptr::read_volatile(&raw const VIP_CTL_VALUE.counter_stride) };
    // SAFETY: the helper has no preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let counters = stats.get_ptr_mut(cpu * stride + *cell.counter_id())?;
    // SAFETY: this CPU's slot of this VIP, which only this program on this CPU writes.
    let counters = unsafe { &mut *counters };
    Some(Vip { cell, counters })
}
