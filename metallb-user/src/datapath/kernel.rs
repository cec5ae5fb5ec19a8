//! What the kernel holds, seen from outside any agent, for `metallb cleanup`: BPF
//! objects by id and by pin, the XDP programs attached to this network namespace's
//! interfaces (rtnetlink), and the processes holding BPF objects open (`/proc`).
//! aya covers none of this in 0.14 (no link ifindex, no detach by id, no XDP query).

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

const BPF_PROG_GET_FD_BY_ID: u32 = 13;
const BPF_OBJ_GET: u32 = 7;
const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;
const BPF_LINK_GET_FD_BY_ID: u32 = 30;
const BPF_LINK_GET_NEXT_ID: u32 = 31;
const BPF_LINK_DETACH: u32 = 34;
const BPF_MAP_UPDATE_BATCH: u32 = 26;
/// `BPF_LINK_TYPE_XDP`.
const LINK_TYPE_XDP: u32 = 6;

/// `union bpf_attr`, as much of it as these commands use (the kernel takes a shorter
/// one, zero-extended).
type Attr = [u64; 16];

fn bpf(cmd: u32, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: bpf(2) reads and writes at most size_of::<Attr>() bytes of `attr`, and
    // the pointers the commands below put in it point to live buffers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            size_of::<Attr>() as u32,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn set_u32(attr: &mut Attr, offset: usize, value: u32) {
    let word = &mut attr[offset / 8];
    let shift = (offset % 8) * 8;
    *word = (*word & !(0xffff_ffff << shift)) | (u64::from(value) << shift);
}

fn get_u32(attr: &Attr, offset: usize) -> u32 {
    (attr[offset / 8] >> ((offset % 8) * 8)) as u32
}

fn owned_fd(ret: i64) -> OwnedFd {
    // SAFETY: a descriptor the kernel just returned, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(ret as i32) }
}

/// Sets each of `keys` to the value at the same place in `values` in the map `map`,
/// whose keys and values have exactly these types' sizes, in one syscall
/// (BPF_MAP_UPDATE_BATCH, Linux 5.6 and later). On failure, how many were set before
/// it, with the error.
pub(crate) fn update_batch<K: aya::Pod, V: aya::Pod>(
    map: std::os::fd::BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> Result<(), (usize, io::Error)> {
    let count = keys.len().min(values.len());
    let mut attr = Attr::default();
    // `batch`: in_batch, out_batch, keys, values, count, map_fd, elem_flags, flags.
    attr[2] = keys.as_ptr() as u64;
    attr[3] = values.as_ptr() as u64;
    set_u32(&mut attr, 32, u32::try_from(count).unwrap_or(u32::MAX));
    set_u32(&mut attr, 36, map.as_raw_fd() as u32);
    bpf(BPF_MAP_UPDATE_BATCH, &mut attr)
        .map(|_| ())
        .map_err(|error| (get_u32(&attr, 32) as usize, error))
}

/// Opens the BPF object pinned at `path` (BPF_OBJ_GET).
pub fn open_pin(path: &Path) -> io::Result<OwnedFd> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut attr = Attr::default();
    attr[0] = path.as_ptr() as u64;
    bpf(BPF_OBJ_GET, &mut attr).map(owned_fd)
}

/// The object's info (BPF_OBJ_GET_INFO_BY_FD), as 32-bit words.
fn info(fd: &OwnedFd) -> io::Result<[u32; 64]> {
    let mut info = [0u32; 64];
    let mut attr = Attr::default();
    set_u32(&mut attr, 0, fd.as_raw_fd() as u32);
    set_u32(&mut attr, 4, size_of_val(&info) as u32);
    attr[1] = info.as_mut_ptr() as u64;
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info)
}

/// The id of a map or program (the second word of both infos).
pub fn object_id(fd: &OwnedFd) -> io::Result<u32> {
    Ok(info(fd)?[1])
}

/// An XDP link as `bpf_link_info` describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpLinkInfo {
    pub id: u32,
    pub prog_id: u32,
    pub ifindex: u32,
}

/// The link's info, if it is an XDP link (`type`, `id`, `prog_id`, then the union, 8-
/// byte aligned: `xdp.ifindex` at byte 16).
pub fn xdp_link_info(fd: &OwnedFd) -> io::Result<Option<XdpLinkInfo>> {
    let info = info(fd)?;
    Ok((info[0] == LINK_TYPE_XDP).then_some(XdpLinkInfo {
        id: info[1],
        prog_id: info[2],
        ifindex: info[4],
    }))
}

/// Detaches a link from its hook whoever holds it (BPF_LINK_DETACH); the link object
/// lives on, defunct, until its last holder lets go.
pub fn detach_link(fd: &OwnedFd) -> io::Result<()> {
    let mut attr = Attr::default();
    set_u32(&mut attr, 0, fd.as_raw_fd() as u32);
    bpf(BPF_LINK_DETACH, &mut attr).map(drop)
}

/// Every XDP link in the kernel (all namespaces), with an open descriptor. Walking
/// the ids takes CAP_SYS_ADMIN.
pub fn xdp_links() -> io::Result<Vec<(XdpLinkInfo, OwnedFd)>> {
    let mut links = Vec::new();
    let mut id = 0;
    loop {
        let mut attr = Attr::default();
        set_u32(&mut attr, 0, id);
        match bpf(BPF_LINK_GET_NEXT_ID, &mut attr) {
            Ok(_) => id = get_u32(&attr, 4),
            Err(error) if error.raw_os_error() == Some(libc::ENOENT) => return Ok(links),
            Err(error) => return Err(error),
        }
        let mut attr = Attr::default();
        set_u32(&mut attr, 0, id);
        // A link may go away between the two calls.
        let Ok(fd) = bpf(BPF_LINK_GET_FD_BY_ID, &mut attr).map(owned_fd) else {
            continue;
        };
        if let Some(info) = xdp_link_info(&fd)? {
            links.push((info, fd));
        }
    }
}

/// The name of program `id` (at most 15 bytes, as the kernel keeps it).
pub fn program_name(id: u32) -> io::Result<String> {
    let mut attr = Attr::default();
    set_u32(&mut attr, 0, id);
    let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr).map(owned_fd)?;
    let info = info(&fd)?;
    // `name[16]` at byte 64 of `bpf_prog_info`.
    let bytes: Vec<u8> = info[16..20].iter().flat_map(|w| w.to_ne_bytes()).collect();
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    Ok(String::from_utf8_lossy(&bytes[..end]).into_owned())
}

/// The XDP hook a program is attached at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum XdpHook {
    Native,
    Generic,
    Offloaded,
}

impl XdpHook {
    /// `XDP_FLAGS_*_MODE`, to name the hook when detaching through netlink.
    fn flags(self) -> u32 {
        match self {
            XdpHook::Generic => 1 << 1,
            XdpHook::Native => 1 << 2,
            XdpHook::Offloaded => 1 << 3,
        }
    }
}

impl std::fmt::Display for XdpHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            XdpHook::Native => "native",
            XdpHook::Generic => "generic",
            XdpHook::Offloaded => "offloaded",
        })
    }
}

/// A program attached to an interface of this network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpAttachment {
    pub ifindex: u32,
    pub ifname: String,
    pub hook: XdpHook,
    pub prog_id: u32,
}

const IFLA_IFNAME: u16 = 3;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_DRV_PROG_ID: u16 = 5;
const IFLA_XDP_SKB_PROG_ID: u16 = 6;
const IFLA_XDP_HW_PROG_ID: u16 = 7;
const NLA_F_NESTED: u16 = 1 << 15;
const NLMSG_HEADER: usize = 16;
const IFINFOMSG: usize = 16;

fn route_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2), checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned_fd(i64::from(fd)))
}

/// A netlink message: header, `ifinfomsg` for `ifindex`, then `attributes`.
fn link_message(kind: u16, flags: u16, ifindex: u32, attributes: &[u8]) -> Vec<u8> {
    let length = NLMSG_HEADER + IFINFOMSG + attributes.len();
    let mut message = Vec::with_capacity(length);
    message.extend_from_slice(&(length as u32).to_ne_bytes());
    message.extend_from_slice(&kind.to_ne_bytes());
    message.extend_from_slice(&flags.to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    message.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel's
    message.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]); // family, pad, type
    message.extend_from_slice(&ifindex.to_ne_bytes());
    message.extend_from_slice(&[0; 8]); // flags, change
    message.extend_from_slice(attributes);
    message
}

fn attribute(kind: u16, payload: &[u8]) -> Vec<u8> {
    let length = 4 + payload.len();
    let mut out = Vec::with_capacity(length.next_multiple_of(4));
    out.extend_from_slice(&(length as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(length.next_multiple_of(4), 0);
    out
}

/// Sends `message`, then reads answers until the dump ends or the kernel acknowledges;
/// `each` gets every RTM_NEWLINK payload (after the header).
fn talk(message: &[u8], mut each: impl FnMut(&[u8])) -> io::Result<()> {
    let socket = route_socket()?;
    // SAFETY: a valid socket and buffer for the duration of the call.
    let sent = unsafe {
        libc::send(
            socket.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            0,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: as above; the kernel writes at most buffer.len() bytes.
        let received = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
            )
        };
        if received < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut rest = &buffer[..received as usize];
        while rest.len() >= NLMSG_HEADER {
            let length = u32::from_ne_bytes(rest[0..4].try_into().unwrap_or_default()) as usize;
            let kind = u16::from_ne_bytes([rest[4], rest[5]]);
            if length < NLMSG_HEADER || length > rest.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a truncated netlink message",
                ));
            }
            let payload = &rest[NLMSG_HEADER..length];
            match kind as i32 {
                libc::NLMSG_DONE => return Ok(()),
                libc::NLMSG_ERROR => {
                    let code = i32::from_ne_bytes(payload[0..4].try_into().unwrap_or_default());
                    return if code == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(-code))
                    };
                }
                _ if kind == libc::RTM_NEWLINK => each(payload),
                _ => {}
            }
            rest = &rest[length.next_multiple_of(4).min(rest.len())..];
        }
    }
}

/// The attributes in `data`, as (type without flags, payload).
fn attributes(mut data: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let length = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let kind = u16::from_ne_bytes([data[2], data[3]]) & !NLA_F_NESTED;
        if length < 4 || length > data.len() {
            break;
        }
        out.push((kind, &data[4..length]));
        data = &data[length.next_multiple_of(4).min(data.len())..];
    }
    out
}

fn read_u32(payload: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(payload.get(0..4)?.try_into().ok()?))
}

/// Every XDP program attached in this thread's network namespace.
pub fn xdp_attachments() -> io::Result<Vec<XdpAttachment>> {
    let request = link_message(
        libc::RTM_GETLINK,
        (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
        0,
        &[],
    );
    let mut found = Vec::new();
    talk(&request, |payload| {
        if payload.len() < IFINFOMSG {
            return;
        }
        let ifindex = read_u32(&payload[4..8]).unwrap_or_default();
        let all = attributes(&payload[IFINFOMSG..]);
        let ifname = all
            .iter()
            .find(|(kind, _)| *kind == IFLA_IFNAME)
            .map(|(_, name)| {
                let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
                String::from_utf8_lossy(&name[..end]).into_owned()
            })
            .unwrap_or_default();
        let Some((_, xdp)) = all.iter().find(|(kind, _)| *kind == IFLA_XDP) else {
            return;
        };
        found.extend(
            parse_xdp(xdp)
                .into_iter()
                .map(|(hook, prog_id)| XdpAttachment {
                    ifindex,
                    ifname: ifname.clone(),
                    hook,
                    prog_id,
                }),
        );
    })?;
    Ok(found)
}

/// The (hook, program id) pairs of an `IFLA_XDP` attribute: one program is told by
/// `IFLA_XDP_ATTACHED` and `IFLA_XDP_PROG_ID`, several (one per hook) each by its own.
fn parse_xdp(xdp: &[u8]) -> Vec<(XdpHook, u32)> {
    let nested = attributes(xdp);
    let value = |wanted: u16| {
        nested
            .iter()
            .find(|(kind, _)| *kind == wanted)
            .and_then(|(_, payload)| match wanted {
                IFLA_XDP_ATTACHED => payload.first().map(|b| u32::from(*b)),
                _ => read_u32(payload),
            })
    };
    let per_hook = [
        (XdpHook::Native, IFLA_XDP_DRV_PROG_ID),
        (XdpHook::Generic, IFLA_XDP_SKB_PROG_ID),
        (XdpHook::Offloaded, IFLA_XDP_HW_PROG_ID),
    ];
    let mut out: Vec<(XdpHook, u32)> = per_hook
        .into_iter()
        .filter_map(|(hook, kind)| value(kind).filter(|id| *id != 0).map(|id| (hook, id)))
        .collect();
    if out.is_empty() {
        let hook = match value(IFLA_XDP_ATTACHED) {
            Some(1) => Some(XdpHook::Native),
            Some(2) => Some(XdpHook::Generic),
            Some(3) => Some(XdpHook::Offloaded),
            _ => None,
        };
        if let (Some(hook), Some(id)) = (hook, value(IFLA_XDP_PROG_ID).filter(|id| *id != 0)) {
            out.push((hook, id));
        }
    }
    out
}

/// Detaches, through netlink, the program attached at `hook` of `ifindex` without a
/// link (as `ip link set dev IF xdp off` does). A link's attachment refuses this
/// (EBUSY): detach the link instead.
pub fn netlink_detach(ifindex: u32, hook: XdpHook) -> io::Result<()> {
    let mut nested = attribute(IFLA_XDP_FD, &(-1i32).to_ne_bytes());
    nested.extend(attribute(IFLA_XDP_FLAGS, &hook.flags().to_ne_bytes()));
    let request = link_message(
        libc::RTM_SETLINK,
        (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16,
        ifindex,
        &attribute(IFLA_XDP | NLA_F_NESTED, &nested),
    );
    talk(&request, |_| {})
}

/// A process holding a BPF object open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub command: String,
}

/// What a BPF descriptor's `/proc/PID/fdinfo` says of it (`map_id:`, `prog_id:` or,
/// for a link, `link_id:` and its `prog_id:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BpfObject {
    Map(u32),
    Program(u32),
    Link(u32),
}

fn fdinfo_objects(fdinfo: &str) -> Vec<BpfObject> {
    fdinfo
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            let id = value.trim().parse().ok()?;
            match key {
                "map_id" => Some(BpfObject::Map(id)),
                "prog_id" => Some(BpfObject::Program(id)),
                "link_id" => Some(BpfObject::Link(id)),
                _ => None,
            }
        })
        .collect()
}

/// The processes (other than this one) holding any of `objects` open, each once.
/// Processes whose descriptors cannot be read are passed over (as root, none).
pub fn holders(objects: &[BpfObject]) -> Vec<Holder> {
    let mut found = Vec::new();
    let own = std::process::id();
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return found;
    };
    for process in processes.flatten() {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            // Only BPF descriptors (anon_inode:bpf-map, bpf-prog, bpf_link) are read.
            let is_bpf = std::fs::read_link(fd.path())
                .is_ok_and(|target| target.as_os_str().as_bytes().starts_with(b"anon_inode:bpf"));
            is_bpf
                && std::fs::read_to_string(process.path().join("fdinfo").join(fd.file_name()))
                    .is_ok_and(|info| fdinfo_objects(&info).iter().any(|o| objects.contains(o)))
        });
        if holds {
            let command = std::fs::read_to_string(process.path().join("comm"))
                .map(|c| c.trim().to_owned())
                .unwrap_or_default();
            found.push(Holder { pid, command });
        }
    }
    found
}

const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const MAP_TYPE_ARRAY: u32 = 2;
const MAP_TYPE_ARRAY_OF_MAPS: u32 = 12;

/// A grace period for BPF programs, on demand: when userspace updates a map-in-map,
/// the kernel waits for every running (non-sleepable) program to finish before the
/// update returns (`maybe_wait_bpf_programs` in `kernel/bpf/syscall.c`: a
/// `synchronize_rcu`; XDP runs inside an RCU read-side section). After
/// [`ProgramBarrier::wait`], no program run that started before it is still going:
/// what they could read may be reused. It costs the programs nothing.
#[derive(Debug)]
pub struct ProgramBarrier {
    outer: OwnedFd,
    inner: OwnedFd,
}

fn create_map(map_type: u32, inner_map_fd: Option<&OwnedFd>) -> io::Result<OwnedFd> {
    let mut attr = Attr::default();
    set_u32(&mut attr, 0, map_type);
    set_u32(&mut attr, 4, 4); // key size
    set_u32(&mut attr, 8, 4); // value size
    set_u32(&mut attr, 12, 1); // max entries
    if let Some(fd) = inner_map_fd {
        set_u32(&mut attr, 20, fd.as_raw_fd() as u32);
    }
    bpf(BPF_MAP_CREATE, &mut attr).map(owned_fd)
}

impl ProgramBarrier {
    /// A one-slot array of maps and the map it holds (neither pinned: they go with
    /// this process).
    pub fn new() -> io::Result<Self> {
        let inner = create_map(MAP_TYPE_ARRAY, None)?;
        let outer = create_map(MAP_TYPE_ARRAY_OF_MAPS, Some(&inner))?;
        Ok(Self { outer, inner })
    }

    /// Returns once every BPF program run in progress when it was called has ended.
    pub fn wait(&self) -> io::Result<()> {
        let key = 0u32;
        let value = self.inner.as_raw_fd() as u32;
        let mut attr = Attr::default();
        set_u32(&mut attr, 0, self.outer.as_raw_fd() as u32);
        attr[1] = &raw const key as u64;
        attr[2] = &raw const value as u64;
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
    }
}

#[cfg(test)]
mod tests {

    /// The grace period is the kernel's: updating the array of maps returns only after
    /// an RCU grace period (synchronize_rcu), which takes far longer than updating a
    /// plain array. On this kernel (6.18) the first is milliseconds, the second
    /// microseconds.
    #[test]
    fn the_program_barrier_waits_for_a_grace_period() {
        let barrier = ProgramBarrier::new().expect("an array of maps (needs CAP_BPF)");
        let plain = create_map(MAP_TYPE_ARRAY, None).expect("an array");
        let update = |fd: &OwnedFd, value: u32| {
            let key = 0u32;
            let mut attr = Attr::default();
            set_u32(&mut attr, 0, fd.as_raw_fd() as u32);
            attr[1] = &raw const key as u64;
            attr[2] = &raw const value as u64;
            bpf(BPF_MAP_UPDATE_ELEM, &mut attr).expect("update");
        };
        let fastest = |f: &dyn Fn()| {
            (0..5)
                .map(|_| {
                    let started = std::time::Instant::now();
                    f();
                    started.elapsed()
                })
                .min()
                .expect("five runs")
        };
        let waited = fastest(&|| barrier.wait().expect("wait"));
        let plain = fastest(&|| update(&plain, 1));
        eprintln!("array of maps update {waited:?}, plain array update {plain:?}");
        assert!(
            waited > plain * 10 && waited >= std::time::Duration::from_micros(100),
            "array of maps update {waited:?}, plain array update {plain:?}"
        );
    }
    use super::*;

    #[test]
    fn attributes_and_the_xdp_attribute_are_read() {
        let one = [
            attribute(IFLA_XDP_ATTACHED, &[2]),
            attribute(IFLA_XDP_PROG_ID, &77u32.to_ne_bytes()),
        ]
        .concat();
        assert_eq!(parse_xdp(&one), [(XdpHook::Generic, 77)]);
        let several = [
            attribute(IFLA_XDP_ATTACHED, &[4]),
            attribute(IFLA_XDP_DRV_PROG_ID, &5u32.to_ne_bytes()),
            attribute(IFLA_XDP_SKB_PROG_ID, &6u32.to_ne_bytes()),
        ]
        .concat();
        assert_eq!(
            parse_xdp(&several),
            [(XdpHook::Native, 5), (XdpHook::Generic, 6)]
        );
        assert_eq!(parse_xdp(&attribute(IFLA_XDP_ATTACHED, &[0])), []);
        // A name of 5 bytes is padded to 8: the next attribute is still found.
        let padded = [attribute(IFLA_IFNAME, b"eth0\0"), attribute(IFLA_XDP, &one)].concat();
        let parsed = attributes(&padded);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1], (IFLA_XDP, &one[..]));
    }

    #[test]
    fn fdinfo_names_the_objects() {
        let link = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1057\nlink_type:\txdp\nlink_id:\t347\nprog_tag:\t69bb5b895b0d2da3\nprog_id:\t1275\nifindex:\t2\n";
        assert_eq!(
            fdinfo_objects(link),
            [BpfObject::Link(347), BpfObject::Program(1275)]
        );
        let map = "pos:\t0\nmap_type:\t2\nkey_size:\t4\nmap_id:\t88\nfrozen:\t0\n";
        assert_eq!(fdinfo_objects(map), [BpfObject::Map(88)]);
    }

    #[test]
    fn words_of_the_attribute_are_set_in_place() {
        let mut attr = Attr::default();
        set_u32(&mut attr, 0, 7);
        set_u32(&mut attr, 4, 9);
        set_u32(&mut attr, 12, 0xffff_ffff);
        assert_eq!(get_u32(&attr, 0), 7);
        assert_eq!(get_u32(&attr, 4), 9);
        assert_eq!(attr[1], 0xffff_ffff_0000_0000);
    }
}
