//! The VIP tables as the agent sees them: shared-memory views of the program's array
//! maps, and the writer's side of the lookup structure described in
//! `metallb-ebpf/src/table.rs`.
//!
//! The writer keeps the promises the lock-free reader relies on:
//! 1. a cell of the live half changes only in its `action` byte (an atomic store);
//! 2. everything else is written to the idle half, which then becomes live with one
//!    release store of `active`;
//! 3. after a flip, the old half and the counter ids only it used are left untouched
//!    until a grace period has passed: every program run that could still read them
//!    has ended ([`ProgramBarrier`]: the kernel's own wait, not a timer; [`GRACE`]
//!    only where that fails).
//!
//! A change costs the keys it changes, not the table: the idle half is the previous
//! live half, which lacks only the keys changed since (`stale`). Once the grace period
//! after a flip is over, those keys are written into it (taken out with backward-shift
//! deletion, written in place, or placed in the first empty cell of their probe
//! sequence), then the new change, then the flip. [`Maps::tidy`] does the first part
//! in idle moments, so that a change writes only its own cells. The grace period is
//! waited for by a thread started at the flip. The whole half is built again only when
//! what it holds is not known (adopted tables, a failed flip) or a key finds no cell
//! within [`MAX_PROBES`] of its home (then under fresh seeds until every key does).
//!
//! A flip that fails (no seed places every key) leaves everything as it was: the
//! bookkeeping is rolled back, nothing is reported as changed (so nothing is
//! announced), and the next sync tries again.
//!
//! Beside the tables, the agent keeps the `vips` hash map equal to its live entries,
//! for people: `bpftool map dump` of a table prints every cell, nearly all empty. The
//! program never reads that map.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    num::NonZeroUsize,
    os::fd::AsFd as _,
    path::Path,
    ptr::NonNull,
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering, fence},
    },
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    maps::{HashMap, Map, MapData, MapError, MapType, PerCpuArray},
};
pub use metallb_common::VipCounters;
use metallb_common::{
    BUCKET_CELLS, FENCE_TIMER_VALUE_SIZE, MAX_PROBES, VipAction, VipBucketV4, VipBucketV6,
    VipCellV4, VipCellV6, VipKeyV4, VipKeyV6, VipTableCtl, VipTableHalf, VipViewKey, VipViewValue,
    XdpStats, home_cell, map_names, table_cells,
};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

use super::{DatapathError, iface::MacAddr, kernel::ProgramBarrier};

/// How long entries and index cells stay untouched after they stop being live, where
/// the kernel cannot wait for the programs ([`ProgramBarrier`] failed).
pub const GRACE: Duration = Duration::from_millis(20);

/// `BPF_F_MMAPABLE`.
const MMAPABLE: u32 = 1 << 10;

pub use crate::entries::{VipConfig, VipKey};

/// One entry as read back from the kernel, with its counters summed over CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipRecord {
    pub key: VipKey,
    pub mac: MacAddr,
    /// `None` if the entry holds an action byte this version does not know.
    pub action: Option<VipAction>,
    pub counters: VipCounters,
}

/// What one sync of the tables changed (before multicast filters).
#[derive(Debug)]
pub struct TableChanges {
    pub added: Vec<VipKey>,
    pub changed: Vec<VipKey>,
    pub removed: Vec<VipKey>,
    pub now_answering: Vec<VipKey>,
    pub errors: Vec<DatapathError>,
    /// Whether the tables hold exactly what was asked for: not when an entry found
    /// no counter id, or the flip failed (then nothing of the change is in).
    pub complete: bool,
    pub took: SyncTimes,
}

impl Default for TableChanges {
    fn default() -> Self {
        Self {
            added: Vec::new(),
            changed: Vec::new(),
            removed: Vec::new(),
            now_answering: Vec::new(),
            errors: Vec::new(),
            complete: true,
            took: SyncTimes::default(),
        }
    }
}

/// Where the time of one sync went.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncTimes {
    /// The grace period of the last flip (normally over already) and freeing the
    /// counter ids it retired.
    pub settle: Duration,
    /// Finding what differs: the walk over the desired and live keys (full sync), or
    /// splitting the given changes by family.
    pub find: Duration,
    /// The bookkeeping of the changes.
    pub apply: Duration,
    /// Writing the idle half and flipping (or the in-place action bytes).
    pub flip: Duration,
    /// The `vips` map beside the tables.
    pub view: Duration,
}

/// A family's cell type, seen generically by the writer.
trait Cell: aya::Pod + Copy + Default + PartialEq {
    type Key: Copy + Ord;
    const ACTION_OFFSET: usize;
    fn new(key: Self::Key, config: &VipConfig, counter_id: u32) -> Self;
    fn key(&self) -> Self::Key;
    fn mac(&self) -> [u8; 6];
    fn action(&self) -> u8;
    fn counter_id(&self) -> u32;
    fn folded(key: &Self::Key) -> u64;
    fn to_user(key: &Self::Key) -> VipKey;
}

macro_rules! impl_cell {
    ($cell:ty, $key:ty, $addr:ty) => {
        impl Cell for $cell {
            type Key = $key;
            const ACTION_OFFSET: usize = std::mem::offset_of!($cell, action);
            fn new(key: $key, config: &VipConfig, counter_id: u32) -> Self {
                <$cell>::new(key, config.mac.0, config.action as u8, counter_id)
            }
            fn key(&self) -> $key {
                self.key
            }
            fn mac(&self) -> [u8; 6] {
                self.mac
            }
            fn action(&self) -> u8 {
                self.action
            }
            fn counter_id(&self) -> u32 {
                self.counter_id
            }
            fn folded(key: &$key) -> u64 {
                key.folded()
            }
            fn to_user(key: &$key) -> VipKey {
                VipKey {
                    addr: <$addr>::from(key.addr).into(),
                    ifindex: key.ifindex,
                    vlan_id: key.vlan_id,
                }
            }
        }
    };
}

impl_cell!(VipCellV4, VipKeyV4, Ipv4Addr);
impl_cell!(VipCellV6, VipKeyV6, Ipv6Addr);

/// The `vips` map's key of `key`: one key type for both families, so that a person
/// finds every VIP in one map.
pub fn view_key(key: &VipKey) -> VipViewKey {
    let (addr, family) = match key.addr {
        IpAddr::V4(v4) => {
            let mut addr = [0; 16];
            addr[..4].copy_from_slice(&v4.octets());
            (addr, 4)
        }
        IpAddr::V6(v6) => (v6.octets(), 6),
    };
    VipViewKey {
        addr,
        ifindex: key.ifindex,
        vlan_id: key.vlan_id,
        family,
        _pad: 0,
    }
}

fn view_value(live: &Live) -> VipViewValue {
    VipViewValue {
        mac: live.config.mac.0,
        action: live.config.action as u8,
        _pad: 0,
        counter_id: live.counter_id,
    }
}

/// The `vips` map, which the agent keeps equal to the live entries of the tables.
struct View {
    map: HashMap<MapData, VipViewKey, VipViewValue>,
}

impl View {
    fn error(op: &'static str, source: MapError) -> DatapathError {
        DatapathError::Map {
            name: map_names::VIPS,
            op,
            source,
        }
    }

    fn put(&mut self, key: &VipKey, value: VipViewValue) -> Result<(), DatapathError> {
        self.map
            .insert(view_key(key), value, 0)
            .map_err(|source| Self::error("update", source))
    }

    /// Sets each of `keys` to the value at the same place in `values`: in one
    /// syscall, or one per key where the kernel has no batches (before 5.6).
    fn put_all(
        &mut self,
        keys: &[VipViewKey],
        values: &[VipViewValue],
    ) -> Result<(), DatapathError> {
        use aya::maps::IterableMap as _;
        let done = match keys {
            [] | [_] => 0,
            _ => match super::kernel::update_batch(self.map.map().fd().as_fd(), keys, values) {
                Ok(()) => return Ok(()),
                Err((done, _)) => done.min(keys.len()),
            },
        };
        for (key, value) in keys[done..].iter().zip(&values[done..]) {
            self.map
                .insert(key, value, 0)
                .map_err(|source| Self::error("update", source))?;
        }
        Ok(())
    }

    fn remove(&mut self, key: &VipKey) -> Result<(), DatapathError> {
        match self.map.remove(&view_key(key)) {
            Err(MapError::KeyNotFound) => Ok(()),
            result => result.map_err(|source| Self::error("delete", source)),
        }
    }

    /// Makes the map hold exactly `entries` (an earlier agent may have left others).
    fn reconcile(
        &mut self,
        entries: impl Iterator<Item = (VipKey, VipViewValue)>,
    ) -> Result<(), DatapathError> {
        let mut wanted = BTreeMap::new();
        for (key, value) in entries {
            self.put(&key, value)?;
            wanted.insert(view_key(&key), value);
        }
        let stale: Vec<VipViewKey> = self
            .map
            .keys()
            .filter_map(Result::ok)
            .filter(|key| !wanted.contains_key(key))
            .collect();
        for key in stale {
            match self.map.remove(&key) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(source) => return Err(Self::error("delete", source)),
            }
        }
        Ok(())
    }
}

fn v4_key(addr: Ipv4Addr, key: &VipKey) -> VipKeyV4 {
    VipKeyV4 {
        addr: addr.octets(),
        ifindex: key.ifindex,
        vlan_id: key.vlan_id,
        _pad: [0; 2],
    }
}

fn v6_key(addr: Ipv6Addr, key: &VipKey) -> VipKeyV6 {
    VipKeyV6 {
        addr: addr.octets(),
        ifindex: key.ifindex,
        vlan_id: key.vlan_id,
        _pad: [0; 2],
    }
}

/// An array map (created with `BPF_F_MMAPABLE`) mapped into this process, as an array
/// of `T`: the map's values are one or more whole `T`s (a table bucket holds several
/// cells). The size of `T` must be a multiple of 8, so that the kernel's stride
/// between values (their size rounded up to 8) adds no gaps.
struct MmapArray<T> {
    ptr: NonNull<T>,
    len: u32,
    bytes: usize,
    /// Keeps the map (and so the mapping's backing) alive.
    _map: MapData,
}

// SAFETY: the mapping is owned by this value (unmapped on drop) and all access goes
// through volatile or atomic operations; moving the owner to another thread is sound.
unsafe impl<T: Send> Send for MmapArray<T> {}

impl<T: Copy> MmapArray<T> {
    fn new(map: MapData, name: &'static str, writable: bool) -> Result<Self, DatapathError> {
        const { assert!(size_of::<T>().is_multiple_of(8)) };
        let info = map.info().map_err(|source| DatapathError::Map {
            name,
            op: "inspect",
            source,
        })?;
        let value_size = info.value_size() as usize;
        if !value_size.is_multiple_of(size_of::<T>()) {
            return Err(DatapathError::Mmap {
                name,
                source: nix::Error::EINVAL,
            });
        }
        let len = info.max_entries() * (value_size / size_of::<T>()) as u32;
        let page = 4096usize;
        let bytes = (len as usize * size_of::<T>()).div_ceil(page) * page;
        let length = NonZeroUsize::new(bytes).ok_or(DatapathError::Mmap {
            name,
            source: nix::Error::EINVAL,
        })?;
        // SAFETY: a shared mapping of the map's fd; the kernel sizes the region, and it
        // stays valid until munmap in Drop (the map outlives it: we own its fd).
        let ptr = unsafe {
            mmap(
                None,
                length,
                if writable {
                    ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
                } else {
                    ProtFlags::PROT_READ
                },
                MapFlags::MAP_SHARED,
                map.fd().as_fd(),
                0,
            )
        }
        .map_err(|source| DatapathError::Mmap { name, source })?;
        Ok(Self {
            ptr: ptr.cast(),
            len,
            bytes,
            _map: map,
        })
    }

    fn slot(&self, index: u32) -> *mut T {
        assert!(index < self.len, "index {index} out of {}", self.len);
        // SAFETY: in bounds of the mapping, checked above.
        unsafe { self.ptr.as_ptr().add(index as usize) }
    }

    fn read(&self, index: u32) -> T {
        // SAFETY: an in-bounds, aligned element of shared memory the program may write
        // (counters never live here; only action bytes change under our feet).
        unsafe { self.slot(index).read_volatile() }
    }

    fn write(&self, index: u32, value: T) {
        // SAFETY: as above; the reader tolerates this write by the protocol above.
        unsafe { self.slot(index).write_volatile(value) }
    }

    /// A byte of element `index` as an atomic (for in-place `action` changes).
    fn byte(&self, index: u32, offset: usize) -> &AtomicU8 {
        assert!(offset < size_of::<T>());
        // SAFETY: in bounds; AtomicU8 has the alignment of u8.
        unsafe { AtomicU8::from_ptr(self.slot(index).cast::<u8>().add(offset)) }
    }
}

/// A family's per-VIP counters (`vip_stats_v4`, `vip_stats_v6`): a plain mmapable
/// array of one block of `stride` counter ids per CPU. The program adds to its CPU's
/// block; readers sum the blocks.
pub(crate) struct CounterArray {
    array: MmapArray<VipCounters>,
    cpus: u32,
    stride: u32,
}

// SAFETY: every access to the mapping is a volatile read or write of whole aligned
// elements, the same shared memory the program updates from every CPU at any time;
// readers on other threads (the metrics at scrape time, see [`CounterView`]) only
// read, and tolerate a value that moves under them as they tolerate the program.
unsafe impl Sync for CounterArray {}

impl CounterArray {
    pub(crate) fn new(
        map: MapData,
        name: &'static str,
        writable: bool,
    ) -> Result<Self, DatapathError> {
        let array = MmapArray::new(map, name, writable)?;
        let cpus = u32::try_from(possible_cpus()?).map_err(|_| DatapathError::MapLayout {
            path: name.into(),
            detail: "more CPUs than counters".into(),
        })?;
        if cpus == 0 || !array.len.is_multiple_of(cpus) {
            return Err(DatapathError::MapLayout {
                path: name.into(),
                detail: format!(
                    "{} counters do not make one block per CPU ({cpus} CPUs)",
                    array.len
                ),
            });
        }
        let stride = array.len / cpus;
        Ok(Self {
            array,
            cpus,
            stride,
        })
    }

    /// Counter ids per CPU.
    fn len(&self) -> u32 {
        self.stride
    }

    /// The counters of id `id`, summed over CPUs.
    pub(crate) fn get(&self, id: u32) -> VipCounters {
        (0..self.cpus).fold(VipCounters::default(), |acc, cpu| {
            add(acc, self.array.read(cpu * self.stride + id))
        })
    }

    /// Zeroes id `id` on every CPU (an id no live key uses: the program does not
    /// write it).
    fn zero(&self, id: u32) {
        for cpu in 0..self.cpus {
            self.array
                .write(cpu * self.stride + id, VipCounters::default());
        }
    }

    /// Adds to id `id` in CPU 0's block (the userspace datapath: the program does not
    /// run for its VIPs).
    pub(crate) fn add_cpu0(&self, id: u32, add: impl FnOnce(&mut VipCounters)) {
        let mut value = self.array.read(id);
        add(&mut value);
        self.array.write(id, value);
    }
}

fn add(a: VipCounters, b: VipCounters) -> VipCounters {
    VipCounters {
        requests: a.requests + b.requests,
        replies: a.replies + b.replies,
        conflicts: a.conflicts + b.conflicts,
        suppressed: a.suppressed + b.suppressed,
    }
}

/// The CPUs the kernel may run the program on (the blocks of the counters arrays).
pub(crate) fn possible_cpus() -> Result<usize, DatapathError> {
    aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Cpus(e))
}

impl<T> Drop for MmapArray<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping created in new(), of this size, no longer used.
        let _ = unsafe { munmap(self.ptr.cast(), self.bytes) };
    }
}

/// Where the table hashes and probes: the parameters of one half.
#[derive(Clone, Copy)]
struct Layout {
    mask: u32,
    shift: u32,
}

/// One half of a table as the writer addresses it.
#[derive(Clone, Copy)]
struct HalfAt {
    /// 0 or 1.
    index: usize,
    /// Its first cell.
    base: u32,
    layout: Layout,
    seed: u64,
}

impl HalfAt {
    fn new(index: u32, layout: Layout, seed: u64) -> Self {
        Self {
            index: index as usize,
            base: index * (layout.mask + 1),
            layout,
            seed,
        }
    }

    /// The home of a key, as an index into the half.
    fn home(&self, folded: u64) -> u32 {
        home_cell(folded, self.seed, self.layout.shift) & self.layout.mask
    }

    /// The cell of index `index` (wrapping) of the half.
    fn cell(&self, index: u32) -> u32 {
        self.base + (index & self.layout.mask)
    }
}

/// Cells the writer reads and writes: the mapped table (or, in tests, a vector).
trait Slots<C> {
    fn get(&self, cell: u32) -> C;
    fn set(&mut self, cell: u32, value: C);
}

impl<C: Copy> Slots<C> for MmapArray<C> {
    fn get(&self, cell: u32) -> C {
        self.read(cell)
    }

    fn set(&mut self, cell: u32, value: C) {
        self.write(cell, value);
    }
}

/// The cell of `key` in `half`, if it is there: the reader's probe sequence, from the
/// key's home to the first empty cell, at most [`MAX_PROBES`] cells.
fn find<C: Cell>(slots: &impl Slots<C>, half: HalfAt, key: &C::Key) -> Option<u32> {
    let home = half.home(C::folded(key));
    for probe in 0..MAX_PROBES {
        let cell = half.cell(home.wrapping_add(probe));
        let value = slots.get(cell);
        if value.counter_id() == 0 {
            return None;
        }
        if value.key() == *key {
            return Some(cell);
        }
    }
    None
}

/// Writes `value` into the first empty cell of its key's probe sequence in `half` (the
/// key must not be there yet); `None` if there is none within [`MAX_PROBES`] of its
/// home.
fn place<C: Cell>(slots: &mut impl Slots<C>, half: HalfAt, value: C) -> Option<u32> {
    let home = half.home(C::folded(&value.key()));
    let cell = (0..MAX_PROBES)
        .map(|probe| half.cell(home.wrapping_add(probe)))
        .find(|cell| slots.get(*cell).counter_id() == 0)?;
    slots.set(cell, value);
    Some(cell)
}

/// Empties `cell` of `half` and closes the gap (backward-shift deletion): each later
/// key of the run whose probe sequence passes the hole moves into it, so that every key
/// stays reachable from its home without an empty cell on the way, and no key moves
/// further from its home. `moved` learns each moved key's new cell.
fn remove_at<C: Cell>(
    slots: &mut impl Slots<C>,
    half: HalfAt,
    cell: u32,
    mut moved: impl FnMut(C::Key, u32),
) {
    let mask = half.layout.mask;
    let mut hole = cell - half.base;
    let mut next = hole;
    for _ in 0..mask {
        next = (next + 1) & mask;
        let value = slots.get(half.base + next);
        if value.counter_id() == 0 {
            break;
        }
        let home = half.home(C::folded(&value.key()));
        // It may fill the hole if the hole is on its way from its home.
        if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
            slots.set(half.base + hole, value);
            moved(value.key(), half.base + hole);
            hole = next;
        }
    }
    slots.set(half.base + hole, C::default());
}

/// Writes every key of `live` into `half`, emptied first, recording each key's cell
/// there; `false` if some key found no cell within [`MAX_PROBES`] of its home.
fn build<C: Cell>(
    slots: &mut impl Slots<C>,
    half: HalfAt,
    live: &mut BTreeMap<C::Key, Live>,
) -> bool {
    for cell in half.base..=half.base + half.layout.mask {
        slots.set(cell, C::default());
    }
    for (key, entry) in live.iter_mut() {
        let Some(cell) = place(slots, half, C::new(*key, &entry.config, entry.counter_id)) else {
            return false;
        };
        entry.cells[half.index] = cell;
    }
    true
}

/// Brings `half`, which held `live` but for the keys of `stale`, to `live`: the keys
/// that went are taken out first, then the others written where they are or placed.
/// Costs the stale keys only. `false` if a key found no cell (the half is then part
/// way, to be built whole).
fn catch_up<C: Cell>(
    slots: &mut impl Slots<C>,
    half: HalfAt,
    live: &mut BTreeMap<C::Key, Live>,
    stale: &BTreeSet<C::Key>,
) -> bool {
    let gone: Vec<C::Key> = stale
        .iter()
        .filter(|key| !live.contains_key(key))
        .copied()
        .collect();
    for key in &gone {
        if let Some(cell) = find(slots, half, key) {
            remove_at(slots, half, cell, |moved, cell| {
                if let Some(entry) = live.get_mut(&moved) {
                    entry.cells[half.index] = cell;
                }
            });
        }
    }
    for key in stale {
        let Some(entry) = live.get_mut(key) else {
            continue;
        };
        let value = C::new(*key, &entry.config, entry.counter_id);
        let cell = match find(slots, half, key) {
            Some(cell) => {
                slots.set(cell, value);
                cell
            }
            None => match place(slots, half, value) {
                Some(cell) => cell,
                None => return false,
            },
        };
        entry.cells[half.index] = cell;
    }
    true
}

/// Makes `half` hold exactly `live`. `stale`: the half held `live` but for these keys
/// (`None`: what it holds is not known). Writes only the stale keys if each finds a
/// cell; otherwise builds the whole half, under its seed, then under `fresh_seed()`s
/// until every key finds a cell. Returns the seed used; `None` if 64 seeds failed.
fn prepare<C: Cell>(
    slots: &mut impl Slots<C>,
    half: HalfAt,
    live: &mut BTreeMap<C::Key, Live>,
    stale: Option<&BTreeSet<C::Key>>,
    mut fresh_seed: impl FnMut() -> u64,
) -> Option<u64> {
    if let Some(stale) = stale
        && catch_up(slots, half, live, stale)
    {
        return Some(half.seed);
    }
    let mut half = half;
    for _ in 0..64 {
        if build(slots, half, live) {
            return Some(half.seed);
        }
        half.seed = fresh_seed();
    }
    None
}

/// One family's table and counters, and the writer's bookkeeping.
struct Family<C: Cell> {
    table: MmapArray<C>,
    /// Shared with the [`CounterView`]s handed out.
    stats: Arc<CounterArray>,
    /// Live keys: counter id, configuration, and cell in each half.
    live: BTreeMap<C::Key, Live>,
    /// The half the program reads (since the last flip, or adoption).
    live_half: u32,
    /// Keys whose cell in the idle half may differ from `live`: those changed since
    /// that half was last live. Bringing the idle half up to date writes only these.
    stale: BTreeSet<C::Key>,
    /// What the idle half holds is not known (adopted tables, a failed flip): it is
    /// built whole before it is used.
    idle_unknown: bool,
    /// Counter ids no live key uses and no reader can reach any more.
    free: Vec<u32>,
    /// Counter ids of keys removed before the last flip: free after a grace period.
    retired: Vec<u32>,
    /// Action bytes to store in place, once the sync is known not to flip: (cell,
    /// action).
    in_place: Vec<(u32, u8)>,
    /// What the sync in progress changed, undone if its flip fails.
    undo: Undo<C::Key>,
    /// Replies counted for keys this agent removed, whose ids are free again: the
    /// program counts answers per VIP only, and totals must not shrink.
    freed_replies: u64,
}

/// What a sync changed in the bookkeeping: each key touched with what it was, the
/// counter ids taken from `free`, the length `retired` had.
struct Undo<K> {
    entries: Vec<(K, Option<Live>)>,
    taken: Vec<u32>,
    retired: usize,
}

impl<K> Default for Undo<K> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            taken: Vec::new(),
            retired: 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Live {
    counter_id: u32,
    config: VipConfig,
    /// The key's cell in each half: always right in the live half; in the idle half
    /// once that is up to date.
    cells: [u32; 2],
}

impl<C: Cell> Family<C> {
    fn new(table: MmapArray<C>, stats: CounterArray) -> Self {
        Self {
            table,
            stats: Arc::new(stats),
            live: BTreeMap::new(),
            live_half: 0,
            stale: BTreeSet::new(),
            idle_unknown: true,
            free: Vec::new(),
            retired: Vec::new(),
            in_place: Vec::new(),
            undo: Undo::default(),
            freed_replies: 0,
        }
    }

    /// Puts the bookkeeping back as it was before [`Family::apply`]. The idle half may
    /// have been written part way: it is built whole next time.
    fn rollback(&mut self) {
        let undo = std::mem::take(&mut self.undo);
        for (key, was) in undo.entries.into_iter().rev() {
            match was {
                Some(live) => self.live.insert(key, live),
                None => self.live.remove(&key),
            };
        }
        self.free.extend(undo.taken.into_iter().rev());
        self.retired.truncate(undo.retired);
        self.in_place.clear();
        self.idle_unknown = true;
    }

    /// Ends a sync that went through: after a flip, the half that was live lacks
    /// exactly the keys this sync touched.
    fn commit(&mut self, flipped: bool) {
        let undo = std::mem::take(&mut self.undo);
        if flipped {
            self.stale
                .extend(undo.entries.into_iter().map(|(key, _)| key));
        }
        self.in_place.clear();
    }

    /// Stores the action bytes [`Family::apply`] left for the live half.
    fn store_in_place(&mut self) {
        for (cell, action) in self.in_place.drain(..) {
            // One byte, in place: the only change a live cell may see.
            self.table
                .byte(cell, C::ACTION_OFFSET)
                .store(action, Ordering::Release);
        }
    }

    /// Rebuilds the bookkeeping from the live half. `writable`: also (re)writes what
    /// each live cell derives from its key and MAC, for the program this agent loaded.
    fn adopt(&mut self, ctl: &VipTableCtl, writable: bool) {
        let cells = ctl.cell_mask + 1;
        self.live_half = ctl.active & 1;
        let base = self.live_half * cells;
        let ids = self.stats.len();
        let mut used = vec![false; ids as usize];
        for cell in base..base + cells {
            let slot = self.table.read(cell);
            let id = slot.counter_id();
            let Some(action) = VipAction::from_u8(slot.action()) else {
                continue;
            };
            if id == 0 || id >= ids || used[id as usize] {
                continue;
            }
            used[id as usize] = true;
            let config = VipConfig {
                mac: MacAddr(slot.mac()),
                action,
            };
            // An older agent's cells lack the fields derived since (their bytes were
            // padding): fill them in before this agent's program can read them. The
            // bytes a running program reads are rewritten with the values they have.
            let fresh = C::new(slot.key(), &config, id);
            if writable && fresh != slot {
                self.table.write(cell, fresh);
            }
            self.live.insert(
                slot.key(),
                Live {
                    counter_id: id,
                    config,
                    cells: [cell; 2],
                },
            );
        }
        // Highest ids first, so that allocation (pop) hands out low ids.
        self.free = (1..ids).rev().filter(|id| !used[*id as usize]).collect();
        self.stale.clear();
        self.idle_unknown = true;
    }

    fn zero_counters(&mut self, id: u32) -> Result<(), DatapathError> {
        self.stats.zero(id);
        Ok(())
    }

    /// What differs between the live keys and `desired` (sorted by key): each key to
    /// set (new, or with another configuration) or to remove (`None`), in key order.
    /// One walk over both, no lookup.
    fn diff(
        &self,
        desired: impl Iterator<Item = (C::Key, VipConfig)>,
    ) -> Vec<(C::Key, Option<VipConfig>)> {
        let mut out = Vec::new();
        let mut live = self.live.iter().peekable();
        for (key, config) in desired {
            while let Some((gone, _)) = live.next_if(|(live, _)| **live < key) {
                out.push((*gone, None));
            }
            match live.next_if(|(live, _)| **live == key) {
                Some((_, live)) if live.config == config => {}
                _ => out.push((key, Some(config))),
            }
        }
        out.extend(live.map(|(gone, _)| (*gone, None)));
        out
    }

    /// Applies `delta` (keys in order; `None`: remove) to the bookkeeping, recording
    /// how to undo it; action-only changes are left in `in_place` for the live half (a
    /// flip makes them moot). Returns whether the tables must flip.
    fn apply(
        &mut self,
        delta: Vec<(C::Key, Option<VipConfig>)>,
        changes: &mut TableChanges,
    ) -> bool {
        self.undo = Undo {
            retired: self.retired.len(),
            ..Undo::default()
        };
        let mut flip = false;
        for (key, wanted) in delta {
            let user_key = C::to_user(&key);
            match (self.live.get_mut(&key), wanted) {
                (Some(live), Some(config)) if live.config == config => continue,
                (Some(live), Some(config)) => {
                    self.undo.entries.push((key, Some(*live)));
                    let old = live.config;
                    live.config = config;
                    if old.mac == config.mac {
                        self.in_place
                            .push((live.cells[self.live_half as usize], config.action as u8));
                    } else {
                        flip = true;
                    }
                    changes.changed.push(user_key);
                    // Answering now, or answering with another MAC: announce it.
                    if config.action == VipAction::Answer
                        && (old.action != VipAction::Answer || old.mac != config.mac)
                    {
                        changes.now_answering.push(user_key);
                    }
                }
                (None, Some(config)) => {
                    let Some(counter_id) = self.free.pop() else {
                        changes.errors.push(DatapathError::TableFull {
                            vip: user_key,
                            capacity: self.stats.len() - 1,
                        });
                        changes.complete = false;
                        continue;
                    };
                    if let Err(error) = self.zero_counters(counter_id) {
                        self.free.push(counter_id);
                        changes.errors.push(error);
                        changes.complete = false;
                        continue;
                    }
                    self.undo.taken.push(counter_id);
                    self.undo.entries.push((key, None));
                    // Its cells are set when it is written into the idle half.
                    self.live.insert(
                        key,
                        Live {
                            counter_id,
                            config,
                            cells: [0; 2],
                        },
                    );
                    changes.added.push(user_key);
                    if config.action == VipAction::Answer {
                        changes.now_answering.push(user_key);
                    }
                    flip = true;
                }
                (Some(_), None) => {
                    let Some(live) = self.live.remove(&key) else {
                        continue;
                    };
                    self.undo.entries.push((key, Some(live)));
                    self.retired.push(live.counter_id);
                    changes.removed.push(user_key);
                    flip = true;
                }
                (None, None) => continue,
            }
            self.stale.insert(key);
        }
        flip
    }

    /// Makes the idle half `half` hold exactly the live keys: only the stale keys are
    /// written when the half is known and each finds a cell; otherwise the whole half
    /// is built, under its seed or, if a key cannot be placed, fresh ones. Returns the
    /// seed used. Only while no program can read the half.
    fn prepare_idle(&mut self, half: HalfAt, family: &'static str) -> Result<u64, DatapathError> {
        let known = !self.idle_unknown;
        let seed = prepare(
            &mut self.table,
            half,
            &mut self.live,
            known.then_some(&self.stale),
            random_seed,
        );
        self.idle_unknown = seed.is_none();
        if seed.is_some() {
            self.stale.clear();
        }
        seed.ok_or(DatapathError::IndexFull { family })
    }

    /// Whether the idle half holds exactly the live keys.
    fn idle_current(&self) -> bool {
        !self.idle_unknown && self.stale.is_empty()
    }

    /// After GRACE: counter ids retired at the last flip become free, their counters
    /// final (no program reaches them any more); their replies stay in the totals.
    fn free_retired(&mut self) -> Result<(), DatapathError> {
        while let Some(id) = self.retired.pop() {
            match self.counters(id) {
                Ok(counters) => {
                    self.freed_replies += counters.replies;
                    self.free.push(id);
                }
                Err(error) => {
                    self.retired.push(id);
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// Replies counted for keys this agent removed.
    fn removed_replies(&self) -> Result<u64, DatapathError> {
        self.retired.iter().try_fold(self.freed_replies, |sum, id| {
            Ok(sum + self.counters(*id)?.replies)
        })
    }

    /// Every live key's address and counter id, in key order (see [`CounterView`]).
    fn counted(&self) -> impl Iterator<Item = ViewEntry> + '_ {
        self.live.iter().map(|(key, live)| ViewEntry {
            addr: C::to_user(key).addr,
            counter_id: live.counter_id,
            answered: live.config.action == VipAction::Answer,
        })
    }

    /// What the `vips` map holds for every live key.
    fn view_entries(&self) -> impl Iterator<Item = (VipKey, VipViewValue)> + '_ {
        self.live
            .iter()
            .map(|(key, live)| (C::to_user(key), view_value(live)))
    }

    fn live_counters(&self, key: &C::Key) -> Result<Option<VipCounters>, DatapathError> {
        self.live
            .get(key)
            .map(|live| self.counters(live.counter_id))
            .transpose()
    }

    /// The counters of id `id`, summed over CPUs.
    fn counters(&self, id: u32) -> Result<VipCounters, DatapathError> {
        Ok(self.stats.get(id))
    }

    fn records(&self) -> Result<Vec<VipRecord>, DatapathError> {
        // Every second, for the metrics: memory reads of the mapped counters, no
        // syscall.
        self.live
            .iter()
            .map(|(key, live)| {
                let cell = self.table.read(live.cells[self.live_half as usize]);
                Ok(VipRecord {
                    key: C::to_user(key),
                    mac: MacAddr(cell.mac()),
                    action: VipAction::from_u8(cell.action()),
                    counters: self.stats.get(live.counter_id),
                })
            })
            .collect()
    }
}

/// The live entries of one [`Maps::revision`] with their counter ids, and the mapped
/// counter arrays: reads every VIP's counters from memory, on any thread, no syscall.
///
/// Valid until the next [`Maps::sync`] after the one it was taken after: a sync frees
/// only the ids retired by an earlier sync (after their grace period), which no view
/// taken since lists, so the ids of a view taken after each sync are never reused
/// under it.
#[derive(Clone, Default)]
pub struct CounterView {
    revision: u64,
    /// IPv4, IPv6; `None` in an empty view.
    arrays: Option<[Arc<CounterArray>; 2]>,
    /// Sorted by [`VipKey`] (IPv4 first): a VIP's entries on several interfaces are
    /// next to each other.
    entries: Arc<[ViewEntry]>,
    /// Replies counted for the keys the agent removed, per family, when the view was
    /// taken.
    removed_replies: [u64; 2],
}

#[derive(Clone, Copy)]
struct ViewEntry {
    addr: IpAddr,
    counter_id: u32,
    answered: bool,
}

impl std::fmt::Debug for CounterView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterView")
            .field("revision", &self.revision)
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl CounterView {
    /// The [`Maps::revision`] this view lists the entries of.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    fn counters(&self, entry: &ViewEntry) -> VipCounters {
        self.arrays
            .as_ref()
            .map_or_else(VipCounters::default, |arrays| {
                arrays[usize::from(entry.addr.is_ipv6())].get(entry.counter_id)
            })
    }

    /// Every VIP's counters, summed over its interfaces and the CPUs, in address
    /// order, each VIP once.
    pub fn per_ip(&self) -> Vec<(IpAddr, VipCounters)> {
        let mut out: Vec<(IpAddr, VipCounters)> = Vec::with_capacity(self.entries.len());
        for entry in self.entries.iter() {
            let counters = self.counters(entry);
            match out.last_mut() {
                Some((addr, sum)) if *addr == entry.addr => *sum = add(*sum, counters),
                _ => out.push((entry.addr, counters)),
            }
        }
        out
    }

    /// Every entry's claims by other hosts: (VIP, whether this node answers it,
    /// claims), in address order.
    pub fn conflicts(&self) -> impl Iterator<Item = (IpAddr, bool, u64)> + '_ {
        self.entries
            .iter()
            .map(|entry| (entry.addr, entry.answered, self.counters(entry).conflicts))
    }

    /// Every answer so far (ARP replies, Neighbor Advertisements): the live entries'
    /// replies and those of the entries removed before the view was taken.
    pub fn replies(&self) -> (u64, u64) {
        let [mut v4, mut v6] = self.removed_replies;
        for entry in self.entries.iter() {
            let replies = self.counters(entry).replies;
            match entry.addr {
                IpAddr::V4(_) => v4 += replies,
                IpAddr::V6(_) => v6 += replies,
            }
        }
        (v4, v6)
    }
}

/// The responder's maps: VIP tables (both families), global counters, and the `vips`
/// map beside the tables.
pub struct Maps {
    ctl: MmapArray<VipTableCtl>,
    v4: Family<VipCellV4>,
    v6: Family<VipCellV6>,
    stats: PerCpuArray<MapData, XdpStats>,
    /// Only when writable: inspection reads the tables.
    view: Option<View>,
    /// Only when writable: waits for the programs after a flip.
    barrier: Option<Arc<ProgramBarrier>>,
    /// The grace period of the last flip, until the writer has seen it end.
    unsettled: Option<Unsettled>,
    /// Test hook: the next rebuild fails as if no seed placed every key.
    fail_next_rebuild: bool,
    /// False when opened for inspection: nothing is ever written then.
    writable: bool,
    /// Which live entries and counter ids these are (see [`Maps::revision`]).
    revision: u64,
}

/// Revisions of the live entries, unique in the process (see [`Maps::revision`]).
static REVISIONS: AtomicU64 = AtomicU64::new(1);

fn next_revision() -> u64 {
    REVISIONS.fetch_add(1, Ordering::Relaxed)
}

/// The grace period that follows a flip: when the flip was, and the thread that waits
/// for the programs (started at once, so that the wait is mostly over when the next
/// change comes; `None` if it could not be started: the next sync waits itself).
struct Unsettled {
    flip: Instant,
    waiter: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

/// (name, type, key size, value size) of every map, in `map_names::ALL` order.
fn expected_layouts() -> [(&'static str, MapType, usize, usize); 8] {
    use map_names::*;
    [
        (VIP_CTL, MapType::Array, 4, size_of::<VipTableCtl>()),
        (VIPS_V4, MapType::Array, 4, size_of::<VipBucketV4>()),
        (VIPS_V6, MapType::Array, 4, size_of::<VipBucketV6>()),
        (VIP_STATS_V4, MapType::Array, 4, size_of::<VipCounters>()),
        (VIP_STATS_V6, MapType::Array, 4, size_of::<VipCounters>()),
        (XDP_STATS, MapType::PerCpuArray, 4, size_of::<XdpStats>()),
        (
            VIPS,
            MapType::Hash,
            size_of::<VipViewKey>(),
            size_of::<VipViewValue>(),
        ),
        (FENCE_TIMER, MapType::Array, 4, FENCE_TIMER_VALUE_SIZE),
    ]
}

/// Opens the map pinned at `path`; a refusal says whose pin it is or which
/// capability is missing.
fn open_pin(path: &Path) -> Result<MapData, DatapathError> {
    MapData::from_pin(path).map_err(|source| {
        super::pin_refusal(
            path,
            || format!("opening pinned map {}", path.display()),
            source,
            |source| DatapathError::OpenPinned {
                path: path.to_owned(),
                source,
            },
        )
    })
}

fn check_layout(map: &MapData, path: &Path, name: &'static str) -> Result<(), DatapathError> {
    let Some((_, map_type, key_size, value_size)) =
        expected_layouts().into_iter().find(|(n, ..)| *n == name)
    else {
        return Err(DatapathError::MapMissing { name });
    };
    let inspect = |source| DatapathError::Map {
        name,
        op: "inspect",
        source,
    };
    let info = map.info().map_err(inspect)?;
    let found_type = info.map_type().map_err(inspect)?;
    // The tables and the control block are written through shared memory; a map
    // with a timer cannot be.
    let mmapable_wanted = map_type == MapType::Array && name != map_names::FENCE_TIMER;
    let mmapable = info.map_flags() & MMAPABLE != 0;
    if found_type != map_type
        || info.key_size() as usize != key_size
        || info.value_size() as usize != value_size
        || mmapable != mmapable_wanted
    {
        return Err(DatapathError::MapLayout {
            path: path.to_owned(),
            detail: format!(
                "found {found_type:?} with {}-byte keys and {}-byte values (mmapable: {mmapable}), expected {map_type:?} with {key_size}-byte keys and {value_size}-byte values (mmapable: {mmapable_wanted})",
                info.key_size(),
                info.value_size()
            ),
        });
    }
    Ok(())
}

impl Maps {
    /// The sizes the loader gives each map for a capacity of `max_vips` per family.
    pub fn sizes(max_vips: u32) -> Result<[(&'static str, u32); 6], DatapathError> {
        use map_names::*;
        // Two halves of cells, in buckets; counter id 0 is never used (it marks empty
        // cells); one block of counter ids per possible CPU.
        let buckets = 2 * table_cells(max_vips) / BUCKET_CELLS;
        let counters = u32::try_from(possible_cpus()?)
            .ok()
            .and_then(|cpus| cpus.checked_mul(max_vips + 1))
            .ok_or(DatapathError::MapLayout {
                path: VIP_STATS_V4.into(),
                detail: format!("{max_vips} VIPs per CPU do not fit in one map"),
            })?;
        Ok([
            (VIPS_V4, buckets),
            (VIPS_V6, buckets),
            (VIP_STATS_V4, counters),
            (VIP_STATS_V6, counters),
            (VIP_CTL, 1),
            (VIPS, 2 * max_vips),
        ])
    }

    /// Checks every map already pinned under `pin_dir` against this version's layout.
    pub fn check_existing_pins(pin_dir: &Path) -> Result<(), DatapathError> {
        for name in map_names::ALL {
            let path = pin_dir.join(name);
            if !path.exists() {
                continue;
            }
            let data = open_pin(&path)?;
            check_layout(&data, &path, name)?;
        }
        Ok(())
    }

    /// Takes the maps out of a loaded object and adopts what they hold.
    pub fn from_ebpf(ebpf: &mut Ebpf, pin_dir: &Path) -> Result<Self, DatapathError> {
        Self::assemble(pin_dir, true, |name| {
            let map = ebpf
                .take_map(name)
                .ok_or(DatapathError::MapMissing { name })?;
            map_data(map, name)
        })
    }

    /// The value of the control block pinned at `path`.
    pub fn read_pinned_ctl(path: &Path) -> Result<VipTableCtl, DatapathError> {
        let data = open_pin(path)?;
        let map = |op, source| DatapathError::Map {
            name: map_names::VIP_CTL,
            op,
            source,
        };
        let array = aya::maps::Array::<_, VipTableCtl>::try_from(Map::Array(data))
            .map_err(|source| map("open", source))?;
        array.get(&0, 0).map_err(|source| map("read", source))
    }

    /// Opens, read-only, the maps pinned under `pin_dir` by a running or departed agent
    /// (for inspection: [`Maps::sync`] refuses to write through these).
    pub fn open_pinned(pin_dir: &Path) -> Result<Self, DatapathError> {
        Self::assemble(pin_dir, false, |name| open_pin(&pin_dir.join(name)))
    }

    fn assemble(
        pin_dir: &Path,
        writable: bool,
        mut open: impl FnMut(&'static str) -> Result<MapData, DatapathError>,
    ) -> Result<Self, DatapathError> {
        use map_names::*;
        let mut get = |name: &'static str| {
            let data = open(name)?;
            check_layout(&data, &pin_dir.join(name), name)?;
            Ok::<_, DatapathError>(data)
        };
        let ctl = MmapArray::<VipTableCtl>::new(get(VIP_CTL)?, VIP_CTL, writable)?;
        let v4 = Family::new(
            MmapArray::new(get(VIPS_V4)?, VIPS_V4, writable)?,
            CounterArray::new(get(VIP_STATS_V4)?, VIP_STATS_V4, writable)?,
        );
        let v6 = Family::new(
            MmapArray::new(get(VIPS_V6)?, VIPS_V6, writable)?,
            CounterArray::new(get(VIP_STATS_V6)?, VIP_STATS_V6, writable)?,
        );
        let stats = per_cpu(get(XDP_STATS)?, XDP_STATS)?;
        // Not opened for inspection: pins of an older agent may have no `vips` map.
        let view = if writable {
            let map = HashMap::try_from(Map::HashMap(get(VIPS)?))
                .map_err(|source| View::error("open", source))?;
            Some(View { map })
        } else {
            None
        };
        let barrier = if writable {
            Some(Arc::new(ProgramBarrier::new().map_err(|source| {
                DatapathError::Barrier {
                    op: "creating",
                    source,
                }
            })?))
        } else {
            None
        };
        let mut maps = Self {
            ctl,
            v4,
            v6,
            stats,
            view,
            barrier,
            unsettled: None,
            fail_next_rebuild: false,
            writable,
            revision: next_revision(),
        };
        // An agent before this one may have flipped just before it stopped: its grace
        // period is waited for too.
        maps.unsettled = maps.barrier.is_some().then(|| maps.begin_grace());
        maps.init_or_adopt(pin_dir)?;
        Ok(maps)
    }

    fn init_or_adopt(&mut self, pin_dir: &Path) -> Result<(), DatapathError> {
        let half_cells = self.v4.table.len / 2;
        let consistent = self.v6.table.len == self.v4.table.len
            && half_cells.is_power_of_two()
            && self.v6.stats.len() == self.v4.stats.len();
        if !consistent {
            return Err(DatapathError::MapLayout {
                path: pin_dir.to_owned(),
                detail: "the VIP maps have sizes that do not belong together".into(),
            });
        }
        let ctl = self.ctl.read(0);
        if ctl.cell_mask == 0 && !self.writable {
            // Created but never initialised: nothing to read.
            return Ok(());
        }
        if ctl.cell_mask == 0 {
            // Fresh maps: every cell is empty, so the live half is too.
            self.ctl.write(
                0,
                VipTableCtl {
                    cell_mask: half_cells - 1,
                    shift: 64 - half_cells.trailing_zeros(),
                    halves: [0, 1].map(|half| VipTableHalf {
                        base: half * u64::from(half_cells),
                        seed_v4: random_seed(),
                        seed_v6: random_seed(),
                        ..Default::default()
                    }),
                    counter_stride: self.v4.stats.len(),
                    ..Default::default()
                },
            );
        } else if ctl.cell_mask + 1 != half_cells
            || ctl.shift != 64 - half_cells.trailing_zeros()
            || ctl.halves[1].base != u64::from(half_cells)
            || ctl.counter_stride != self.v4.stats.len()
        {
            return Err(DatapathError::MapLayout {
                path: pin_dir.join(map_names::VIP_CTL),
                detail: format!(
                    "its geometry does not match tables of {} cells and {} counter ids per CPU",
                    self.v4.table.len,
                    self.v4.stats.len()
                ),
            });
        }
        let ctl = self.ctl.read(0);
        self.v4.adopt(&ctl, self.writable);
        self.v6.adopt(&ctl, self.writable);
        if let Some(view) = &mut self.view {
            view.reconcile(self.v4.view_entries().chain(self.v6.view_entries()))?;
        }
        Ok(())
    }

    /// What the tables hold (live entries).
    pub fn installed(&self) -> BTreeMap<VipKey, VipConfig> {
        let v4 = self
            .v4
            .live
            .iter()
            .map(|(k, l)| (VipCellV4::to_user(k), l.config));
        let v6 = self
            .v6
            .live
            .iter()
            .map(|(k, l)| (VipCellV6::to_user(k), l.config));
        v4.chain(v6).collect()
    }

    /// Every live entry with its counter id (in the per-family stats map).
    pub fn live_entries(&self) -> Vec<(VipKey, VipConfig, u32)> {
        let v4 = self
            .v4
            .live
            .iter()
            .map(|(k, l)| (VipCellV4::to_user(k), l.config, l.counter_id));
        let v6 = self
            .v6
            .live
            .iter()
            .map(|(k, l)| (VipCellV6::to_user(k), l.config, l.counter_id));
        v4.chain(v6).collect()
    }

    /// Test hook: the next rebuild of the tables fails, as when no seed places every
    /// key (which real tables, never more than half full, practically never see).
    #[doc(hidden)]
    pub fn fail_next_rebuild(&mut self) {
        self.fail_next_rebuild = true;
    }

    /// Makes the tables hold exactly `desired`: the full sync (start-up, recovery).
    /// Costs one walk over `desired` and the live keys (to find what differs) and then
    /// only what changed: a flip writes the changed keys into the idle half, if that
    /// half is up to date otherwise (see [`Maps::tidy`]), else first the keys it lacks.
    pub fn sync(&mut self, desired: &BTreeMap<VipKey, VipConfig>) -> TableChanges {
        self.change(|v4, v6| {
            // `desired` in key order is IPv4 first; each family's keys order as the
            // addresses do, so one walk per family finds what differs.
            let first_v6 = VipKey {
                addr: Ipv6Addr::UNSPECIFIED.into(),
                ifindex: 0,
                vlan_id: 0,
            };
            let delta_v4 =
                v4.diff(
                    desired
                        .range(..first_v6)
                        .filter_map(|(key, config)| match key.addr {
                            IpAddr::V4(addr) => Some((v4_key(addr, key), *config)),
                            IpAddr::V6(_) => None,
                        }),
                );
            let delta_v6 =
                v6.diff(
                    desired
                        .range(first_v6..)
                        .filter_map(|(key, config)| match key.addr {
                            IpAddr::V6(addr) => Some((v6_key(addr, key), *config)),
                            IpAddr::V4(_) => None,
                        }),
                );
            (delta_v4, delta_v6)
        })
    }

    /// Sets each key of `delta` to its value (`None`: removed), and leaves every other
    /// key as it is: costs the keys of `delta` only, no walk over the tables. The
    /// caller knows which entries may have changed (see `plan::vip_delta`); a key
    /// whose value is already the live one changes nothing. Each key at most once.
    pub fn update<'a>(
        &mut self,
        delta: impl IntoIterator<Item = (&'a VipKey, &'a Option<VipConfig>)>,
    ) -> TableChanges {
        self.change(|_, _| {
            let (mut delta_v4, mut delta_v6) = (Vec::new(), Vec::new());
            for (key, config) in delta {
                match key.addr {
                    IpAddr::V4(addr) => delta_v4.push((v4_key(addr, key), *config)),
                    IpAddr::V6(addr) => delta_v6.push((v6_key(addr, key), *config)),
                }
            }
            (delta_v4, delta_v6)
        })
    }

    /// Applies what `find` says differs, per family (keys in order; `None`: remove),
    /// with a flip if any cell other than an action byte changes.
    fn change(
        &mut self,
        find: impl FnOnce(
            &Family<VipCellV4>,
            &Family<VipCellV6>,
        ) -> (
            Vec<(VipKeyV4, Option<VipConfig>)>,
            Vec<(VipKeyV6, Option<VipConfig>)>,
        ),
    ) -> TableChanges {
        let mut changes = TableChanges::default();
        if !self.writable {
            changes.errors.push(DatapathError::ReadOnly);
            changes.complete = false;
            return changes;
        }
        let started = Instant::now();
        // Ids and the idle half may still be read by programs that started before
        // the last flip: wait for them (mostly done in the background by now).
        self.settle(true, &mut changes.errors);
        for result in [self.v4.free_retired(), self.v6.free_retired()] {
            if let Err(error) = result {
                changes.errors.push(error);
            }
        }
        let found = Instant::now();
        changes.took.settle = found - started;
        let (delta_v4, delta_v6) = find(&self.v4, &self.v6);
        // Entries, actions and counter ids may all change from here. With nothing to
        // change (an apply that moved nothing), the live entries and their ids stay:
        // so does the revision, and with it the metrics' view of them (a change a
        // moment later then need not take a new view first: 2-3 ms at 100,000). The
        // ids freed above were retired, in no current view.
        if !(delta_v4.is_empty() && delta_v6.is_empty()) {
            self.revision = next_revision();
        }
        let applied = Instant::now();
        changes.took.find = applied - found;
        let flip_v4 = self.v4.apply(delta_v4, &mut changes);
        let flip_v6 = self.v6.apply(delta_v6, &mut changes);
        let flipping = Instant::now();
        changes.took.apply = flipping - applied;
        if !(flip_v4 || flip_v6) {
            self.v4.store_in_place();
            self.v6.store_in_place();
            self.v4.commit(false);
            self.v6.commit(false);
        } else if let Err(error) = self.flip() {
            // Nothing of this sync is in the live half: forget it all, announce
            // nothing, and let the next sync try again.
            self.v4.rollback();
            self.v6.rollback();
            changes.added.clear();
            changes.changed.clear();
            changes.removed.clear();
            changes.now_answering.clear();
            changes.errors.push(error);
            changes.complete = false;
        } else {
            self.v4.commit(true);
            self.v6.commit(true);
        }
        let viewing = Instant::now();
        changes.took.flip = viewing - flipping;
        self.update_view(&mut changes);
        changes.took.view = viewing.elapsed();
        changes
    }

    /// Brings the idle half of the tables up to date with the live one, if the grace
    /// period of the last flip is over (without waiting for it), so that the next
    /// change writes only its own cells. For idle moments: the speaker calls it every
    /// second. Returns whether the idle half is up to date.
    pub fn tidy(&mut self, errors: &mut Vec<DatapathError>) -> bool {
        if !self.writable {
            return false;
        }
        if self.v4.idle_current() && self.v6.idle_current() {
            return true;
        }
        if !self.settle(false, errors) {
            return false;
        }
        let ctl = self.ctl.read(0);
        let idle = 1 - (ctl.active & 1);
        let layout = Layout {
            mask: ctl.cell_mask,
            shift: ctl.shift,
        };
        let mut half = ctl.halves[idle as usize];
        let prepared = self
            .v4
            .prepare_idle(HalfAt::new(idle, layout, half.seed_v4), "IPv4")
            .and_then(|seed_v4| {
                half.seed_v4 = seed_v4;
                self.v6
                    .prepare_idle(HalfAt::new(idle, layout, half.seed_v6), "IPv6")
            })
            .map(|seed_v6| half.seed_v6 = seed_v6);
        // A seed may have changed (a half built whole): no program reads the idle
        // half's seeds (nor its cells) now.
        self.write_half(idle, half);
        match prepared {
            Ok(()) => true,
            Err(error) => {
                errors.push(error);
                false
            }
        }
    }

    /// Starts the grace period of a flip that has just happened.
    fn begin_grace(&self) -> Unsettled {
        let waiter = self.barrier.clone().and_then(|barrier| {
            std::thread::Builder::new()
                .name("metallb-grace".into())
                .spawn(move || barrier.wait())
                .ok()
        });
        Unsettled {
            flip: Instant::now(),
            waiter,
        }
    }

    /// Ends the grace period of the last flip: waits for it if `block`; otherwise
    /// returns `false` while it lasts. Where the kernel cannot wait, [`GRACE`] after
    /// the flip.
    fn settle(&mut self, block: bool, errors: &mut Vec<DatapathError>) -> bool {
        let Some(unsettled) = self.unsettled.take() else {
            return true;
        };
        if !block && unsettled.waiter.as_ref().is_some_and(|w| !w.is_finished()) {
            self.unsettled = Some(unsettled);
            return false;
        }
        let waited = match unsettled.waiter {
            Some(waiter) => waiter.join().unwrap_or_else(|_| {
                Err(std::io::Error::other(
                    "the thread waiting for the programs panicked",
                ))
            }),
            None => self.barrier.as_ref().map_or(Ok(()), |b| b.wait()),
        };
        if let Err(source) = waited {
            errors.push(DatapathError::Barrier {
                op: "updating",
                source,
            });
            std::thread::sleep(GRACE.saturating_sub(unsettled.flip.elapsed()));
        }
        true
    }

    /// Writes the parameters of half `index` into the control block, field by field:
    /// the fence timer writes other fields of the block at any time, and the agent's
    /// heartbeat `fence_at`.
    fn write_half(&self, index: u32, half: VipTableHalf) {
        let slot = self.ctl.slot(0);
        // SAFETY: a field of the mapped control block, written with a volatile store.
        unsafe { (&raw mut (*slot).halves[index as usize]).write_volatile(half) };
    }

    /// Writes what `changes` did to the tables into the `vips` map.
    fn update_view(&mut self, changes: &mut TableChanges) {
        let Some(view) = &mut self.view else {
            return;
        };
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for key in changes.added.iter().chain(&changes.changed) {
            let live = match key.addr {
                IpAddr::V4(addr) => self.v4.live.get(&v4_key(addr, key)),
                IpAddr::V6(addr) => self.v6.live.get(&v6_key(addr, key)),
            };
            if let Some(live) = live {
                keys.push(view_key(key));
                values.push(view_value(live));
            }
        }
        if let Err(error) = view.put_all(&keys, &values) {
            changes.errors.push(error);
        }
        for key in &changes.removed {
            if let Err(error) = view.remove(key) {
                changes.errors.push(error);
            }
        }
    }

    /// Brings the idle half of both tables to the live keys and makes it the live one.
    fn flip(&mut self) -> Result<(), DatapathError> {
        if std::mem::take(&mut self.fail_next_rebuild) {
            return Err(DatapathError::IndexFull { family: "IPv4" });
        }
        let ctl = self.ctl.read(0);
        let idle = 1 - (ctl.active & 1);
        let layout = Layout {
            mask: ctl.cell_mask,
            shift: ctl.shift,
        };
        let mut next = ctl;
        let idle_half = &mut next.halves[idle as usize];
        idle_half.seed_v4 = self
            .v4
            .prepare_idle(HalfAt::new(idle, layout, idle_half.seed_v4), "IPv4")?;
        idle_half.seed_v6 = self
            .v6
            .prepare_idle(HalfAt::new(idle, layout, idle_half.seed_v6), "IPv6")?;
        next.generation += 1;
        // The idle half and its seeds first, then `active`, last, with release
        // ordering.
        fence(Ordering::Release);
        self.write_half(idle, next.halves[idle as usize]);
        // SAFETY: a field of the mapped control block, written with a volatile store.
        unsafe { (&raw mut (*self.ctl.slot(0)).generation).write_volatile(next.generation) };
        fence(Ordering::Release);
        // SAFETY: `active` is the first u32 of the 8-aligned control block.
        let active = unsafe { AtomicU32::from_ptr(self.ctl.slot(0).cast::<u32>()) };
        active.store(idle, Ordering::Release);
        self.v4.live_half = idle;
        self.v6.live_half = idle;
        self.unsettled = Some(self.begin_grace());
        Ok(())
    }

    /// Every live entry with its counters, sorted by key.
    pub fn vips(&self) -> Result<Vec<VipRecord>, DatapathError> {
        let mut out = self.v4.records()?;
        out.extend(self.v6.records()?);
        out.sort_by_key(|r| r.key);
        Ok(out)
    }

    /// The counters of one live entry, summed over CPUs; `None` if it is not in the
    /// tables.
    pub fn vip_counters(&self, key: &VipKey) -> Result<Option<VipCounters>, DatapathError> {
        match key.addr {
            IpAddr::V4(addr) => self.v4.live_counters(&v4_key(addr, key)),
            IpAddr::V6(addr) => self.v6.live_counters(&v6_key(addr, key)),
        }
    }

    /// What was done with frames, summed over CPUs: the global counters, with the
    /// answers the program counts per VIP added up: the replies of `vips` (as read by
    /// [`Maps::vips`]) and of the VIPs this agent removed.
    pub fn frame_counts(&self, vips: &[VipRecord]) -> Result<XdpStats, DatapathError> {
        let mut counts = self.stats()?;
        // Set, not added to: only a program of an older version (adopted, its answers
        // also in the VIPs' replies) counted answers there.
        counts.tx_arp_reply = self.v4.removed_replies()?;
        counts.tx_neighbor_advert = self.v6.removed_replies()?;
        for vip in vips {
            match vip.key.addr {
                IpAddr::V4(_) => counts.tx_arp_reply += vip.counters.replies,
                IpAddr::V6(_) => counts.tx_neighbor_advert += vip.counters.replies,
            }
        }
        Ok(counts)
    }

    /// Changes whenever the live entries, their actions or their counter ids may have:
    /// at every [`Maps::sync`] or [`Maps::update`] that finds something to change;
    /// unique in the process (another `Maps` has others). A
    /// [`CounterView`] of the same revision lists exactly the live entries.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The live entries' counter ids, to read their counters later from another thread
    /// (the metrics, at scrape time) without this writer. Costs a copy of the live
    /// keys; take a new one after every [`Maps::sync`] (see [`CounterView`]).
    pub fn counter_view(&self) -> Result<CounterView, DatapathError> {
        let entries = self.v4.counted().chain(self.v6.counted()).collect();
        Ok(CounterView {
            revision: self.revision,
            arrays: Some([self.v4.stats.clone(), self.v6.stats.clone()]),
            entries,
            removed_replies: [self.v4.removed_replies()?, self.v6.removed_replies()?],
        })
    }

    /// The global counters as the program keeps them, summed over CPUs: frames passed
    /// or dropped (answers are counted per VIP, see [`Maps::frame_counts`]).
    pub fn stats(&self) -> Result<XdpStats, DatapathError> {
        let values = self.stats.get(&0, 0).map_err(|source| DatapathError::Map {
            name: map_names::XDP_STATS,
            op: "read",
            source,
        })?;
        Ok(values.iter().fold(XdpStats::default(), |mut total, cpu| {
            total.add(cpu);
            total
        }))
    }

    /// The control block (which half is live, seeds, flips so far, fence state).
    pub fn ctl(&self) -> VipTableCtl {
        self.ctl.read(0)
    }

    /// Sets when the datapath fences (`CLOCK_MONOTONIC` nanoseconds; 0: never).
    pub fn set_fence_at(&self, at_ns: u64) -> Result<(), DatapathError> {
        if !self.writable {
            return Err(DatapathError::ReadOnly);
        }
        store_fence_at(&self.ctl, at_ns);
        Ok(())
    }
}

/// Writes `fence_at`, and nothing else of the control block (the fence timer writes
/// other fields at any time).
fn store_fence_at(ctl: &MmapArray<VipTableCtl>, at_ns: u64) {
    // SAFETY: `fence_at` is an 8-aligned u64 of the mapped control block.
    let fence_at = unsafe { AtomicU64::from_ptr(&raw mut (*ctl.slot(0)).fence_at) };
    fence_at.store(at_ns, Ordering::Release);
}

/// The control block, mapped once more for the heartbeat: a handle of its own that a
/// thread can own, apart from the [`Maps`] the speaker's loop syncs.
pub struct FenceControl(MmapArray<VipTableCtl>);

impl FenceControl {
    /// Maps the control block pinned under `pin_dir`, writable.
    pub fn open(pin_dir: &Path) -> Result<Self, DatapathError> {
        let path = pin_dir.join(map_names::VIP_CTL);
        let data = open_pin(&path)?;
        check_layout(&data, &path, map_names::VIP_CTL)?;
        Ok(Self(MmapArray::new(data, map_names::VIP_CTL, true)?))
    }

    /// Sets when the datapath fences (`CLOCK_MONOTONIC` nanoseconds; 0: never): the
    /// heartbeat.
    pub fn set_fence_at(&self, at_ns: u64) {
        store_fence_at(&self.0, at_ns);
    }

    pub fn ctl(&self) -> VipTableCtl {
        self.0.read(0)
    }
}

fn per_cpu<V: aya::Pod>(
    data: MapData,
    name: &'static str,
) -> Result<PerCpuArray<MapData, V>, DatapathError> {
    PerCpuArray::try_from(Map::PerCpuArray(data)).map_err(|source| DatapathError::Map {
        name,
        op: "open",
        source,
    })
}

fn map_data(map: Map, name: &'static str) -> Result<MapData, DatapathError> {
    match map {
        Map::Array(data) | Map::PerCpuArray(data) | Map::HashMap(data) => Ok(data),
        other => Err(DatapathError::MapLayout {
            path: name.into(),
            detail: format!("unexpected map type {other:?}"),
        }),
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    // RandomState is seeded from the OS at random for each instance.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    //! The writer's placement in the tables, on a vector standing for the mapped table
    //! (two halves; the tests write the second, and check that the first stays as it
    //! was).

    use super::*;

    struct VecSlots(Vec<VipCellV4>);

    impl Slots<VipCellV4> for VecSlots {
        fn get(&self, cell: u32) -> VipCellV4 {
            self.0[cell as usize]
        }

        fn set(&mut self, cell: u32, value: VipCellV4) {
            self.0[cell as usize] = value;
        }
    }

    const SEED: u64 = 42;

    /// Half 1 of two halves of `cells` cells.
    fn half(cells: u32, seed: u64) -> HalfAt {
        HalfAt::new(
            1,
            Layout {
                mask: cells - 1,
                shift: 64 - cells.trailing_zeros(),
            },
            seed,
        )
    }

    fn empty(cells: u32) -> VecSlots {
        VecSlots(vec![VipCellV4::default(); 2 * cells as usize])
    }

    fn key(i: u32) -> VipKeyV4 {
        v4_key(
            Ipv4Addr::from(0x0a00_0000 + i),
            &VipKey {
                addr: Ipv4Addr::UNSPECIFIED.into(),
                ifindex: 3,
                vlan_id: 0,
            },
        )
    }

    fn config(mac: u8, action: VipAction) -> VipConfig {
        VipConfig {
            mac: MacAddr([2, 0, 0, 0, 0, mac]),
            action,
        }
    }

    fn entry(counter_id: u32, config: VipConfig) -> Live {
        Live {
            counter_id,
            config,
            cells: [0; 2],
        }
    }

    fn cell_of(key: &VipKeyV4, live: &Live) -> VipCellV4 {
        <VipCellV4 as Cell>::new(*key, &live.config, live.counter_id)
    }

    /// The first `count` keys whose home in `half` is `home`.
    fn keys_at_home(half: HalfAt, home: u32, count: usize) -> Vec<VipKeyV4> {
        (0..1_000_000)
            .map(key)
            .filter(|k| half.home(VipCellV4::folded(k)) == home)
            .take(count)
            .collect()
    }

    /// The half holds exactly the live keys, each in the cell its bookkeeping names,
    /// found there by the reader's probe sequence, with the cell it must have; the
    /// other half is untouched.
    fn check(slots: &VecSlots, half: HalfAt, live: &BTreeMap<VipKeyV4, Live>) {
        let cells = half.layout.mask + 1;
        let occupied = (half.base..half.base + cells)
            .filter(|c| slots.get(*c).counter_id() != 0)
            .count();
        assert_eq!(occupied, live.len(), "cells in use");
        for (key, entry) in live {
            let cell = find(slots, half, key);
            assert_eq!(cell, Some(entry.cells[half.index]), "{key:?}");
            assert_eq!(slots.get(entry.cells[half.index]), cell_of(key, entry));
        }
        assert!(
            slots.0[..cells as usize]
                .iter()
                .all(|c| *c == VipCellV4::default()),
            "the other half was written"
        );
    }

    /// Exact cells: keys placed in their probe sequences (wrapping at the end of the
    /// half), and a removal that moves back exactly the keys whose way passes the hole.
    #[test]
    fn a_removal_moves_back_the_keys_whose_probe_sequence_passes_the_hole() {
        let half = half(64, SEED);
        let last = keys_at_home(half, 63, 3);
        let (a, b, c) = (last[0], last[1], last[2]);
        let d = keys_at_home(half, 0, 1)[0];
        let e = keys_at_home(half, 3, 1)[0];
        let mut slots = empty(64);
        let mut live: BTreeMap<VipKeyV4, Live> = [a, b, c, d, e]
            .iter()
            .zip(1..)
            .map(|(k, id)| (*k, entry(id, config(id as u8, VipAction::Answer))))
            .collect();
        // In this order: a, b, c from cell 63 on, d from 0, e at its home 3.
        let mut in_order = BTreeSet::new();
        for k in [a, b, c, d, e] {
            in_order.insert(k);
            let mut one = live.clone();
            one.retain(|key, _| in_order.contains(key));
            assert!(catch_up(&mut slots, half, &mut one, &BTreeSet::from([k])));
            live.get_mut(&k).expect("live").cells = one[&k].cells;
        }
        let at = |cell: u32| slots.get(half.cell(cell)).key();
        assert_eq!([at(63), at(0), at(1), at(2), at(3)], [a, b, c, d, e]);
        check(&slots, half, &live);

        live.remove(&a);
        assert!(catch_up(&mut slots, half, &mut live, &BTreeSet::from([a])));
        let at = |cell: u32| slots.get(half.cell(cell)).key();
        assert_eq!([at(63), at(0), at(1), at(3)], [b, c, d, e]);
        assert_eq!(slots.get(half.cell(2)), VipCellV4::default());
        check(&slots, half, &live);
    }

    /// Random sequences of additions, removals and changes (MAC, action), a few keys
    /// at a time, each written into the half as the flip does: after every step the
    /// half holds exactly the live keys, and the same as a half built whole from them
    /// under the same seed (cell for cell where nothing was removed; the same cells in
    /// use, the same lookups, otherwise).
    #[test]
    fn changes_written_key_by_key_leave_exactly_the_live_keys() {
        for (cells, keys, most) in [(64, 48, 32), (1024, 1500, 512)] {
            let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
            let mut random = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let mut seed = SEED;
            let mut slots = empty(cells);
            let mut live: BTreeMap<VipKeyV4, Live> = BTreeMap::new();
            let mut next_id = 1;
            let (mut written, mut rebuilt) = (0, 0);
            for round in 0..3000 {
                let mut stale = BTreeSet::new();
                for _ in 0..1 + random() % 4 {
                    let k = key((random() % keys) as u32);
                    let action = if random() % 2 == 0 {
                        VipAction::Answer
                    } else {
                        VipAction::Suppress
                    };
                    let full = live.len() >= most;
                    match live.get_mut(&k) {
                        Some(e) if random() % 3 == 0 => {
                            e.config = config((random() % 4) as u8, action);
                        }
                        Some(_) => {
                            live.remove(&k);
                        }
                        None if !full => {
                            live.insert(k, entry(next_id, config(0, action)));
                            next_id += 1;
                        }
                        None => continue,
                    }
                    stale.insert(k);
                }
                let before = half(cells, seed);
                let used = prepare(&mut slots, before, &mut live, Some(&stale), || {
                    rebuilt += 1;
                    random()
                })
                .expect("a seed that places every key");
                if used == seed {
                    written += 1;
                }
                seed = used;
                let half = half(cells, seed);
                check(&slots, half, &live);
                let mut whole = empty(cells);
                let mut again = live.clone();
                assert!(build(&mut whole, half, &mut again), "round {round}");
                check(&whole, half, &again);
                let values = |s: &VecSlots| {
                    let mut v: Vec<VipCellV4> =
                        s.0.iter()
                            .copied()
                            .filter(|c| c.counter_id() != 0)
                            .collect();
                    v.sort_by_key(VipCellV4::counter_id);
                    v
                };
                assert_eq!(values(&slots), values(&whole), "round {round}");
            }
            eprintln!("{cells} cells: {written} rounds written key by key, {rebuilt} fresh seeds");
            assert!(written > 2900, "{written} of 3000 rounds kept the seed");
        }
    }

    /// A key whose probe sequence has no empty cell within MAX_PROBES of its home:
    /// written key by key it fails, and the half is then built whole under a fresh
    /// seed, which places every key.
    #[test]
    fn a_key_that_finds_no_cell_makes_the_half_built_whole_under_a_fresh_seed() {
        let first = half(64, SEED);
        let crowd = keys_at_home(first, 17, MAX_PROBES as usize + 1);
        let mut slots = empty(64);
        let mut live: BTreeMap<VipKeyV4, Live> = crowd[..MAX_PROBES as usize]
            .iter()
            .zip(1..)
            .map(|(k, id)| (*k, entry(id, config(1, VipAction::Answer))))
            .collect();
        let all: BTreeSet<VipKeyV4> = live.keys().copied().collect();
        assert!(catch_up(&mut slots, first, &mut live, &all));
        check(&slots, first, &live);

        let last = crowd[MAX_PROBES as usize];
        live.insert(last, entry(99, config(1, VipAction::Answer)));
        let mut fallback = empty(64);
        fallback.0.clone_from(&slots.0);
        let mut tried = live.clone();
        assert!(!catch_up(
            &mut fallback,
            first,
            &mut tried,
            &BTreeSet::from([last])
        ));
        let mut fresh = [7u64, 8, 9].into_iter();
        let seed = prepare(
            &mut slots,
            first,
            &mut live,
            Some(&BTreeSet::from([last])),
            || fresh.next().expect("a fresh seed"),
        )
        .expect("placed under a fresh seed");
        assert_ne!(seed, SEED);
        check(&slots, half(64, seed), &live);
    }

    /// The walk that finds what a sync changes relies on each family's keys ordering
    /// as the agent's keys do.
    #[test]
    fn family_keys_order_as_the_agents_keys() {
        let keys: BTreeSet<VipKey> = [
            ("10.0.0.1", 3, 0),
            ("10.0.0.1", 2, 5),
            ("10.0.0.1", 2, 0),
            ("9.255.255.255", 7, 0),
            ("2001:db8::1", 3, 0),
            ("2001:db8::1", 1, 9),
            ("2001:db8::", 9, 9),
            ("::1", 1, 0),
        ]
        .iter()
        .map(|(a, ifindex, vlan_id)| VipKey {
            addr: a.parse().expect("address"),
            ifindex: *ifindex,
            vlan_id: *vlan_id,
        })
        .collect();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for k in &keys {
            match k.addr {
                IpAddr::V4(a) => v4.push(v4_key(a, k)),
                IpAddr::V6(a) => v6.push(v6_key(a, k)),
            }
        }
        assert!(v4.is_sorted() && v6.is_sorted());
        assert_eq!((v4.len(), v6.len()), (4, 4));
        let first_v6 = VipKey {
            addr: Ipv6Addr::UNSPECIFIED.into(),
            ifindex: 0,
            vlan_id: 0,
        };
        assert_eq!(keys.range(..first_v6).count(), 4);
    }
}
