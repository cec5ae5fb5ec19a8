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

    /// Can be the source of a request: not multicast/broadcast (the group bit is the
    /// lowest bit of the first byte on the wire) and not all zeroes.
    #[inline(always)]
    pub fn is_unicast(self) -> bool {
        self.head & 1 == 0 && (self.head | self.tail as u32) != 0
    }

    /// Whether both are the same address.
    #[inline(always)]
    pub fn is(self, other: Mac) -> bool {
        self.head == other.head && self.tail == other.tail
    }
}
