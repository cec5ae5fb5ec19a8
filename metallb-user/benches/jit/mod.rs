//! The x86-64 instructions that the JITed code of an XDP program executes for one frame:
//! a figure of each path that does not depend on the CPU kind (the nanoseconds do).
//!
//! The method: the kernel's JITed machine code is read back (BPF_OBJ_GET_INFO_BY_FD,
//! as `bpftool prog dump jited` does), copied into this process and run natively,
//! one instruction at a time (the trap flag: a SIGTRAP after every instruction),
//! in a child process, on a copy of the frame. What the code reads of the kernel is
//! modelled where it is:
//!
//! - the context (`struct xdp_buff`): `data` and `data_end` point at the frame, every
//!   other word at a stand-in `xdp_rxq_info` whose words point at a stand-in
//!   `net_device` that holds the ifindex in every 32-bit word;
//! - the maps: the JIT writes each map's address (or a map value's) as a 64-bit
//!   immediate, in the order of the translated program's 64-bit loads of maps
//!   (`xlated_prog_insns`, where the kernel names each map by id). Those immediates are
//!   pointed at copies: an array map's values (read through its mmap, or one lookup per
//!   key) after the offset of `value` in `struct bpf_array` (from the kernel's BTF),
//!   a per-CPU array's pointer table with zeroed slots;
//! - per-CPU data (`gs:`): the GS base is set so that `this_cpu_off` reads 0; a
//!   per-CPU variable's address that the code loads as a 32-bit immediate and then
//!   offsets with `gs:` (the CPU number, where the verifier inlines
//!   `bpf_get_smp_processor_id`) is pointed at zeroed memory: the code runs as CPU 0;
//! - calls out of the program (helpers, retpoline thunks) are replaced by a trap that
//!   names the callee (kallsyms) and returns 0; the return thunk by `ret`. The
//!   callee's own instructions are not counted: a helper call is listed beside the
//!   count.
//!
//! The count is exact for the code as JITed on this kernel; it covers the program's
//! instructions only (not the kernel's XDP entry and exit around it).

use std::{
    collections::{BTreeMap, BTreeSet},
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
};

use anyhow::{Context as _, bail, ensure};
use aya::programs::Xdp;
use aya_obj::generated::{bpf_map_info, bpf_prog_info};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_F_MMAPABLE: u32 = 1 << 10;
/// `src_reg` of a 64-bit load of a map (its address) or of a map value's address, as
/// the kernel dumps translated programs.
const PSEUDO_MAP_FD: u8 = 1;
const PSEUDO_MAP_VALUE: u8 = 2;
/// Where the model of a map's memory starts being the map's values.
const KERNEL_SPACE: u64 = 0xffff_8000_0000_0000;

fn bpf(cmd: libc::c_long, attr: *const u8, size: usize) -> anyhow::Result<i64> {
    // SAFETY: `attr` points at `size` bytes of a `union bpf_attr` member that lives
    // across the call; the kernel writes only where that member says.
    let status = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size) };
    if status < 0 {
        bail!("bpf({cmd}): {}", std::io::Error::last_os_error());
    }
    Ok(status)
}

/// The `info` member of `union bpf_attr`.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

fn object_info<T>(fd: i32, info: &mut T) -> anyhow::Result<()> {
    let attr = InfoAttr {
        bpf_fd: u32::try_from(fd)?,
        info_len: u32::try_from(size_of::<T>())?,
        info: std::ptr::from_mut(info) as u64,
    };
    bpf(
        BPF_OBJ_GET_INFO_BY_FD,
        (&raw const attr).cast(),
        size_of::<InfoAttr>(),
    )?;
    Ok(())
}

/// A loaded program as the kernel holds it: its machine code, where it is, its
/// translated instructions.
pub struct Jited {
    pub code: Vec<u8>,
    /// The kernel address of the code (for naming the callees of calls out of it).
    address: u64,
    xlated: Vec<u64>,
}

impl Jited {
    pub fn read(program: &Xdp) -> anyhow::Result<Self> {
        let fd = program.fd()?.as_fd().as_raw_fd();
        // SAFETY: plain C structs of integers; all zeroes is their empty value.
        let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
        object_info(fd, &mut info)?;
        let mut code = vec![0u8; info.jited_prog_len as usize];
        let mut xlated = vec![0u64; info.xlated_prog_len as usize / 8];
        let mut ksyms = vec![0u64; info.nr_jited_ksyms.max(1) as usize];
        let (code_len, xlated_len, nr_ksyms) = (
            info.jited_prog_len,
            info.xlated_prog_len,
            info.nr_jited_ksyms,
        );
        // SAFETY: as above.
        let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
        info.jited_prog_len = code_len;
        info.jited_prog_insns = code.as_mut_ptr() as u64;
        info.xlated_prog_len = xlated_len;
        info.xlated_prog_insns = xlated.as_mut_ptr() as u64;
        info.nr_jited_ksyms = nr_ksyms;
        info.jited_ksyms = ksyms.as_mut_ptr() as u64;
        object_info(fd, &mut info)?;
        code.truncate(info.jited_prog_len as usize);
        ensure!(
            info.nr_jited_ksyms <= 1,
            "a program of {} functions: only one is modelled",
            info.nr_jited_ksyms
        );
        Ok(Jited {
            code,
            address: ksyms[0],
            xlated,
        })
    }

    /// The (map id, offset for a value's address, or `None` for the map's own) of
    /// every 64-bit load of a map, in program order, and the constants of the other
    /// 64-bit loads.
    fn map_loads(&self) -> (Vec<(u32, Option<u32>)>, BTreeSet<u64>) {
        let mut loads = Vec::new();
        let mut constants = BTreeSet::new();
        let mut i = 0;
        while i < self.xlated.len() {
            let insn = self.xlated[i].to_le_bytes();
            if insn[0] == 0x18 {
                let src = insn[1] >> 4;
                let imm = u32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]);
                let next = self.xlated.get(i + 1).copied().unwrap_or(0).to_le_bytes();
                let off = u32::from_le_bytes([next[4], next[5], next[6], next[7]]);
                match src {
                    PSEUDO_MAP_FD => loads.push((imm, None)),
                    PSEUDO_MAP_VALUE => loads.push((imm, Some(off))),
                    _ => {
                        constants.insert(u64::from(imm) | u64::from(off) << 32);
                    }
                }
                i += 2;
            } else {
                i += 1;
            }
        }
        (loads, constants)
    }
}

/// One decoded instruction: its offset and bytes.
#[derive(Clone)]
pub struct Insn {
    pub offset: usize,
    pub bytes: Vec<u8>,
    /// objdump's text of it.
    pub text: String,
}

/// Decodes `code` with objdump (binutils; Debian's bpftool has no disassembler).
pub fn decode(code: &[u8], scratch: &Path) -> anyhow::Result<Vec<Insn>> {
    std::fs::write(scratch, code)?;
    let out = std::process::Command::new("objdump")
        .args(["-D", "-b", "binary", "-m", "i386:x86-64", "--insn-width=16"])
        .arg(scratch)
        .output()
        .context("running objdump")?;
    let _ = std::fs::remove_file(scratch);
    ensure!(
        out.status.success(),
        "objdump: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    // Instruction lines: `   1f:\t48 89 e5 ...\tmov ...`.
    let mut insns = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((offset, rest)) = line.trim_start().split_once(':') else {
            continue;
        };
        if offset.is_empty() || !offset.chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        let Some(rest) = rest.strip_prefix('\t') else {
            continue;
        };
        let mut fields = rest.split('\t');
        let hex = fields.next().unwrap_or("");
        let text = fields.next().unwrap_or("").trim().to_string();
        let bytes = hex
            .split_whitespace()
            .map(|b| u8::from_str_radix(b, 16))
            .collect::<Result<Vec<u8>, _>>()
            .with_context(|| format!("objdump line {line:?}"))?;
        insns.push(Insn {
            offset: usize::from_str_radix(offset, 16)?,
            bytes,
            text,
        });
    }
    Ok(insns)
}

/// The offset of the values in the kernel's `struct bpf_array` (its last member, the
/// union of `value`, `ptrs` and `pptrs`), read from the kernel's BTF.
fn bpf_array_value_offset() -> anyhow::Result<u64> {
    let btf = std::fs::read("/sys/kernel/btf/vmlinux").context("reading the kernel's BTF")?;
    let u32_at = |at: usize| -> anyhow::Result<u32> {
        Ok(u32::from_le_bytes(
            btf.get(at..at + 4).context("BTF cut short")?.try_into()?,
        ))
    };
    ensure!(u16::from_le_bytes([btf[0], btf[1]]) == 0xeb9f, "not BTF");
    let hdr_len = u32_at(4)? as usize;
    let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
    let str_off = u32_at(16)? as usize;
    let name = |offset: u32| -> &[u8] {
        let start = hdr_len + str_off + offset as usize;
        let tail = &btf[start.min(btf.len())..];
        &tail[..tail.iter().position(|&b| b == 0).unwrap_or(tail.len())]
    };
    let mut at = hdr_len + type_off;
    let end = at + type_len;
    while at < end {
        let (name_off, info) = (u32_at(at)?, u32_at(at + 4)?);
        let (kind, vlen, kind_flag) = ((info >> 24) & 0x1f, info & 0xffff, info >> 31);
        let members = at + 12;
        at = members
            + match kind {
                1 | 14 | 17 => 4,
                3 => 12,
                4 | 5 | 15 | 19 => 12 * vlen as usize,
                6 | 13 => 8 * vlen as usize,
                _ => 0,
            };
        if kind == 4 && name(name_off) == b"bpf_array" && vlen > 0 {
            let last = members + 12 * (vlen as usize - 1);
            let offset = u32_at(last + 8)?;
            let bits = if kind_flag == 1 {
                offset & 0xff_ffff
            } else {
                offset
            };
            return Ok(u64::from(bits / 8));
        }
    }
    bail!("no struct bpf_array in the kernel's BTF")
}

/// The kernel symbol at `address`, from /proc/kallsyms.
fn kernel_symbol(symbols: &[(u64, String)], address: u64) -> String {
    match symbols.partition_point(|(a, _)| *a <= address) {
        0 => format!("{address:#x}"),
        i => {
            let (start, name) = &symbols[i - 1];
            if *start == address {
                name.clone()
            } else {
                format!("{name}+{:#x}", address - start)
            }
        }
    }
}

fn kallsyms() -> anyhow::Result<Vec<(u64, String)>> {
    let text = std::fs::read_to_string("/proc/kallsyms")?;
    let mut symbols: Vec<(u64, String)> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = u64::from_str_radix(fields.next()?, 16).ok()?;
            let _kind = fields.next()?;
            Some((address, fields.next()?.to_string()))
        })
        .filter(|(address, _)| *address != 0)
        .collect();
    symbols.sort();
    Ok(symbols)
}

/// Memory of the model: zeroed, page aligned, readable and writable, at a fixed
/// address for the life of the value.
struct Region {
    ptr: *mut u8,
    len: usize,
}

impl Region {
    fn new(len: usize, exec: bool) -> anyhow::Result<Self> {
        Self::mapped(len, exec, 0)
    }

    /// Below 2 GiB: where a sign-extended 32-bit immediate can point.
    fn low(len: usize) -> anyhow::Result<Self> {
        Self::mapped(len, false, libc::MAP_32BIT)
    }

    fn mapped(len: usize, exec: bool, flags: i32) -> anyhow::Result<Self> {
        let len = len.max(1).div_ceil(4096) * 4096;
        let prot = libc::PROT_READ | libc::PROT_WRITE | if exec { libc::PROT_EXEC } else { 0 };
        // SAFETY: a fresh anonymous mapping.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
                -1,
                0,
            )
        };
        ensure!(
            ptr != libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        Ok(Region {
            ptr: ptr.cast(),
            len,
        })
    }

    fn addr(&self) -> u64 {
        self.ptr as u64
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the mapping, alive and exclusively ours.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    fn put_u64(&mut self, at: usize, value: u64) {
        self.bytes()[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: our mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A map the program refers to, with the model of its memory.
struct ModelMap {
    name: String,
    /// What the JIT's immediate for the map's own address becomes.
    base: u64,
    _regions: Vec<Region>,
}

fn map_fd(id: u32) -> anyhow::Result<OwnedFd> {
    #[repr(C)]
    struct GetIdAttr {
        id: u32,
        next_id: u32,
        open_flags: u32,
    }
    let attr = GetIdAttr {
        id,
        next_id: 0,
        open_flags: 0,
    };
    let fd = bpf(
        BPF_MAP_GET_FD_BY_ID,
        (&raw const attr).cast(),
        size_of::<GetIdAttr>(),
    )?;
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd)?) })
}

fn model_map(id: u32, value_offset: u64) -> anyhow::Result<ModelMap> {
    let fd = map_fd(id)?;
    // SAFETY: a plain C struct of integers.
    let mut info: bpf_map_info = unsafe { std::mem::zeroed() };
    object_info(fd.as_raw_fd(), &mut info)?;
    let name: String = info
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect();
    let entries = info.max_entries as usize;
    let elem = (info.value_size as usize).div_ceil(8) * 8;
    let value_offset = value_offset as usize;
    let mut regions = Vec::new();
    let base = match info.type_ {
        BPF_MAP_TYPE_ARRAY => {
            let mut region = Region::new(value_offset + entries * elem, false)?;
            let values = &mut region.bytes()[value_offset..value_offset + entries * elem];
            if info.map_flags & BPF_F_MMAPABLE != 0 {
                let len = (entries * elem).div_ceil(4096) * 4096;
                // SAFETY: a read-only shared mapping of the map's values, unmapped below.
                let shared = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        len,
                        libc::PROT_READ,
                        libc::MAP_SHARED,
                        fd.as_raw_fd(),
                        0,
                    )
                };
                ensure!(
                    shared != libc::MAP_FAILED,
                    "mmap of map {name}: {}",
                    std::io::Error::last_os_error()
                );
                // SAFETY: `len` >= entries * elem readable bytes.
                values.copy_from_slice(unsafe {
                    std::slice::from_raw_parts(shared.cast::<u8>(), entries * elem)
                });
                // SAFETY: the mapping made above.
                unsafe { libc::munmap(shared, len) };
            } else {
                for key in 0..info.max_entries {
                    #[repr(C)]
                    struct ElemAttr {
                        map_fd: u32,
                        _pad: u32,
                        key: u64,
                        value: u64,
                        flags: u64,
                    }
                    let slot = &mut values[key as usize * elem..];
                    let attr = ElemAttr {
                        map_fd: u32::try_from(fd.as_raw_fd())?,
                        _pad: 0,
                        key: (&raw const key) as u64,
                        value: slot.as_mut_ptr() as u64,
                        flags: 0,
                    };
                    bpf(
                        BPF_MAP_LOOKUP_ELEM,
                        (&raw const attr).cast(),
                        size_of::<ElemAttr>(),
                    )?;
                }
            }
            let base = region.addr();
            regions.push(region);
            base
        }
        BPF_MAP_TYPE_PERCPU_ARRAY => {
            // Counters start at zero: the path does not depend on their values.
            let slots = Region::new(entries * elem, false)?;
            let mut table = Region::new(value_offset + entries * 8, false)?;
            for i in 0..entries {
                table.put_u64(value_offset + 8 * i, slots.addr() + (i * elem) as u64);
            }
            let base = table.addr();
            regions.push(slots);
            regions.push(table);
            base
        }
        // Not modelled: a read through it faults, and the count says so.
        _ => 0,
    };
    Ok(ModelMap {
        name,
        base,
        _regions: regions,
    })
}

/// What one frame made the program do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathCount {
    /// x86-64 instructions executed, from the first to the return.
    pub instructions: u64,
    /// The program's return value (the XDP verdict).
    pub verdict: u32,
    /// Calls out of the program, by callee, in order.
    pub calls: Vec<String>,
    /// Loads of a map's address (or a map value's) executed, by map name.
    pub map_loads: BTreeMap<String, u32>,
    /// The code offsets executed, in order.
    pub offsets: Vec<u64>,
}

/// The program, ready to run in the model: its patched copy and the memory it reads.
pub struct Model {
    code: Region,
    len: usize,
    /// Offsets of the calls replaced by a trap, and their callees.
    calls: Vec<(usize, String)>,
    /// Offsets of the 64-bit immediates of maps, and the map's name.
    map_loads: Vec<(usize, String)>,
    /// The zeroed memory that `gs:` reads land in.
    _gs: Region,
    /// The zeroed memory that per-CPU variables' addresses point at.
    _per_cpu: Region,
    gs_base: u64,
    _maps: Vec<ModelMap>,
}

impl Model {
    /// Models `jited` with the maps' contents as they are now.
    pub fn new(jited: &Jited, scratch: &Path) -> anyhow::Result<Self> {
        let insns = decode(&jited.code, scratch)?;
        let value_offset = bpf_array_value_offset()?;
        let symbols = kallsyms()?;
        let (loads, constants) = jited.map_loads();
        let mut maps: BTreeMap<u32, ModelMap> = BTreeMap::new();
        for (id, _) in &loads {
            if !maps.contains_key(id) {
                maps.insert(*id, model_map(*id, value_offset)?);
            }
        }
        let mut code = Region::new(jited.code.len(), true)?;
        let len = jited.code.len();
        code.bytes()[..len].copy_from_slice(&jited.code);
        let mut loads = loads.into_iter();
        let mut calls = Vec::new();
        let mut map_loads = Vec::new();
        let mut gs_disps = Vec::new();
        let per_cpu = Region::low(4096)?;
        for (i, insn) in insns.iter().enumerate() {
            let b = &insn.bytes;
            // mov r64, simm32 of a kernel address, offset by `gs:` next: a per-CPU
            // variable's address (the CPU number).
            if b.len() == 7
                && b[0] & 0xfe == 0x48
                && b[1] == 0xc7
                && b[2] & 0xf8 == 0xc0
                && insns.get(i + 1).and_then(|next| next.bytes.first()) == Some(&0x65)
            {
                let imm = i32::from_le_bytes(b[3..7].try_into()?) as i64 as u64;
                if imm >= KERNEL_SPACE {
                    let low = i32::try_from(per_cpu.addr())?;
                    let at = insn.offset + 3;
                    code.bytes()[at..at + 4].copy_from_slice(&low.to_le_bytes());
                }
            }
            // movabs reg, imm64 of a kernel address: the next map load.
            if b.len() == 10 && b[0] & 0xf8 == 0x48 && b[1] & 0xf8 == 0xb8 {
                let imm = u64::from_le_bytes(b[2..10].try_into()?);
                if imm >= KERNEL_SPACE && !constants.contains(&imm) {
                    let (id, value_off) = loads
                        .next()
                        .context("more kernel addresses in the code than map loads")?;
                    let map = &maps[&id];
                    let target = match value_off {
                        None => map.base,
                        Some(off) => map.base + value_offset + u64::from(off),
                    };
                    let at = insn.offset + 2;
                    code.bytes()[at..at + 8].copy_from_slice(&target.to_le_bytes());
                    map_loads.push((insn.offset, map.name.clone()));
                }
            }
            // call/jmp rel32 out of the program.
            if b.len() == 5 && (b[0] == 0xe8 || b[0] == 0xe9) {
                let rel = i32::from_le_bytes(b[1..5].try_into()?) as i64;
                let target = insn.offset as i64 + 5 + rel;
                if !(0..len as i64).contains(&target) {
                    let callee = kernel_symbol(&symbols, jited.address.wrapping_add(target as u64));
                    let patch: [u8; 5] = if b[0] == 0xe9 && callee.contains("return_thunk") {
                        [0xc3, 0xcc, 0xcc, 0xcc, 0xcc]
                    } else {
                        [0xcc, 0x90, 0x90, 0x90, 0x90]
                    };
                    code.bytes()[insn.offset..insn.offset + 5].copy_from_slice(&patch);
                    if patch[0] == 0xcc {
                        calls.push((insn.offset, callee));
                    }
                }
            }
            // gs:[disp32] (per-CPU data): the displacement (sign-extended) ends the
            // instruction.
            if b.first() == Some(&0x65) && b.len() >= 8 {
                gs_disps.push(i32::from_le_bytes(b[b.len() - 4..].try_into()?) as i64);
            }
        }
        ensure!(
            loads.next().is_none(),
            "fewer kernel addresses in the code than map loads"
        );
        // Every gs: read lands in one zeroed region.
        let (low, high) = (
            gs_disps.iter().copied().min().unwrap_or(0),
            gs_disps.iter().copied().max().unwrap_or(0),
        );
        let gs = Region::new(high.abs_diff(low) as usize + 8, false)?;
        let gs_base = gs.addr().wrapping_sub(low as u64);
        Ok(Model {
            code,
            len,
            calls,
            map_loads,
            _gs: gs,
            _per_cpu: per_cpu,
            gs_base,
            _maps: maps.into_values().collect(),
        })
    }

    /// Runs the program once on `frame`, received on `ifindex`.
    pub fn run(&self, frame: &[u8], ifindex: u32) -> anyhow::Result<PathCount> {
        const HEADROOM: usize = 256;
        let mut packet = Region::new(HEADROOM + frame.len() + 256, false)?;
        packet.bytes()[HEADROOM..HEADROOM + frame.len()].copy_from_slice(frame);
        let mut dev = Region::new(16384, false)?;
        for word in dev.bytes().chunks_exact_mut(4) {
            word.copy_from_slice(&ifindex.to_le_bytes());
        }
        let mut rxq = Region::new(4096, false)?;
        for at in (0..4096).step_by(8) {
            rxq.put_u64(at, dev.addr());
        }
        let mut ctx = Region::new(4096, false)?;
        for at in (0..4096).step_by(8) {
            ctx.put_u64(at, rxq.addr());
        }
        ctx.put_u64(0, packet.addr() + HEADROOM as u64);
        ctx.put_u64(8, packet.addr() + (HEADROOM + frame.len()) as u64);

        let mut pipe = [0i32; 2];
        // SAFETY: two descriptors written into `pipe`.
        ensure!(unsafe { libc::pipe(pipe.as_mut_ptr()) } == 0, "pipe");
        // SAFETY: the child only runs the prepared code and async-signal-safe calls,
        // then _exits; nothing it does needs a lock another thread could hold.
        let pid = unsafe { libc::fork() };
        ensure!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: in the child, see above.
            unsafe { child(self, ctx.addr(), pipe[1]) }
        }
        // SAFETY: our descriptors.
        unsafe { libc::close(pipe[1]) };
        let mut report = Vec::new();
        {
            use std::io::Read as _;
            // SAFETY: the read end, owned from here on.
            let mut read_end = unsafe { std::fs::File::from_raw_fd(pipe[0]) };
            read_end.read_to_end(&mut report)?;
        }
        let mut status = 0;
        // SAFETY: our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let words: Vec<u64> = report
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();
        match words.first() {
            Some(0) => {}
            Some(1) => bail!(
                "the modelled run faulted at code offset {:#x} (address {:#x})",
                words.get(1).copied().unwrap_or(0),
                words.get(2).copied().unwrap_or(0)
            ),
            _ => bail!("the modelled run ended with status {status:#x}"),
        }
        ensure!(words.len() >= 4, "the modelled run's report is cut short");
        let (instructions, verdict) = (words[1], words[2] as u32);
        let ncalls = (words[3] as usize).min(words.len() - 4);
        let calls = words[4..4 + ncalls]
            .iter()
            .filter_map(|&i| self.calls.get(i as usize))
            .map(|(_, callee)| callee.clone())
            .collect();
        let offsets = words[4 + ncalls..].to_vec();
        let mut map_loads = BTreeMap::new();
        for &offset in &offsets {
            if let Some((_, name)) = self.map_loads.iter().find(|(at, _)| *at as u64 == offset) {
                *map_loads.entry(name.clone()).or_insert(0) += 1;
            }
        }
        Ok(PathCount {
            instructions,
            verdict,
            calls,
            map_loads,
            offsets,
        })
    }
}

// What the SIGTRAP handler of the child reads and writes. The child is single
// threaded: written before the run, then only by the handler.
struct Trace {
    code: u64,
    code_len: u64,
    /// Offsets of the replaced calls.
    calls: [u64; 64],
    ncalls: usize,
    count: u64,
    /// Calls made: indexes into `calls`, in order.
    made: [u64; 64],
    nmade: usize,
    /// Offsets executed, in order (map loads are looked up among them).
    offsets: [u64; 1 << 16],
    noffsets: usize,
    pipe: i32,
}

/// The child's one [`Trace`].
struct Shared(std::cell::UnsafeCell<Trace>);

// SAFETY: used by the child's one thread only (and its signal handlers, see `trace`).
unsafe impl Sync for Shared {}

static TRACE: Shared = Shared(std::cell::UnsafeCell::new(Trace {
    code: 0,
    code_len: 0,
    calls: [0; 64],
    ncalls: 0,
    count: 0,
    made: [0; 64],
    nmade: 0,
    offsets: [0; 1 << 16],
    noffsets: 0,
    pipe: -1,
}));

/// The child's trace.
///
/// # Safety
/// Only in the child, which is single threaded; the handler runs between two
/// instructions of the program, never while the child's own code holds the value.
unsafe fn trace() -> &'static mut Trace {
    unsafe { &mut *TRACE.0.get() }
}

impl Trace {
    fn record(&mut self, offset: u64) {
        self.count += 1;
        if self.noffsets < self.offsets.len() {
            self.offsets[self.noffsets] = offset;
            self.noffsets += 1;
        }
    }

    fn write(&self, words: &[u64]) {
        // SAFETY: the pipe's write end; a short write only truncates the report.
        unsafe {
            libc::write(self.pipe, words.as_ptr().cast(), size_of_val(words));
        }
    }
}

extern "C" fn on_trap(_: i32, _: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel's ucontext of the trapped instruction; the child's trace.
    let (gregs, t) = unsafe {
        (
            &mut (*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs,
            trace(),
        )
    };
    let rip = gregs[libc::REG_RIP as usize] as u64;
    let offset = rip.wrapping_sub(t.code);
    // A replaced call (int3 at the call's first byte): it returns 0.
    let site = offset.wrapping_sub(1);
    if let Some(i) = (0..t.ncalls).find(|&i| t.calls[i] == site) {
        if t.nmade < t.made.len() {
            t.made[t.nmade] = i as u64;
            t.nmade += 1;
        }
        gregs[libc::REG_RAX as usize] = 0;
        gregs[libc::REG_RIP as usize] = (t.code + site + 5) as i64;
        // Reached by returning from this handler, not by a step: counted here.
        if site + 5 < t.code_len {
            t.record(site + 5);
        }
        return;
    }
    // The step trap: `rip` is the next instruction to run.
    if offset < t.code_len {
        t.record(offset);
    }
}

extern "C" fn on_fault(_: i32, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: as in on_trap.
    unsafe {
        let gregs = &(*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs;
        let t = trace();
        let rip = gregs[libc::REG_RIP as usize] as u64;
        t.write(&[1, rip.wrapping_sub(t.code), (*info).si_addr() as u64]);
        libc::_exit(3);
    }
}

/// The child: runs the program once, single-stepping, and writes the report.
unsafe fn child(model: &Model, ctx: u64, pipe: i32) -> ! {
    // SAFETY: this process's own signal handlers and GS base, and its trace.
    unsafe {
        let t = trace();
        t.pipe = pipe;
        t.code = model.code.addr();
        t.code_len = model.len as u64;
        for (i, (offset, _)) in model.calls.iter().take(t.calls.len()).enumerate() {
            t.calls[i] = *offset as u64;
        }
        t.ncalls = model.calls.len().min(t.calls.len());
        for (signal, handler) in [
            (libc::SIGTRAP, on_trap as *const () as usize),
            (libc::SIGSEGV, on_fault as *const () as usize),
            (libc::SIGBUS, on_fault as *const () as usize),
            (libc::SIGILL, on_fault as *const () as usize),
        ] {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
        const ARCH_SET_GS: libc::c_long = 0x1001;
        if libc::syscall(libc::SYS_arch_prctl, ARCH_SET_GS, model.gs_base) != 0 {
            t.write(&[2]);
            libc::_exit(4);
        }
        let entry = t.code;
        let verdict: u64;
        // The trap flag, set by popfq, traps after every instruction from the call on.
        std::arch::asm!(
            "pushfq",
            "or qword ptr [rsp], 0x100",
            "popfq",
            "call {entry}",
            "pushfq",
            "and qword ptr [rsp], ~0x100",
            "popfq",
            entry = in(reg) entry,
            in("rdi") ctx,
            in("rsi") 0u64,
            lateout("rax") verdict,
            clobber_abi("C"),
        );
        let t = trace();
        t.write(&[0, t.count, verdict & 0xffff_ffff, t.nmade as u64]);
        t.write(&t.made[..t.nmade]);
        t.write(&t.offsets[..t.noffsets]);
        libc::_exit(0);
    }
}
