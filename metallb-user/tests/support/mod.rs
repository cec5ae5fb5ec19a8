//! Frames for the datapath tests, built with etherparse: an implementation of ARP,
//! IPv6 and ICMPv6 (checksums included) that shares no code with the XDP program.
#![allow(dead_code)]

pub mod kubernetes;

use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv6Type, PacketBuilder, VlanId,
    icmpv6::NeighborAdvertisementHeader,
};

pub const BROADCAST: [u8; 6] = [0xff; 6];

fn vlan_id(vlan: u16) -> VlanId {
    VlanId::try_new(vlan).expect("test VLAN id fits in 12 bits")
}

/// An Ethernet frame carrying an ARP packet, optionally behind one 802.1Q tag.
pub fn arp(
    op: ArpOperation,
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    sender: ([u8; 6], Ipv4Addr),
    target: ([u8; 6], Ipv4Addr),
    vlan: Option<u16>,
) -> Vec<u8> {
    let packet = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        op,
        &sender.0,
        &sender.1.octets(),
        &target.0,
        &target.1.octets(),
    )
    .expect("valid ARP packet");
    let mut out = Vec::new();
    let builder = PacketBuilder::ethernet2(eth_src, eth_dst);
    match vlan {
        Some(id) => builder.single_vlan(vlan_id(id)).arp(packet).write(&mut out),
        None => builder.arp(packet).write(&mut out),
    }
    .expect("write ARP frame");
    out
}

/// The body of an NDP message after its first 8 bytes: target then options.
pub fn nd_body(target: Ipv6Addr, options: &[&[u8]]) -> Vec<u8> {
    let mut body = target.octets().to_vec();
    for opt in options {
        body.extend_from_slice(opt);
    }
    body
}

/// A link-layer address option (type 1 = source, 2 = target).
pub fn ll_option(opt_type: u8, mac: [u8; 6]) -> Vec<u8> {
    let mut opt = vec![opt_type, 1];
    opt.extend_from_slice(&mac);
    opt
}

/// Ethernet + IPv6 + ICMPv6 of the given type, with a correct checksum.
#[allow(clippy::too_many_arguments)]
pub fn icmpv6(
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    icmp: Icmpv6Type,
    body: &[u8],
    vlan: Option<u16>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let builder = PacketBuilder::ethernet2(eth_src, eth_dst);
    match vlan {
        Some(id) => builder
            .single_vlan(vlan_id(id))
            .ipv6(src.octets(), dst.octets(), hop_limit)
            .icmpv6(icmp)
            .write(&mut out, body),
        None => builder
            .ipv6(src.octets(), dst.octets(), hop_limit)
            .icmpv6(icmp)
            .write(&mut out, body),
    }
    .expect("write ICMPv6 frame");
    out
}

/// A Neighbor Solicitation.
pub fn ns(
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    options: &[&[u8]],
    vlan: Option<u16>,
) -> Vec<u8> {
    icmpv6(
        eth_src,
        eth_dst,
        src,
        dst,
        255,
        Icmpv6Type::NeighborSolicitation,
        &nd_body(target, options),
        vlan,
    )
}

/// A Neighbor Advertisement with a target link-layer address option.
#[allow(clippy::too_many_arguments)]
pub fn na(
    eth_src: [u8; 6],
    eth_dst: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    solicited: bool,
    r#override: bool,
    vlan: Option<u16>,
) -> Vec<u8> {
    icmpv6(
        eth_src,
        eth_dst,
        src,
        dst,
        255,
        Icmpv6Type::NeighborAdvertisement(NeighborAdvertisementHeader {
            router: false,
            solicited,
            r#override,
        }),
        &nd_body(target, &[&ll_option(2, eth_src)]),
        vlan,
    )
}

/// The solicited-node multicast group of `addr` and its Ethernet address.
pub fn solicited_node(addr: Ipv6Addr) -> (Ipv6Addr, [u8; 6]) {
    let o = addr.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | o[13] as u16,
        u16::from_be_bytes([o[14], o[15]]),
    );
    (group, [0x33, 0x33, 0xff, o[13], o[14], o[15]])
}

/// Hex dump for assertion messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|line| {
            line.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asks who has `vip` every 5 ms from `asker` while `during` runs: each answer's MAC
/// (`None`: unanswered within 1 s), and what `during` returned. The asking stops when
/// `during` returns or panics (the scope would wait for it forever otherwise).
pub fn answers_while<R>(
    asker: &ArpAsker,
    vip: Ipv4Addr,
    during: impl FnOnce() -> R,
) -> (Vec<Option<[u8; 6]>>, R) {
    use std::sync::atomic::{AtomicBool, Ordering};
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let client = scope.spawn(|| {
            let mut answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let answer = asker.ask_mac(vip, std::time::Duration::from_secs(1));
                answers.push(answer.expect("ask"));
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            answers
        });
        let stopper = StopOnDrop(&stop);
        let result = during();
        drop(stopper);
        (client.join().expect("client thread"), result)
    })
}

/// That more than 50 requests were asked and every one was answered, by `owner`;
/// otherwise a panic with the counts and `logs`.
pub fn assert_every_answer_from(answers: &[Option<[u8; 6]>], owner: [u8; 6], logs: &str) {
    let unanswered = answers.iter().filter(|a| a.is_none()).count();
    let others = answers
        .iter()
        .filter(|a| a.is_some_and(|mac| mac != owner))
        .count();
    assert!(answers.len() > 50, "{} requests", answers.len());
    assert_eq!(
        (unanswered, others),
        (0, 0),
        "of {} requests: unanswered, answered by another node\n{logs}",
        answers.len(),
    );
}

/// Asks for one IPv4 address over ARP from inside a namespace, one request at a time:
/// a raw AF_PACKET socket, so requests can go out every few milliseconds (arping sends
/// at most one a second).
pub struct ArpAsker {
    socket: std::os::fd::OwnedFd,
    ifindex: u32,
    mac: [u8; 6],
    ip: Ipv4Addr,
}

impl ArpAsker {
    /// Asks as the lab's client: from its interface, MAC and IPv4 address.
    pub fn for_client(lab: &metallb_testkit::lab::Lab) -> std::io::Result<Self> {
        Self::new(
            &lab.client_ns,
            lab.client_if,
            lab.client_mac.0,
            metallb_testkit::lab::Lab::CLIENT_V4,
        )
    }

    /// Asks as the client of a [`metallb_testkit::cluster::ClusterLab`].
    pub fn for_cluster_client(lab: &metallb_testkit::cluster::ClusterLab) -> std::io::Result<Self> {
        Self::new(
            &lab.client_ns,
            metallb_testkit::cluster::CLIENT_IF,
            lab.client_mac.0,
            metallb_testkit::cluster::ClusterLab::CLIENT_V4,
        )
    }

    /// Opens the socket on `ifname` in namespace `ns` (the socket stays in it).
    fn new(ns: &str, ifname: &str, mac: [u8; 6], ip: Ipv4Addr) -> std::io::Result<Self> {
        let _netns = metallb_testkit::lab::NetnsGuard::enter(ns)?;
        let ifindex = nix::net::if_::if_nametoindex(ifname)?;
        let socket =
            metallb_testkit::traffic::arp_packet_socket(ifname).map_err(std::io::Error::other)?;
        Ok(Self {
            socket,
            ifindex,
            mac,
            ip,
        })
    }

    /// Sends one request for `target` and waits up to `timeout` for its reply.
    pub fn ask(&self, target: Ipv4Addr, timeout: std::time::Duration) -> std::io::Result<bool> {
        Ok(self.ask_mac(target, timeout)?.is_some())
    }

    /// Sends one request for `target` and waits up to `timeout` for its reply: the
    /// MAC the reply gives for `target` (its sender hardware address).
    pub fn ask_mac(
        &self,
        target: Ipv4Addr,
        timeout: std::time::Duration,
    ) -> std::io::Result<Option<[u8; 6]>> {
        self.send_request(target, self.mac)?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.next_reply(left)? {
                Some(reply) if reply.sender_ip == target => return Ok(Some(reply.sender_mac)),
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    /// Sends one request for `target` from `sender_mac` (Ethernet source and
    /// `ar$sha`, where the reply goes) and this asker's address.
    pub fn send_request(&self, target: Ipv4Addr, sender_mac: [u8; 6]) -> std::io::Result<()> {
        use std::os::fd::AsRawFd as _;
        let frame = arp(
            ArpOperation::REQUEST,
            sender_mac,
            BROADCAST,
            (sender_mac, self.ip),
            ([0; 6], target),
            None,
        );
        // SAFETY: sockaddr_ll is plain data.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = self.ifindex as i32;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&BROADCAST);
        // SAFETY: valid socket, buffer and address.
        let sent = unsafe {
            libc::sendto(
                self.socket.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const to).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if sent < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next ARP reply to this asker's address seen within `timeout` (other frames
    /// are skipped).
    pub fn next_reply(&self, timeout: std::time::Duration) -> std::io::Result<Option<ArpReply>> {
        use std::os::fd::AsRawFd as _;
        let fd = self.socket.as_raw_fd();
        let deadline = std::time::Instant::now() + timeout;
        let mut buffer = [0u8; 1600];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let mut poll = [libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            }];
            // Past the deadline, still one look without waiting: a reply that came
            // while this thread was not running (a loaded machine) counts.
            let wait = if left.is_zero() {
                0
            } else {
                left.as_millis().max(1) as i32
            };
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(poll.as_mut_ptr(), 1, wait) };
            if ready <= 0 {
                if left.is_zero() {
                    return Ok(None);
                }
                continue;
            }
            // SAFETY: valid socket and buffer.
            let n = unsafe {
                libc::recv(
                    fd,
                    buffer.as_mut_ptr().cast(),
                    buffer.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 42 {
                continue;
            }
            let reply = &buffer[..n as usize];
            // A reply (oper 2) to us.
            if reply[12..14] == [0x08, 0x06]
                && reply[20..22] == [0, 2]
                && reply[38..42] == self.ip.octets()
            {
                let mac = |at: usize| -> [u8; 6] { reply[at..at + 6].try_into().expect("6 bytes") };
                return Ok(Some(ArpReply {
                    sender_mac: mac(22),
                    sender_ip: Ipv4Addr::new(reply[28], reply[29], reply[30], reply[31]),
                    target_mac: mac(32),
                }));
            }
        }
    }

    /// Lets the kernel queue up to `bytes` of frames for this socket (a client that
    /// sends thousands of requests a second reads the replies in another thread).
    pub fn set_receive_buffer(&self, bytes: usize) -> std::io::Result<()> {
        use std::os::fd::AsRawFd as _;
        let size = bytes as libc::c_int;
        // SAFETY: valid socket, an int option.
        let rc = unsafe {
            libc::setsockopt(
                self.socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&raw const size).cast(),
                size_of::<libc::c_int>() as u32,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// An ARP reply as [`ArpAsker::next_reply`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpReply {
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    /// Where the reply went: the request's `ar$sha`.
    pub target_mac: [u8; 6],
}

/// What `metallb inspect --output json` prints for the datapath pinned at `pin_dir`,
/// run in the network namespace `ns`; it must succeed.
pub fn inspect_json(ns: &str, pin_dir: &std::path::Path) -> serde_json::Value {
    let out = metallb_testkit::lab::command_in(ns, env!("CARGO_BIN_EXE_metallb"))
        .args(["inspect", "--output", "json", "--pin-dir"])
        .arg(pin_dir)
        .output()
        .expect("inspect");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}
