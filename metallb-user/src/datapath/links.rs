//! Link events from rtnetlink (the `RTNLGRP_LINK` group): an interface created,
//! deleted, brought up or down, or given another MAC. The speaker reads its interfaces
//! again on each, so that an interface re-created under a new ifindex is attached
//! again and the MAC in the cells follows the interface, without waiting for a
//! configuration change. Acts in the network namespace of the thread that opens it.

use std::io;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkFlags, LinkMessage},
};
use netlink_sys::{AsyncSocket as _, AsyncSocketExt as _, SocketAddr, TokioSocket, protocols};

use super::iface::MacAddr;

/// What the kernel said about one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkEvent {
    /// `false`: the interface was deleted.
    pub exists: bool,
    pub ifindex: u32,
    pub name: Option<String>,
    pub mac: Option<MacAddr>,
    pub up: bool,
}

/// A netlink socket subscribed to link events.
pub struct LinkEvents {
    socket: TokioSocket,
    buffer: Vec<u8>,
}

impl LinkEvents {
    /// Subscribes to the link events of the calling thread's network namespace. Needs
    /// a Tokio runtime.
    pub fn open() -> io::Result<Self> {
        let mut socket = TokioSocket::new(protocols::NETLINK_ROUTE)?;
        socket
            .socket_mut()
            .bind(&SocketAddr::new(0, libc::RTMGRP_LINK as u32))?;
        // Room for the burst of a few hundred interfaces changing at once; past it the
        // kernel says ENOBUFS and the caller reads everything again anyway.
        socket.socket_ref().set_rx_buf_sz(1 << 20)?;
        Ok(Self {
            socket,
            buffer: Vec::with_capacity(1 << 16),
        })
    }

    /// The events of the next datagram. An error (`ENOBUFS`: the kernel dropped
    /// events) leaves the socket usable; the caller reads the interfaces again in full,
    /// as it does on every event.
    pub async fn next(&mut self) -> io::Result<Vec<LinkEvent>> {
        self.buffer.clear();
        self.socket.recv_from(&mut self.buffer).await?;
        Ok(parse(&self.buffer))
    }
}

/// The link messages in one netlink datagram; anything else (or undecodable) is
/// skipped: the event only prompts a full read of the interfaces.
pub fn parse(mut bytes: &[u8]) -> Vec<LinkEvent> {
    let mut events = Vec::new();
    while !bytes.is_empty() {
        let Ok(message) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) else {
            break;
        };
        let length = message.header.length as usize;
        match message.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                events.push(event(&link, true));
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) => {
                events.push(event(&link, false));
            }
            _ => {}
        }
        // Messages are aligned to 4 bytes.
        let advance = length.div_ceil(4) * 4;
        if length == 0 || advance > bytes.len() {
            break;
        }
        bytes = &bytes[advance..];
    }
    events
}

fn event(link: &LinkMessage, exists: bool) -> LinkEvent {
    let mut name = None;
    let mut mac = None;
    for attribute in &link.attributes {
        match attribute {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Address(bytes) => {
                mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(MacAddr);
            }
            _ => {}
        }
    }
    LinkEvent {
        exists,
        ifindex: link.header.index,
        name,
        mac,
        up: link.header.flags.contains(LinkFlags::Up),
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage};

    use super::*;

    fn message(new: bool, index: u32, name: &str, mac: [u8; 6], up: bool) -> Vec<u8> {
        let mut link = LinkMessage::default();
        link.header.index = index;
        if up {
            link.header.flags = LinkFlags::Up;
        }
        link.attributes = vec![
            LinkAttribute::IfName(name.into()),
            LinkAttribute::Address(mac.to_vec()),
        ];
        let inner = if new {
            RouteNetlinkMessage::NewLink(link)
        } else {
            RouteNetlinkMessage::DelLink(link)
        };
        let mut message = NetlinkMessage::new(NetlinkHeader::default(), inner.into());
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        bytes
    }

    #[test]
    fn every_link_message_of_a_datagram_is_read() {
        let mac = [2, 0, 0, 0, 1, 1];
        let mut datagram = message(true, 7, "eth0", mac, true);
        datagram.extend(message(false, 8, "eth1.100", mac, false));
        assert_eq!(
            parse(&datagram),
            [
                LinkEvent {
                    exists: true,
                    ifindex: 7,
                    name: Some("eth0".into()),
                    mac: Some(MacAddr(mac)),
                    up: true,
                },
                LinkEvent {
                    exists: false,
                    ifindex: 8,
                    name: Some("eth1.100".into()),
                    mac: Some(MacAddr(mac)),
                    up: false,
                },
            ]
        );
        // Cut short: what is whole is read, the rest ignored, no panic.
        for cut in 0..datagram.len() {
            assert!(parse(&datagram[..cut]).len() <= 2);
        }
    }
}
