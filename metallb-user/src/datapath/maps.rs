//! Typed access to the responder's maps, from a freshly loaded object or from the pins
//! another process left (for `inspect`, or to adopt a running datapath).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use aya::{
    Ebpf,
    maps::{
        IterableMap as _, Map, MapData, MapError, MapType, PerCpuArray, PerCpuHashMap, PerCpuValues,
    },
};
use metallb_common::{VipAction, VipKeyV4, VipKeyV6, VipState, XdpStats, map_names};

use super::{DatapathError, iface::MacAddr};

/// One VIP on one interface and VLAN: the key of both VIP maps, either family.
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

/// Counters of one VIP entry, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipCounters {
    pub requests: u64,
    pub replies: u64,
    pub conflicts: u64,
    pub suppressed: u64,
}

/// One entry as read back from the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipRecord {
    pub key: VipKey,
    pub mac: MacAddr,
    /// `None` if the entry holds an action byte this version does not know.
    pub action: Option<VipAction>,
    pub counters: VipCounters,
}

impl VipCounters {
    fn sum(values: &PerCpuValues<VipState>) -> Self {
        values.iter().fold(Self::default(), |acc, v| Self {
            requests: acc.requests + v.requests,
            replies: acc.replies + v.replies,
            conflicts: acc.conflicts + v.conflicts,
            suppressed: acc.suppressed + v.suppressed,
        })
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

/// The three maps of the responder.
pub struct Maps {
    v4: PerCpuHashMap<MapData, VipKeyV4, VipState>,
    v6: PerCpuHashMap<MapData, VipKeyV6, VipState>,
    stats: PerCpuArray<MapData, XdpStats>,
}

impl Maps {
    /// Takes the maps out of a loaded object (they may be reused pins: checked).
    pub fn from_ebpf(ebpf: &mut Ebpf, pin_dir: &Path) -> Result<Self, DatapathError> {
        let mut take = |name: &'static str| {
            let map = ebpf
                .take_map(name)
                .ok_or(DatapathError::MapMissing { name })?;
            Ok::<_, DatapathError>((name, map))
        };
        Self::from_maps(
            take(map_names::VIPS_V4)?,
            take(map_names::VIPS_V6)?,
            take(map_names::XDP_STATS)?,
            pin_dir,
        )
    }

    /// Opens the maps pinned under `pin_dir` by a running or departed agent.
    pub fn open_pinned(pin_dir: &Path) -> Result<Self, DatapathError> {
        let open = |name: &'static str| {
            let path = pin_dir.join(name);
            let data = MapData::from_pin(&path).map_err(|source| DatapathError::OpenPinned {
                path: path.clone(),
                source,
            })?;
            let map = Map::from_map_data(data).map_err(|source| DatapathError::Map {
                name,
                op: "open",
                source,
            })?;
            Ok::<_, DatapathError>((name, map))
        };
        Self::from_maps(
            open(map_names::VIPS_V4)?,
            open(map_names::VIPS_V6)?,
            open(map_names::XDP_STATS)?,
            pin_dir,
        )
    }

    /// Checks every map already pinned under `pin_dir` against this version's layout.
    pub fn check_existing_pins(pin_dir: &Path) -> Result<(), DatapathError> {
        for (name, map_type, key_size, value_size) in expected_layouts() {
            let path = pin_dir.join(name);
            if !path.exists() {
                continue;
            }
            let data = MapData::from_pin(&path).map_err(|source| DatapathError::OpenPinned {
                path: path.clone(),
                source,
            })?;
            check_layout(&data, pin_dir, name, map_type, key_size, value_size)?;
        }
        Ok(())
    }

    fn from_maps(
        v4: (&'static str, Map),
        v6: (&'static str, Map),
        stats: (&'static str, Map),
        pin_dir: &Path,
    ) -> Result<Self, DatapathError> {
        let maps = Self {
            v4: typed(v4, pin_dir)?,
            v6: typed(v6, pin_dir)?,
            stats: typed(stats, pin_dir)?,
        };
        let [v4, v6, stats] = expected_layouts();
        for (map, (name, map_type, key_size, value_size)) in [
            (maps.v4.map(), v4),
            (maps.v6.map(), v6),
            (maps.stats.map(), stats),
        ] {
            check_layout(map, pin_dir, name, map_type, key_size, value_size)?;
        }
        Ok(maps)
    }

    /// Every VIP entry, with counters summed over CPUs, sorted by key.
    pub fn vips(&self) -> Result<Vec<VipRecord>, DatapathError> {
        let map_err = |name| {
            move |source| DatapathError::Map {
                name,
                op: "read",
                source,
            }
        };
        let mut out = Vec::new();
        for entry in self.v4.iter() {
            let (k, values) = entry.map_err(map_err(map_names::VIPS_V4))?;
            let key = VipKey {
                addr: IpAddr::from(k.addr),
                ifindex: k.ifindex,
                vlan_id: k.vlan_id,
            };
            out.push(record(key, &values));
        }
        for entry in self.v6.iter() {
            let (k, values) = entry.map_err(map_err(map_names::VIPS_V6))?;
            let key = VipKey {
                addr: IpAddr::from(k.addr),
                ifindex: k.ifindex,
                vlan_id: k.vlan_id,
            };
            out.push(record(key, &values));
        }
        out.sort_by_key(|r| r.key);
        Ok(out)
    }

    /// The global counters, summed over CPUs.
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

    /// Writes `config` for `key`. A new entry starts with zero counters; an existing one
    /// keeps its counters (read, then rewritten with the new configuration).
    pub fn upsert(&mut self, key: &VipKey, config: &VipConfig) -> Result<(), DatapathError> {
        let fresh = VipState::new(config.mac.0, config.action);
        match key.addr {
            IpAddr::V4(addr) => upsert(&mut self.v4, map_names::VIPS_V4, v4_key(addr, key), fresh),
            IpAddr::V6(addr) => upsert(&mut self.v6, map_names::VIPS_V6, v6_key(addr, key), fresh),
        }
    }

    /// Removes `key`; removing an absent key is not an error.
    pub fn remove(&mut self, key: &VipKey) -> Result<(), DatapathError> {
        let result = match key.addr {
            IpAddr::V4(addr) => self
                .v4
                .remove(&v4_key(addr, key))
                .map_err(|e| (map_names::VIPS_V4, e)),
            IpAddr::V6(addr) => self
                .v6
                .remove(&v6_key(addr, key))
                .map_err(|e| (map_names::VIPS_V6, e)),
        };
        match result {
            Ok(()) | Err((_, MapError::KeyNotFound)) => Ok(()),
            Err((name, source)) => Err(DatapathError::Map {
                name,
                op: "delete",
                source,
            }),
        }
    }
}

fn typed<T>((name, map): (&'static str, Map), pin_dir: &Path) -> Result<T, DatapathError>
where
    T: TryFrom<Map, Error = MapError>,
{
    map.try_into()
        .map_err(|source: MapError| DatapathError::MapLayout {
            path: pin_dir.join(name),
            detail: source.to_string(),
        })
}

fn record(key: VipKey, values: &PerCpuValues<VipState>) -> VipRecord {
    let first = values.first().copied().unwrap_or_default();
    VipRecord {
        key,
        mac: MacAddr(first.mac),
        action: VipAction::from_u8(first.action),
        counters: VipCounters::sum(values),
    }
}

fn upsert<K: aya::Pod>(
    map: &mut PerCpuHashMap<MapData, K, VipState>,
    name: &'static str,
    key: K,
    fresh: VipState,
) -> Result<(), DatapathError> {
    let map_err = |op| move |source| DatapathError::Map { name, op, source };
    let values: Vec<VipState> = match map.get(&key, 0) {
        // Keep each CPU's counters; a frame counted between this read and the write
        // below is lost, which only happens when a VIP's configuration changes.
        Ok(current) => current
            .iter()
            .map(|cpu| VipState {
                mac: fresh.mac,
                action: fresh.action,
                ..*cpu
            })
            .collect(),
        Err(MapError::KeyNotFound) => {
            let cpus = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Cpus(e))?;
            vec![fresh; cpus]
        }
        Err(source) => return Err(map_err("read")(source)),
    };
    let values = PerCpuValues::try_from(values).map_err(DatapathError::Cpus)?;
    map.insert(key, values, 0).map_err(map_err("update"))
}

/// (name, type, key size, value size) of each map, in `map_names::ALL` order.
fn expected_layouts() -> [(&'static str, MapType, usize, usize); 3] {
    [
        (
            map_names::VIPS_V4,
            MapType::PerCpuHash,
            size_of::<VipKeyV4>(),
            size_of::<VipState>(),
        ),
        (
            map_names::VIPS_V6,
            MapType::PerCpuHash,
            size_of::<VipKeyV6>(),
            size_of::<VipState>(),
        ),
        (
            map_names::XDP_STATS,
            MapType::PerCpuArray,
            size_of::<u32>(),
            size_of::<XdpStats>(),
        ),
    ]
}

fn check_layout(
    map: &MapData,
    pin_dir: &Path,
    name: &'static str,
    map_type: MapType,
    key_size: usize,
    value_size: usize,
) -> Result<(), DatapathError> {
    let info = map.info().map_err(|source| DatapathError::Map {
        name,
        op: "inspect",
        source,
    })?;
    let found_type = info.map_type().map_err(|source| DatapathError::Map {
        name,
        op: "inspect",
        source,
    })?;
    if found_type != map_type
        || info.key_size() as usize != key_size
        || info.value_size() as usize != value_size
    {
        return Err(DatapathError::MapLayout {
            path: pin_dir.join(name),
            detail: format!(
                "found {found_type:?} with {}-byte keys and {}-byte values, expected {map_type:?} with {key_size}-byte keys and {value_size}-byte values",
                info.key_size(),
                info.value_size()
            ),
        });
    }
    Ok(())
}
