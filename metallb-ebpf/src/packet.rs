//! Loads and stores of header fields at byte offsets in the frame.
//!
//! Fields are read and written whole, as native words of their wire bytes (an IPv4
//! address is one `u32`, a MAC a `u32` and a `u16`, an ARP fixed header one `u64`):
//! compared with constants built from wire bytes, copied without byte swaps, and
//! summed for checksums as they are (RFC 1071: the one's complement sum does not
//! depend on byte order). The linker is told the target handles unaligned access, so
//! each is a single instruction whatever its offset.

/// Ethernet header: destination, source, EtherType.
pub const ETH_LEN: usize = 14;
pub const ETH_DST: usize = 0;
pub const ETH_SRC: usize = 6;
pub const ETH_TYPE: usize = 12;
/// An 802.1Q tag after the addresses: TCI, then the inner EtherType.
pub const VLAN_TCI: usize = 14;
pub const VLAN_TYPE: usize = 16;
pub const VLAN_ETH_LEN: usize = 18;

/// A value of `T` at `addr`.
///
/// # Safety
/// `addr..addr + size_of::<T>()` must be inside the frame (checked against
/// `data_end`) or inside a map value.
#[inline(always)]
pub unsafe fn load<T: Copy>(addr: usize) -> T {
    unsafe { (addr as *const T).read_unaligned() }
}

/// [`load`], but a load the compiler must do here, as written: it may not reuse an
/// earlier load of the same bytes, nor assume anything of the value.
///
/// # Safety
/// As for [`load`].
#[inline(always)]
pub unsafe fn load_volatile<T: Copy>(addr: usize) -> T {
    /// `T` at any address: a packed struct has alignment 1.
    #[repr(C, packed)]
    #[derive(Clone, Copy)]
    struct Unaligned<T>(T);
    unsafe { core::ptr::read_volatile(addr as *const Unaligned<T>).0 }
}

/// Writes `value` at `addr`.
///
/// # Safety
/// As for [`load`], and the memory must be writable (the frame is).
#[inline(always)]
pub unsafe fn store<T>(addr: usize, value: T) {
    unsafe { (addr as *mut T).write_unaligned(value) }
}

/// A MAC address as its wire bytes: the first four as a native `u32`, the last two
/// as a native `u16`.
#[derive(Clone, Copy)]
pub struct Mac {
    pub head: u32,
    pub tail: u16,
}

impl Mac {
    /// # Safety
    /// As for [`load`], for six bytes.
    #[inline(always)]
    pub unsafe fn load(addr: usize) -> Self {
        unsafe {
            Mac {
                head: load(addr),
                tail: load(addr + 4),
            }
        }
    }

    /// # Safety
    /// As for [`store`], for six bytes.
    #[inline(always)]
    pub unsafe fn store(self, addr: usize) {
        unsafe {
            store(addr, self.head);
            store(addr + 4, self.tail);
        }
    }
}

/// A MAC address in the low 48 bits of a native word (its wire bytes in order, on
/// this little-endian target); the high 16 bits are whatever followed it in memory,
/// and every test shifts them out. One load and a few ALU instructions per test.
#[derive(Clone, Copy)]
pub struct MacWord(u64);

impl MacWord {
    /// The address at `addr`, read with the two bytes after it.
    ///
    /// # Safety
    /// As for [`load`], for eight bytes.
    #[inline(always)]
    pub unsafe fn load(addr: usize) -> Self {
        MacWord(unsafe { load(addr) })
    }

    /// [`MacWord::load`], with a load the compiler must do here: after a map lookup
    /// (a call), reading the frame again is cheaper than keeping the value on the
    /// stack.
    ///
    /// # Safety
    /// As for [`load`], for eight bytes.
    #[inline(always)]
    pub unsafe fn load_again(addr: usize) -> Self {
        MacWord(unsafe { load_volatile(addr) })
    }

    /// The address of a link-layer address option (type, length, six bytes) at `addr`.
    ///
    /// # Safety
    /// As for [`load`], for eight bytes.
    #[inline(always)]
    pub unsafe fn from_option(addr: usize) -> Self {
        MacWord(unsafe { load::<u64>(addr) } >> 16)
    }

    #[inline(always)]
    pub fn of(mac: Mac) -> Self {
        MacWord(mac.head as u64 | (mac.tail as u64) << 32)
    }

    /// Whether the two are the same address.
    #[inline(always)]
    pub fn is(self, other: MacWord) -> bool {
        (self.0 ^ other.0) << 16 == 0
    }

    /// A group address (broadcast, multicast: the lowest bit of the first byte on the
    /// wire), or all zeroes.
    #[inline(always)]
    fn is_group_or_zero(self) -> bool {
        self.0 & 1 != 0 || self.0 << 16 == 0
    }
}

/// Neither `a` nor `b` is a group address or all zeroes: both can be the source of a
/// frame and where an answer goes. In the usual frame they are the same address: one
/// check then.
#[inline(always)]
pub fn both_unicast(a: MacWord, b: MacWord) -> bool {
    !a.is_group_or_zero() && (a.is(b) || !b.is_group_or_zero())
}

/// Whether `a` or `b` is `ours`. In the usual frame `a` is `b` (which
/// [`both_unicast`] has just compared, when it comes first): one comparison then.
#[inline(always)]
pub fn either_is(a: MacWord, b: MacWord, ours: MacWord) -> bool {
    a.is(ours) || (!a.is(b) && b.is(ours))
}
