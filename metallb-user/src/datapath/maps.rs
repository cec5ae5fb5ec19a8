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
//! A rebuild that fails (no seed places every key) leaves everything as it was: the
//! bookkeeping is rolled back, nothing is reported as changed (so nothing is
//! announced), and the next sync tries again.
//!
//! Beside the tables, the agent keeps the `vips` hash map equal to its live entries,
//! for people: `bpftool map dump` of a table prints every cell, nearly all empty. The
//! program never reads that map.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    num::NonZeroUsize,
    os::fd::AsFd as _,
    path::Path,
    ptr::NonNull,
    sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering, fence},
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    maps::{HashMap, IterableMap, Map, MapData, MapError, MapType, PerCpuArray, PerCpuValues},
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

/// One VIP on one interface and VLAN, either family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipKey {
    pub addr: IpAddr,
    pub ifindex: u32,
    pub vlan_id: u16,
}

/// What the agent tells the program about one [`VipKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipConfig {
    /// The interface's MAC, sent in every reply.
    pub mac: MacAddr,
    pub action: VipAction,
}

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
#[derive(Debug, Default)]
pub struct TableChanges {
    pub added: Vec<VipKey>,
    pub changed: Vec<VipKey>,
    pub removed: Vec<VipKey>,
    pub now_answering: Vec<VipKey>,
    pub errors: Vec<DatapathError>,
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

/// One family's table and counters, and the writer's bookkeeping.
struct Family<C: Cell> {
    table: MmapArray<C>,
    stats: PerCpuArray<MapData, VipCounters>,
    stats_name: &'static str,
    /// Live keys: counter id, configuration, and cell in the live half.
    live: BTreeMap<C::Key, Live>,
    /// Counter ids no live key uses and no reader can reach any more.
    free: Vec<u32>,
    /// Counter ids of keys removed before the last flip: free after a grace period.
    retired: Vec<u32>,
    /// Action bytes to store in place, once the sync is known not to rebuild: (cell,
    /// action).
    in_place: Vec<(u32, u8)>,
    /// Replies counted for keys this agent removed, whose ids are free again: the
    /// program counts answers per VIP only, and totals must not shrink.
    freed_replies: u64,
}

struct Snapshot<K> {
    live: BTreeMap<K, Live>,
    free: Vec<u32>,
    retired: Vec<u32>,
}

#[derive(Clone, Copy)]
struct Live {
    counter_id: u32,
    config: VipConfig,
    cell: u32,
}

impl<C: Cell> Family<C> {
    fn new(
        table: MmapArray<C>,
        stats: PerCpuArray<MapData, VipCounters>,
        stats_name: &'static str,
    ) -> Self {
        Self {
            table,
            stats,
            stats_name,
            live: BTreeMap::new(),
            free: Vec::new(),
            retired: Vec::new(),
            in_place: Vec::new(),
            freed_replies: 0,
        }
    }

    /// The bookkeeping a failed rebuild goes back to.
    fn snapshot(&self) -> Snapshot<C::Key> {
        Snapshot {
            live: self.live.clone(),
            free: self.free.clone(),
            retired: self.retired.clone(),
        }
    }

    fn restore(&mut self, snapshot: Snapshot<C::Key>) {
        self.live = snapshot.live;
        self.free = snapshot.free;
        self.retired = snapshot.retired;
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
        let base = (ctl.active & 1) * cells;
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
                    cell,
                },
            );
        }
        // Highest ids first, so that allocation (pop) hands out low ids.
        self.free = (1..ids).rev().filter(|id| !used[*id as usize]).collect();
    }

    fn zero_counters(&mut self, id: u32) -> Result<(), DatapathError> {
        let name = self.stats_name;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Cpus(e))?;
        let zeros = PerCpuValues::try_from(vec![VipCounters::default(); cpus])
            .map_err(DatapathError::Cpus)?;
        self.stats
            .set(id, zeros, 0)
            .map_err(|source| DatapathError::Map {
                name,
                op: "update",
                source,
            })
    }

    /// Applies `desired` to the bookkeeping; action-only changes are left in `in_place`
    /// for the live half (a rebuild makes them moot). Returns whether the table must be
    /// rebuilt and flipped.
    fn apply(&mut self, desired: &BTreeMap<C::Key, VipConfig>, changes: &mut TableChanges) -> bool {
        let mut rebuild = false;
        for (key, config) in desired {
            let user_key = C::to_user(key);
            match self.live.get_mut(key) {
                Some(live) if live.config == *config => {}
                Some(live) => {
                    let old = live.config;
                    live.config = *config;
                    if old.mac == config.mac {
                        self.in_place.push((live.cell, config.action as u8));
                    } else {
                        rebuild = true;
                    }
                    changes.changed.push(user_key);
                    // Answering now, or answering with another MAC: announce it.
                    if config.action == VipAction::Answer
                        && (old.action != VipAction::Answer || old.mac != config.mac)
                    {
                        changes.now_answering.push(user_key);
                    }
                }
                None => {
                    let Some(counter_id) = self.free.pop() else {
                        changes.errors.push(DatapathError::TableFull {
                            vip: user_key,
                            capacity: self.stats.len() - 1,
                        });
                        continue;
                    };
                    if let Err(error) = self.zero_counters(counter_id) {
                        self.free.push(counter_id);
                        changes.errors.push(error);
                        continue;
                    }
                    // `cell` is set when the idle half is built.
                    self.live.insert(
                        *key,
                        Live {
                            counter_id,
                            config: *config,
                            cell: 0,
                        },
                    );
                    changes.added.push(user_key);
                    if config.action == VipAction::Answer {
                        changes.now_answering.push(user_key);
                    }
                    rebuild = true;
                }
            }
        }
        let stale: Vec<C::Key> = self
            .live
            .keys()
            .filter(|k| !desired.contains_key(k))
            .copied()
            .collect();
        for key in stale {
            if let Some(live) = self.live.remove(&key) {
                self.retired.push(live.counter_id);
                changes.removed.push(C::to_user(&key));
                rebuild = true;
            }
        }
        rebuild
    }

    /// Writes every live key into half `half` under `seed`, recording each key's cell;
    /// `false` if some key found no cell within MAX_PROBES of its home.
    fn build_half(&mut self, half: u32, layout: Layout, seed: u64) -> bool {
        let base = half * (layout.mask + 1);
        for cell in base..=base + layout.mask {
            self.table.write(cell, C::default());
        }
        for (key, live) in self.live.iter_mut() {
            let home = home_cell(C::folded(key), seed, layout.shift);
            let Some(cell) = (0..MAX_PROBES)
                .map(|probe| base + (home.wrapping_add(probe) & layout.mask))
                .find(|cell| self.table.read(*cell).counter_id() == 0)
            else {
                return false;
            };
            self.table
                .write(cell, C::new(*key, &live.config, live.counter_id));
            live.cell = cell;
        }
        true
    }

    /// Builds half `half`, keeping `seed` unless a key cannot be placed, then trying
    /// fresh seeds; returns the seed used.
    fn build_half_with_seed(
        &mut self,
        half: u32,
        layout: Layout,
        seed: u64,
        family: &'static str,
    ) -> Result<u64, DatapathError> {
        let mut seed = seed;
        for _ in 0..64 {
            if self.build_half(half, layout, seed) {
                return Ok(seed);
            }
            seed = random_seed();
        }
        Err(DatapathError::IndexFull { family })
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
        let values = self
            .stats
            .get(&id, 0)
            .map_err(|source| DatapathError::Map {
                name: self.stats_name,
                op: "read",
                source,
            })?;
        Ok(values
            .iter()
            .fold(VipCounters::default(), |acc, v| VipCounters {
                requests: acc.requests + v.requests,
                replies: acc.replies + v.replies,
                conflicts: acc.conflicts + v.conflicts,
                suppressed: acc.suppressed + v.suppressed,
            }))
    }

    fn records(&self) -> Result<Vec<VipRecord>, DatapathError> {
        // Every second, for the metrics: the counters of all ids up to the highest live
        // one (ids are handed out lowest first) in a few batched syscalls, instead of
        // one per VIP. Where the kernel cannot batch, one read per VIP.
        let ids = self
            .live
            .values()
            .map(|l| l.counter_id + 1)
            .max()
            .unwrap_or(0);
        let batched = aya::util::nr_cpus()
            .ok()
            .and_then(|cpus| lookup_batch(IterableMap::map(&self.stats), cpus, ids).ok());
        self.live
            .iter()
            .map(|(key, live)| {
                let cell = self.table.read(live.cell);
                let counters = match batched
                    .as_ref()
                    .and_then(|all| all.get(live.counter_id as usize))
                {
                    Some(counters) => *counters,
                    None => self.counters(live.counter_id)?,
                };
                Ok(VipRecord {
                    key: C::to_user(key),
                    mac: MacAddr(cell.mac()),
                    action: VipAction::from_u8(cell.action()),
                    counters,
                })
            })
            .collect()
    }
}

/// The counters of ids `0..ids` of a per-CPU counters array, summed over `cpus` CPUs,
/// read with BPF_MAP_LOOKUP_BATCH: one syscall per [`LOOKUP_BATCH`] ids.
fn lookup_batch(map: &MapData, cpus: usize, ids: u32) -> std::io::Result<Vec<VipCounters>> {
    use std::os::fd::AsRawFd as _;
    const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
    /// The `batch` member of `union bpf_attr`.
    #[repr(C)]
    struct BatchAttr {
        in_batch: u64,
        out_batch: u64,
        keys: u64,
        values: u64,
        count: u32,
        map_fd: u32,
        elem_flags: u64,
        flags: u64,
    }
    let fd = u32::try_from(map.fd().as_fd().as_raw_fd()).map_err(std::io::Error::other)?;
    let mut out = vec![VipCounters::default(); ids as usize];
    let mut keys = vec![0u32; LOOKUP_BATCH as usize];
    // Per element, one value per possible CPU (VipCounters is a multiple of 8 bytes,
    // the kernel's stride).
    let mut values = vec![VipCounters::default(); LOOKUP_BATCH as usize * cpus];
    let (mut token, mut next) = (0u32, 0u32);
    let mut read = 0u32;
    while read < ids {
        let mut attr = BatchAttr {
            in_batch: if read == 0 {
                0
            } else {
                (&raw const token) as u64
            },
            out_batch: (&raw mut next) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: LOOKUP_BATCH.min(ids - read),
            map_fd: fd,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: the kernel writes at most `count` keys and `count * cpus` values into
        // buffers that large, and one u32 to `next`; all outlive the call.
        let status = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &raw mut attr,
                size_of::<BatchAttr>(),
            )
        };
        let error = (status != 0).then(std::io::Error::last_os_error);
        let at_end = error
            .as_ref()
            .is_some_and(|e| e.raw_os_error() == Some(libc::ENOENT));
        if let Some(error) = error.filter(|_| !at_end) {
            return Err(error);
        }
        let count = (attr.count as usize).min(keys.len());
        for (key, per_cpu) in keys[..count].iter().zip(values.chunks(cpus)) {
            if let Some(sum) = out.get_mut(*key as usize) {
                for v in per_cpu {
                    sum.requests += v.requests;
                    sum.replies += v.replies;
                    sum.conflicts += v.conflicts;
                    sum.suppressed += v.suppressed;
                }
            }
        }
        if at_end || count == 0 {
            break;
        }
        read += attr.count;
        token = next;
    }
    Ok(out)
}

/// Ids per BPF_MAP_LOOKUP_BATCH call.
const LOOKUP_BATCH: u32 = 256;

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
    barrier: Option<ProgramBarrier>,
    /// A flip has happened since the last grace period: when.
    unsettled_flip: Option<Instant>,
    /// Test hook: the next rebuild fails as if no seed placed every key.
    fail_next_rebuild: bool,
    /// False when opened for inspection: nothing is ever written then.
    writable: bool,
}

/// (name, type, key size, value size) of every map, in `map_names::ALL` order.
fn expected_layouts() -> [(&'static str, MapType, usize, usize); 8] {
    use map_names::*;
    [
        (VIP_CTL, MapType::Array, 4, size_of::<VipTableCtl>()),
        (VIPS_V4, MapType::Array, 4, size_of::<VipBucketV4>()),
        (VIPS_V6, MapType::Array, 4, size_of::<VipBucketV6>()),
        (
            VIP_STATS_V4,
            MapType::PerCpuArray,
            4,
            size_of::<VipCounters>(),
        ),
        (
            VIP_STATS_V6,
            MapType::PerCpuArray,
            4,
            size_of::<VipCounters>(),
        ),
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
    pub fn sizes(max_vips: u32) -> [(&'static str, u32); 6] {
        use map_names::*;
        // Two halves of cells, in buckets; counter id 0 is never used (it marks empty
        // cells).
        let buckets = 2 * table_cells(max_vips) / BUCKET_CELLS;
        [
            (VIPS_V4, buckets),
            (VIPS_V6, buckets),
            (VIP_STATS_V4, max_vips + 1),
            (VIP_STATS_V6, max_vips + 1),
            (VIP_CTL, 1),
            (VIPS, 2 * max_vips),
        ]
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
            per_cpu(get(VIP_STATS_V4)?, VIP_STATS_V4)?,
            VIP_STATS_V4,
        );
        let v6 = Family::new(
            MmapArray::new(get(VIPS_V6)?, VIPS_V6, writable)?,
            per_cpu(get(VIP_STATS_V6)?, VIP_STATS_V6)?,
            VIP_STATS_V6,
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
            Some(
                ProgramBarrier::new().map_err(|source| DatapathError::Barrier {
                    op: "creating",
                    source,
                })?,
            )
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
            // An agent before this one may have flipped just before it stopped: the
            // first sync waits for a grace period too.
            unsettled_flip: Some(Instant::now()),
            fail_next_rebuild: false,
            writable,
        };
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
                    ..Default::default()
                },
            );
        } else if ctl.cell_mask + 1 != half_cells
            || ctl.shift != 64 - half_cells.trailing_zeros()
            || ctl.halves[1].base != u64::from(half_cells)
        {
            return Err(DatapathError::MapLayout {
                path: pin_dir.join(map_names::VIP_CTL),
                detail: format!(
                    "its geometry does not match tables of {} cells",
                    self.v4.table.len
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

    /// Makes the tables hold exactly `desired`.
    pub fn sync(&mut self, desired: &BTreeMap<VipKey, VipConfig>) -> TableChanges {
        let mut changes = TableChanges::default();
        if !self.writable {
            changes.errors.push(DatapathError::ReadOnly);
            return changes;
        }
        // Ids and the idle half may still be read by programs that started before
        // the last flip: wait for them.
        if let Some(flip) = self.unsettled_flip.take() {
            let waited = self.barrier.as_ref().map(ProgramBarrier::wait).transpose();
            if let Err(source) = waited {
                changes.errors.push(DatapathError::Barrier {
                    op: "updating",
                    source,
                });
                std::thread::sleep(GRACE.saturating_sub(flip.elapsed()));
            }
        }
        for result in [self.v4.free_retired(), self.v6.free_retired()] {
            if let Err(error) = result {
                changes.errors.push(error);
            }
        }
        let mut want_v4 = BTreeMap::new();
        let mut want_v6 = BTreeMap::new();
        for (key, config) in desired {
            match key.addr {
                IpAddr::V4(addr) => want_v4.insert(v4_key(addr, key), *config),
                IpAddr::V6(addr) => want_v6.insert(v6_key(addr, key), *config),
            };
        }
        let before = (self.v4.snapshot(), self.v6.snapshot());
        let changed_v4 = self.v4.apply(&want_v4, &mut changes);
        let changed_v6 = self.v6.apply(&want_v6, &mut changes);
        if !(changed_v4 || changed_v6) {
            self.v4.store_in_place();
            self.v6.store_in_place();
        } else if let Err(error) = self.flip() {
            // Nothing of this sync is in the live half: forget it all, announce
            // nothing, and let the next sync try again.
            self.v4.restore(before.0);
            self.v6.restore(before.1);
            changes.added.clear();
            changes.changed.clear();
            changes.removed.clear();
            changes.now_answering.clear();
            changes.errors.push(error);
        } else {
            self.v4.in_place.clear();
            self.v6.in_place.clear();
        }
        self.update_view(&mut changes);
        changes
    }

    /// Writes what `changes` did to the tables into the `vips` map.
    fn update_view(&mut self, changes: &mut TableChanges) {
        let Some(view) = &mut self.view else {
            return;
        };
        for key in changes.added.iter().chain(&changes.changed) {
            let live = match key.addr {
                IpAddr::V4(addr) => self.v4.live.get(&v4_key(addr, key)),
                IpAddr::V6(addr) => self.v6.live.get(&v6_key(addr, key)),
            };
            if let Some(live) = live
                && let Err(error) = view.put(key, view_value(live))
            {
                changes.errors.push(error);
            }
        }
        for key in &changes.removed {
            if let Err(error) = view.remove(key) {
                changes.errors.push(error);
            }
        }
    }

    /// Rebuilds both tables in the idle half and makes it the live one.
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
        idle_half.seed_v4 =
            self.v4
                .build_half_with_seed(idle, layout, idle_half.seed_v4, "IPv4")?;
        idle_half.seed_v6 =
            self.v6
                .build_half_with_seed(idle, layout, idle_half.seed_v6, "IPv6")?;
        next.generation += 1;
        // The idle half and its seeds first, then `active`, last, with release
        // ordering. Field by field: the fence timer writes other fields of the block
        // at any time, and the agent's heartbeat `fence_at`.
        fence(Ordering::Release);
        let slot = self.ctl.slot(0);
        // SAFETY: fields of the mapped control block, written with volatile stores.
        unsafe {
            (&raw mut (*slot).halves[idle as usize]).write_volatile(next.halves[idle as usize]);
            (&raw mut (*slot).generation).write_volatile(next.generation);
        }
        fence(Ordering::Release);
        // SAFETY: `active` is the first u32 of the 8-aligned control block.
        let active = unsafe { AtomicU32::from_ptr(self.ctl.slot(0).cast::<u32>()) };
        active.store(idle, Ordering::Release);
        self.unsettled_flip = Some(Instant::now());
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
