//! Where the speakers are, as the source tells: in Kubernetes mode the speaker Pods
//! (the node each runs on and its `status.podIP`, as MetalLB's memberlist joins them),
//! in standalone mode the InternalIP of the file's Nodes. Pure: objects in, addresses
//! out; the membership task asks them to let this node in.

use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{Node, Pod};

/// One speaker: the node it speaks for and the address it is reached at.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SpeakerAddress {
    pub node: String,
    pub ip: IpAddr,
}

/// The speaker Pods that run somewhere: scheduled (`spec.nodeName`, the member's
/// name in the election), with an IP (`status.podIP`; with hostNetwork, as deployed,
/// the node's address), not finished. Ready or not: a speaker becomes Ready only once
/// it has synced, and its membership runs before that. Sorted, once each.
pub fn from_pods(pods: &[Pod]) -> Vec<SpeakerAddress> {
    let mut speakers: Vec<SpeakerAddress> = pods
        .iter()
        .filter_map(|pod| {
            let status = pod.status.as_ref()?;
            if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
                return None;
            }
            let node = pod.spec.as_ref()?.node_name.clone()?;
            let ip = status.pod_ip.as_deref()?.parse().ok()?;
            Some(SpeakerAddress { node, ip })
        })
        .collect();
    speakers.sort();
    speakers.dedup();
    speakers
}

/// The file's Nodes with an InternalIP (the first), sorted.
pub fn from_nodes(nodes: &[Node]) -> Vec<SpeakerAddress> {
    let mut speakers: Vec<SpeakerAddress> = nodes
        .iter()
        .filter_map(|node| {
            let ip = node
                .status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .find(|a| a.type_ == "InternalIP")?
                .address
                .parse()
                .ok()?;
            Some(SpeakerAddress {
                node: node.metadata.name.clone()?,
                ip,
            })
        })
        .collect();
    speakers.sort();
    speakers
}

/// Their membership addresses, on `port`.
pub fn addresses(speakers: &[SpeakerAddress], port: u16) -> Vec<SocketAddr> {
    speakers
        .iter()
        .map(|s| SocketAddr::new(s.ip, port))
        .collect()
}

/// The address of `node`'s speaker (the first, should a node have several).
pub fn address_of(speakers: &[SpeakerAddress], node: &str) -> Option<IpAddr> {
    speakers.iter().find(|s| s.node == node).map(|s| s.ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: Option<&str>, ip: Option<&str>, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "metallb-system"},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": phase, "podIP": ip},
        }))
        .expect("pod")
    }

    fn speaker(node: &str, ip: &str) -> SpeakerAddress {
        SpeakerAddress {
            node: node.into(),
            ip: ip.parse().unwrap(),
        }
    }

    #[test]
    fn speaker_pods_with_a_node_and_an_address_are_the_peers() {
        let pods = [
            pod("speaker-c", Some("node-c"), Some("192.0.2.13"), "Running"),
            pod("speaker-a", Some("node-a"), Some("192.0.2.11"), "Running"),
            // Scheduled, no address yet: not reachable.
            pod("speaker-b", Some("node-b"), None, "Pending"),
            // Not scheduled.
            pod("speaker-x", None, Some("192.0.2.99"), "Pending"),
            // Finished: the node's next speaker Pod takes over its name.
            pod("speaker-old", Some("node-d"), Some("192.0.2.14"), "Failed"),
            pod("speaker-d", Some("node-d"), Some("2001:db8::14"), "Running"),
            // Not an address.
            pod("speaker-e", Some("node-e"), Some("not-an-ip"), "Running"),
        ];
        let speakers = from_pods(&pods);
        assert_eq!(
            speakers,
            [
                speaker("node-a", "192.0.2.11"),
                speaker("node-c", "192.0.2.13"),
                speaker("node-d", "2001:db8::14"),
            ]
        );
        assert_eq!(
            addresses(&speakers, 7946),
            [
                "192.0.2.11:7946".parse::<SocketAddr>().unwrap(),
                "192.0.2.13:7946".parse().unwrap(),
                "[2001:db8::14]:7946".parse().unwrap(),
            ]
        );
        assert_eq!(
            address_of(&speakers, "node-c"),
            Some("192.0.2.13".parse().unwrap())
        );
        assert_eq!(address_of(&speakers, "node-b"), None);
        // A Pod that goes away takes its peer with it.
        assert_eq!(from_pods(&pods[..1]), [speaker("node-c", "192.0.2.13")],);
        assert_eq!(from_pods(&[]), []);
    }

    #[test]
    fn nodes_with_an_internal_ip_are_the_peers() {
        let nodes: Vec<Node> = serde_json::from_value(json!([
            {"metadata": {"name": "node-b"}, "status": {"addresses": [
                {"type": "Hostname", "address": "b"}, {"type": "InternalIP", "address": "192.0.2.12"}]}},
            {"metadata": {"name": "node-a"}, "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.11"}]}},
            {"metadata": {"name": "node-c"}},
        ]))
        .expect("nodes");
        assert_eq!(
            from_nodes(&nodes),
            [
                speaker("node-a", "192.0.2.11"),
                speaker("node-b", "192.0.2.12")
            ]
        );
    }
}
