//! Which node announces each service's addresses, and on which interfaces: MetalLB's
//! layer-2 election. Pure and stateless: every node computes the same answer from the
//! same inputs, with no coordination.
//!
//! Candidates are the nodes that an L2Advertisement of the service's pool lets announce
//! (its `nodeSelectors`), minus nodes excluded from load balancers or without network.
//! They are ordered by the summed weights of the advertisements' `preferredNodeSelectors`
//! (highest first), then by `sha256(node + "#" + first IP)`; the first one announces.
//!
//! As in MetalLB's speaker, a service without a serving endpoint is not announced, and
//! one with `externalTrafficPolicy: Local` only from the nodes that have a serving
//! endpoint of it (from its EndpointSlices). Only nodes whose speaker is alive count.
//! A file need not carry EndpointSlices or say which speakers live: with
//! [`EndpointRule::AssumeServing`], a service without EndpointSlices counts as served
//! on every node, and without [`ElectionContext::live_nodes`] every node of the
//! configuration counts as alive.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    num::NonZeroUsize,
    sync::atomic::{AtomicUsize, Ordering},
};

use k8s_openapi::api::{
    core::v1::Node,
    discovery::v1::{EndpointConditions, EndpointSlice},
};
use sha2::{Digest, Sha256};

use crate::{
    allocator::{Decision, ServiceKey},
    config::{Config, L2Advertisement, Labels, Service, selector::any_matches},
};

/// Nodes with this label never announce (the Kubernetes convention).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// The label of an EndpointSlice naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// How a service that has no EndpointSlice counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EndpointRule {
    /// As served on every node: a standalone file need not list endpoints.
    #[default]
    AssumeServing,
    /// As having no endpoint (the Kubernetes API lists every slice there is).
    Observed,
}

/// What the election knows besides the configuration, and on how many threads it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElectionContext {
    /// The nodes whose speaker is alive; `None`: every node of the configuration.
    pub live_nodes: Option<BTreeSet<String>>,
    pub endpoints: EndpointRule,
    pub threads: Threads,
}

/// On how many threads an election (and a ranking, [`Polls::rank`]) runs: by default
/// every CPU this process may use, for the parts of it that cost at least
/// [`PARALLEL_HASHES`] hashes (a smaller part does not pay for a thread). The outcome
/// is the same on any number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Threads {
    count: Option<NonZeroUsize>,
    from_hashes: usize,
}

impl Default for Threads {
    fn default() -> Self {
        Self {
            count: None,
            from_hashes: PARALLEL_HASHES,
        }
    }
}

impl Threads {
    /// Exactly `count` threads (one if 0).
    pub fn exactly(count: usize) -> Self {
        Self {
            count: Some(NonZeroUsize::new(count).unwrap_or(NonZeroUsize::MIN)),
            ..Self::default()
        }
    }

    /// Several threads for the parts of an election that cost at least `hashes`
    /// hashes, instead of [`PARALLEL_HASHES`] (0: every part, however small).
    pub fn from_hashes(self, hashes: usize) -> Self {
        Self {
            from_hashes: hashes,
            ..self
        }
    }

    /// How many: as set, or every CPU this process may use.
    pub fn count(self) -> usize {
        self.count
            .or_else(|| std::thread::available_parallelism().ok())
            .map_or(1, NonZeroUsize::get)
    }
}

/// The interfaces an announcement is made on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Interfaces {
    All,
    Only(BTreeSet<String>),
}

impl Interfaces {
    pub fn includes(&self, name: &str) -> bool {
        match self {
            Interfaces::All => true,
            Interfaces::Only(names) => names.contains(name),
        }
    }
}

/// The election for one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Election {
    /// `owner` announces `ips` on `interfaces`; `candidates` in election order (the
    /// owner first), the first [`LISTED_CANDIDATES`] of them.
    Announced {
        ips: Vec<IpAddr>,
        owner: String,
        candidates: Vec<String>,
        interfaces: Interfaces,
    },
    /// Nobody announces the service over layer 2, and why.
    NotAnnounced { ips: Vec<IpAddr>, reason: String },
}

/// A node as the election sees it.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) labels: Labels,
}

pub(crate) fn members(config: &Config, this_node: &str, context: &ElectionContext) -> Vec<Member> {
    if config.nodes.is_empty() {
        // Standalone on one machine: this node is the only one, without labels.
        return vec![Member {
            name: this_node.into(),
            labels: Labels::new(),
        }];
    }
    config
        .nodes
        .iter()
        .filter(|node| is_usable(node))
        .filter(|node| {
            context
                .live_nodes
                .as_ref()
                .is_none_or(|live| live.contains(node.metadata.name.as_deref().unwrap_or_default()))
        })
        .map(member)
        .collect()
}

/// MetalLB's rule: an endpoint serves when it is ready (or its readiness is unknown),
/// or when it is still serving (terminating gracefully).
fn can_serve(conditions: Option<&EndpointConditions>) -> bool {
    let Some(conditions) = conditions else {
        return true;
    };
    conditions.ready.is_none_or(|ready| ready) || conditions.serving == Some(true)
}

/// Where a service's endpoints serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Serving {
    /// Assumed on every node (no EndpointSlice, [`EndpointRule::AssumeServing`]).
    Everywhere,
    /// On these nodes (an endpoint without a node serves, but from no node).
    Somewhere { any: bool, nodes: BTreeSet<String> },
}

/// The EndpointSlices of some services, by the service they belong to.
pub type SlicesByService<'a> = BTreeMap<ServiceKey, Vec<&'a EndpointSlice>>;

/// The Service an EndpointSlice belongs to: the one its `kubernetes.io/service-name`
/// label names, in its namespace (`default` when it has none); `None` without the label.
pub fn owner_of(slice: &EndpointSlice) -> Option<ServiceKey> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    let namespace = slice
        .metadata
        .namespace
        .clone()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "default".into());
    Some(ServiceKey {
        namespace,
        name: name.clone(),
    })
}

/// The EndpointSlices of every service of `config`, by the service they belong to
/// ([`owner_of`]): made once per plan, for the ballots and the replan's digests.
pub fn slices_by_service(config: &Config) -> SlicesByService<'_> {
    let mut out: SlicesByService<'_> = BTreeMap::new();
    for slice in &config.endpoint_slices {
        if let Some(owner) = owner_of(slice) {
            out.entry(owner).or_default().push(slice);
        }
    }
    out
}

/// [`slices_by_service`] of the services of `keys` (namespace, name) alone: one pass
/// over the slices that makes no key for the others.
pub fn slices_of<'a>(config: &'a Config, keys: &BTreeSet<(&str, &str)>) -> SlicesByService<'a> {
    let mut out: SlicesByService<'a> = BTreeMap::new();
    if keys.is_empty() {
        return out;
    }
    for slice in &config.endpoint_slices {
        let Some(name) = (slice.metadata.labels.as_ref()).and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        let namespace = (slice.metadata.namespace.as_deref())
            .filter(|ns| !ns.is_empty())
            .unwrap_or("default");
        if keys.contains(&(namespace, name.as_str())) {
            out.entry(ServiceKey {
                namespace: namespace.into(),
                name: name.clone(),
            })
            .or_default()
            .push(slice);
        }
    }
    out
}

pub(crate) fn serving(slices: Option<&Vec<&EndpointSlice>>, rule: EndpointRule) -> Serving {
    if slices.is_none() && rule == EndpointRule::AssumeServing {
        return Serving::Everywhere;
    }
    let mut any = false;
    let mut nodes = BTreeSet::new();
    for slice in slices.into_iter().flatten() {
        for endpoint in slice.endpoints.iter().flatten() {
            if can_serve(endpoint.conditions.as_ref()) {
                any = true;
                if let Some(node) = &endpoint.node_name {
                    nodes.insert(node.clone());
                }
            }
        }
    }
    Serving::Somewhere { any, nodes }
}

pub(crate) fn local_traffic(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.external_traffic_policy.as_deref())
        == Some("Local")
}

fn member(node: &Node) -> Member {
    Member {
        name: node.metadata.name.clone().unwrap_or_default(),
        labels: node.metadata.labels.clone().unwrap_or_default(),
    }
}

/// What a plan uses of `node`: its name and labels (the candidates, the node
/// selectors, the interfaces this node attaches), the type and status of its
/// conditions ([`is_usable`]) and its addresses; not what changes at every status
/// report (heartbeat times, images, capacity), which a plan never reads. A source
/// that hands this instead of the Node gives the same plans, and a snapshot that
/// differs from the last only in those parts is the same configuration.
pub fn planned_part(node: &Node) -> Node {
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};
    let status = node.status.as_ref().map(|status| NodeStatus {
        conditions: status.conditions.as_ref().map(|conditions| {
            conditions
                .iter()
                .map(|c| NodeCondition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    ..NodeCondition::default()
                })
                .collect()
        }),
        addresses: status.addresses.clone(),
        ..NodeStatus::default()
    });
    Node {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: node.metadata.name.clone(),
            labels: node.metadata.labels.clone(),
            ..Default::default()
        },
        spec: None,
        status,
    }
}

/// Not excluded from load balancers, and not `NetworkUnavailable`.
pub(crate) fn is_usable(node: &Node) -> bool {
    let labels = node.metadata.labels.as_ref();
    if labels.is_some_and(|l| l.contains_key(EXCLUDE_LABEL)) {
        return false;
    }
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    !conditions.is_some_and(|c| {
        c.iter()
            .any(|c| c.type_ == "NetworkUnavailable" && c.status == "True")
    })
}

fn service_labels(service: &Service) -> Labels {
    service.metadata.labels.clone().unwrap_or_default()
}

fn shares_ip(service: &Service) -> bool {
    let annotations = &service.metadata.annotations;
    annotations.contains_key("metallb.io/allow-shared-ip")
        || annotations.contains_key("metallb.universe.tf/allow-shared-ip")
}

/// The indices (in `config.l2_advertisements`) of the advertisements that announce
/// `service` from `pool`.
fn advertisements_for(config: &Config, pool: &str, service: &Service) -> Vec<usize> {
    let labels = service_labels(service);
    config
        .l2_advertisements
        .iter()
        .enumerate()
        .filter(|(_, adv)| adv.pools.contains(pool))
        .filter(|(_, adv)| {
            adv.service_selectors.is_empty() || any_matches(&adv.service_selectors, &labels)
        })
        .map(|(index, _)| index)
        .collect()
}

/// How many candidates an election lists, in election order (the owner first): the
/// failover order, bounded so that thousands of nodes times thousands of services stay
/// small (5,000 nodes would otherwise list 5,000 names for every service).
pub const LISTED_CANDIDATES: usize = 16;

/// The members a set of advertisements lets announce, with their summed preference
/// weights: the same for every service announced by the same advertisements, so
/// computed once per set.
struct Eligible {
    /// (index in the members, score).
    members: Vec<(usize, i64)>,
}

fn eligible(members: &[Member], ads: &[&L2Advertisement]) -> Eligible {
    let members = members
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            ads.iter()
                .any(|a| a.node_selectors.is_empty() || any_matches(&a.node_selectors, &n.labels))
        })
        .map(|(index, node)| {
            let score: i64 = ads
                .iter()
                .flat_map(|a| &a.preferred_nodes)
                .filter(|(_, selector)| selector.matches(&node.labels))
                .map(|(weight, _)| i64::from(*weight))
                .sum();
            (index, score)
        })
        .collect();
    Eligible { members }
}

/// `sha256(node + "#" + ip)` for one node and any IP, as the digest's big-endian words
/// (ordered as its bytes are). What fits one SHA-256 block (up to 55 bytes, every
/// IPv4 address after a name of up to 40 bytes) is one compression of a block prepared
/// once per node; longer messages take the general way.
struct NodeHash {
    /// The name and "#", followed by zeroes.
    block: [u8; 64],
    prefix_len: usize,
}

/// SHA-256's initial state.
const SHA256_INIT: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
/// The most message bytes one block holds beside the padding's 0x80 and length.
const ONE_BLOCK: usize = 55;

impl NodeHash {
    fn new(node: &str) -> Self {
        let mut block = [0; 64];
        let prefix_len = node.len() + 1;
        if prefix_len <= ONE_BLOCK {
            block[..node.len()].copy_from_slice(node.as_bytes());
            block[node.len()] = b'#';
        }
        NodeHash { block, prefix_len }
    }

    /// Writes the one block of `node + "#" + ip`, padded, into `block`, if it fits
    /// one (written where it is read from: no copy of it to wait for).
    fn block(&self, ip: &[u8], block: &mut [u8; 64]) -> bool {
        let len = self.prefix_len + ip.len();
        if len > ONE_BLOCK {
            return false;
        }
        *block = self.block;
        block[self.prefix_len..len].copy_from_slice(ip);
        block[len] = 0x80;
        block[56..].copy_from_slice(&(len as u64 * 8).to_be_bytes());
        true
    }

    fn with(&self, node: &str, ip: &[u8]) -> [u32; 8] {
        let mut block = [0; 64];
        if self.block(ip, &mut block) {
            let mut state = SHA256_INIT;
            sha2::block_api::compress256(&mut state, &[block]);
            return state;
        }
        let digest = Sha256::new()
            .chain_update(node.as_bytes())
            .chain_update(b"#")
            .chain_update(ip)
            .finalize();
        std::array::from_fn(|i| {
            u32::from_be_bytes([
                digest[4 * i],
                digest[4 * i + 1],
                digest[4 * i + 2],
                digest[4 * i + 3],
            ])
        })
    }
}

/// Writes each rank's hash: `sha256(node + "#" + ip)` of its node. Sixteen one-block
/// messages at a time in the lanes of AVX-512 registers where the CPU has them
/// ([`lanes`]: about 4 times the throughput of SHA-NI's one block at a time on an
/// Intel Xeon), one at a time otherwise.
fn hash_all(ranks: &mut [Rank], ip: &[u8], nodes: &[Member], hashes: &[NodeHash]) {
    #[cfg(target_arch = "x86_64")]
    if lanes::available() {
        let mut blocks = [[0; 64]; lanes::LANES];
        // Where each block's rank is.
        let mut of = [0; lanes::LANES];
        let mut filled = 0;
        let flush = |blocks: &[[u8; 64]; lanes::LANES], of: &[usize], ranks: &mut [Rank]| {
            match lanes::digests(blocks) {
                Some(digests) => {
                    for (&at, digest) in of.iter().zip(digests) {
                        ranks[at].1 = digest;
                    }
                }
                // Not reached (the lanes were available above); never a zero hash.
                None => {
                    for &at in of {
                        let index = ranks[at].2;
                        ranks[at].1 = hashes[index].with(&nodes[index].name, ip);
                    }
                }
            }
        };
        for at in 0..ranks.len() {
            let index = ranks[at].2;
            if !hashes[index].block(ip, &mut blocks[filled]) {
                ranks[at].1 = hashes[index].with(&nodes[index].name, ip);
                continue;
            }
            of[filled] = at;
            filled += 1;
            if filled == lanes::LANES {
                flush(&blocks, &of, ranks);
                filled = 0;
            }
        }
        // Sixteen lanes cost about four blocks one at a time: a few left go that way.
        if filled >= lanes::LANES / 4 {
            flush(&blocks, &of[..filled], ranks);
        } else {
            for &at in &of[..filled] {
                let index = ranks[at].2;
                ranks[at].1 = hashes[index].with(&nodes[index].name, ip);
            }
        }
        return;
    }
    for (_, hash, index) in ranks {
        *hash = hashes[*index].with(&nodes[*index].name, ip);
    }
}

/// SHA-256 of sixteen one-block messages at once, in the lanes of AVX-512 registers.
#[cfg(target_arch = "x86_64")]
mod lanes {
    use std::arch::x86_64::{
        __m512i, _mm512_add_epi32, _mm512_i32gather_epi32, _mm512_ror_epi32, _mm512_set1_epi32,
        _mm512_setr_epi32, _mm512_shuffle_epi8, _mm512_srli_epi32, _mm512_storeu_si512,
        _mm512_ternarylogic_epi32,
    };

    use super::SHA256_INIT;

    pub(super) const LANES: usize = 16;

    /// SHA-256's round constants.
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// Whether this CPU runs [`digests`].
    pub(super) fn available() -> bool {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw")
    }

    /// The digests (as big-endian words) of 16 messages of one block each, given as
    /// their blocks (padded, their length written); `None` without AVX-512.
    pub(super) fn digests(blocks: &[[u8; 64]; LANES]) -> Option<[[u32; 8]; LANES]> {
        if !available() {
            return None;
        }
        // SAFETY: the CPU has AVX-512F and AVX-512BW, checked above.
        let state = unsafe { compress(blocks) };
        Some(std::array::from_fn(|lane| {
            std::array::from_fn(|word| state[word][lane])
        }))
    }

    /// The compression of the blocks from SHA-256's initial state, by word and lane.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn compress(blocks: &[[u8; 64]; LANES]) -> [[u32; LANES]; 8] {
        // Word t of every block: lane l at byte offset 64 l + 4 t, big-endian.
        let lanes = _mm512_setr_epi32(
            0, 64, 128, 192, 256, 320, 384, 448, 512, 576, 640, 704, 768, 832, 896, 960,
        );
        let swap = _mm512_setr_epi32(
            0x00010203, 0x04050607, 0x08090a0b, 0x0c0d0e0f, 0x00010203, 0x04050607, 0x08090a0b,
            0x0c0d0e0f, 0x00010203, 0x04050607, 0x08090a0b, 0x0c0d0e0f, 0x00010203, 0x04050607,
            0x08090a0b, 0x0c0d0e0f,
        );
        let base: *const i32 = blocks.as_ptr().cast();
        let mut w: [__m512i; 16] = std::array::from_fn(|t| {
            let offsets = _mm512_add_epi32(lanes, _mm512_set1_epi32(4 * t as i32));
            // SAFETY: every offset is inside `blocks` (16 x 64 bytes), 4 bytes read.
            let words = unsafe { _mm512_i32gather_epi32::<1>(offsets, base) };
            _mm512_shuffle_epi8(words, swap)
        });
        let init: [__m512i; 8] = std::array::from_fn(|i| _mm512_set1_epi32(SHA256_INIT[i] as i32));
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = init;
        for (t, k) in K.iter().enumerate() {
            let wt = if t < 16 {
                w[t]
            } else {
                let (w15, w2) = (w[(t + 1) % 16], w[(t + 14) % 16]);
                let s0 = _mm512_ternarylogic_epi32::<0x96>(
                    _mm512_ror_epi32::<7>(w15),
                    _mm512_ror_epi32::<18>(w15),
                    _mm512_srli_epi32::<3>(w15),
                );
                let s1 = _mm512_ternarylogic_epi32::<0x96>(
                    _mm512_ror_epi32::<17>(w2),
                    _mm512_ror_epi32::<19>(w2),
                    _mm512_srli_epi32::<10>(w2),
                );
                let next = _mm512_add_epi32(
                    _mm512_add_epi32(w[t % 16], s0),
                    _mm512_add_epi32(w[(t + 9) % 16], s1),
                );
                w[t % 16] = next;
                next
            };
            let s1 = _mm512_ternarylogic_epi32::<0x96>(
                _mm512_ror_epi32::<6>(e),
                _mm512_ror_epi32::<11>(e),
                _mm512_ror_epi32::<25>(e),
            );
            // Ch(e, f, g) and Maj(a, b, c) as truth tables.
            let ch = _mm512_ternarylogic_epi32::<0xca>(e, f, g);
            let kw = _mm512_add_epi32(wt, _mm512_set1_epi32(*k as i32));
            let t1 = _mm512_add_epi32(_mm512_add_epi32(h, s1), _mm512_add_epi32(ch, kw));
            let s0 = _mm512_ternarylogic_epi32::<0x96>(
                _mm512_ror_epi32::<2>(a),
                _mm512_ror_epi32::<13>(a),
                _mm512_ror_epi32::<22>(a),
            );
            let maj = _mm512_ternarylogic_epi32::<0xe8>(a, b, c);
            (h, g, f, e) = (g, f, e, _mm512_add_epi32(d, t1));
            (d, c, b, a) = (c, b, a, _mm512_add_epi32(t1, _mm512_add_epi32(s0, maj)));
        }
        let mut state = [[0; LANES]; 8];
        for (out, (word, init)) in state
            .iter_mut()
            .zip([a, b, c, d, e, f, g, h].into_iter().zip(init))
        {
            // SAFETY: `out` is 16 u32, the 64 bytes written.
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), _mm512_add_epi32(word, init)) };
        }
        state
    }
}

/// A candidate's place in MetalLB's order: summed preference weight (highest first),
/// then `sha256(node + "#" + first IP)` (lowest first).
type Rank = (std::cmp::Reverse<i64>, [u32; 8], usize);

/// MetalLB's order, cut to the first `cut`: every node is hashed once, then the first
/// ones are selected and sorted. Returns member indices, the owner first, and how many
/// candidates there were in all.
fn order(
    candidates: impl Iterator<Item = (usize, i64)>,
    first_ip: &[u8],
    nodes: &[Member],
    hashes: &[NodeHash],
    ranks: &mut Vec<Rank>,
    cut: usize,
) -> (Vec<usize>, usize) {
    ranks.clear();
    ranks.extend(candidates.map(|(index, score)| (std::cmp::Reverse(score), [0; 8], index)));
    hash_all(ranks, first_ip, nodes, hashes);
    let all = ranks.len();
    if all > cut {
        ranks.select_nth_unstable(cut - 1);
        ranks.truncate(cut);
    }
    ranks.sort_unstable();
    (ranks.iter().map(|(_, _, index)| *index).collect(), all)
}

/// How many candidates a service's ranking keeps ([`Polls::rank`]): enough that the
/// owner is found in it whatever live set, unless this many nodes died at once.
pub const RANKED: usize = 32;

/// What the election needs of one allocated service besides its addresses, taken
/// from the configuration once ([`ballots`]): the election can then be run again for
/// another live set ([`Electorate::polls`]) without the Service objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ballot {
    /// Not announced whoever is alive, and why.
    Fixed(&'static str),
    /// Among the nodes that the advertisements of set `ad_set` (an index in the
    /// [`Electorate`]'s sets) let announce; under externalTrafficPolicy Local, only
    /// the nodes in `local` (sorted): those with a serving endpoint.
    Candidates {
        ad_set: usize,
        local: Option<Box<[String]>>,
    },
}

/// What the election needs of the configuration besides the Services: the nodes, the
/// L2Advertisements, and the sets of them that announce some service.
#[derive(Clone, Debug)]
pub struct Electorate {
    /// The usable nodes of the configuration; `None`: it lists none (this node alone,
    /// without labels).
    nodes: Option<Vec<Member>>,
    advertisements: Vec<L2Advertisement>,
    /// Indices in `advertisements`.
    ad_sets: Vec<Vec<usize>>,
}

const NO_ENDPOINT: &str = "no endpoint of the service is ready (or serving)";
const NO_ADVERTISEMENT: &str = "no L2Advertisement announces its pool (or selects the service)";
const SHARED_WITH_SELECTORS: &str =
    "allow-shared-ip cannot be used with serviceSelectors on L2Advertisements";
const NO_ADDRESS: &str = "it has no address";

/// The ballot of every service of `config` that `decisions` allocated, and the
/// electorate they are counted in; `slices` are the configuration's EndpointSlices
/// ([`slices_by_service`]), and `endpoints` says how a service without any counts.
pub fn ballots(
    config: &Config,
    slices: &SlicesByService<'_>,
    decisions: &BTreeMap<ServiceKey, Decision>,
    endpoints: EndpointRule,
) -> (Electorate, BTreeMap<ServiceKey, Ballot>) {
    let mut electorate = Electorate {
        nodes: (!config.nodes.is_empty()).then(|| {
            config
                .nodes
                .iter()
                .filter(|node| is_usable(node))
                .map(member)
                .collect()
        }),
        advertisements: config.l2_advertisements.clone(),
        ad_sets: Vec::new(),
    };
    let out = electorate.more_ballots(config, slices, config.services.iter(), decisions, endpoints);
    (electorate, out)
}

impl Electorate {
    /// The ballots of `services` (of `config`, whose nodes and advertisements are
    /// this electorate's) that `decisions` allocated: [`ballots`] for some services,
    /// counted in this electorate (a set of advertisements not seen before is added).
    pub fn more_ballots<'a>(
        &mut self,
        config: &Config,
        slices: &SlicesByService<'_>,
        services: impl Iterator<Item = &'a Service>,
        decisions: &BTreeMap<ServiceKey, Decision>,
        endpoints: EndpointRule,
    ) -> BTreeMap<ServiceKey, Ballot> {
        let mut sets: HashMap<Vec<usize>, usize> = (self.ad_sets.iter().cloned())
            .enumerate()
            .map(|(index, set)| (set, index))
            .collect();
        let mut out = BTreeMap::new();
        for service in services {
            let key = ServiceKey::of_service(service);
            let Some(Decision::Allocated(allocation)) = decisions.get(&key) else {
                continue;
            };
            let ad_indices = advertisements_for(config, &allocation.pool, service);
            let serving = serving(slices.get(&key), endpoints);
            let ballot = if matches!(serving, Serving::Somewhere { any: false, .. }) {
                Ballot::Fixed(NO_ENDPOINT)
            } else if ad_indices.is_empty() {
                Ballot::Fixed(NO_ADVERTISEMENT)
            } else if shares_ip(service)
                && ad_indices
                    .iter()
                    .any(|&i| !config.l2_advertisements[i].service_selectors.is_empty())
            {
                Ballot::Fixed(SHARED_WITH_SELECTORS)
            } else if allocation.ips.is_empty() {
                Ballot::Fixed(NO_ADDRESS)
            } else {
                // Under externalTrafficPolicy Local, only the nodes with a serving endpoint.
                let local = match (serving, local_traffic(service)) {
                    (Serving::Somewhere { nodes, .. }, true) => Some(nodes.into_iter().collect()),
                    _ => None,
                };
                let next = sets.len();
                let ad_set = *sets.entry(ad_indices).or_insert(next);
                Ballot::Candidates { ad_set, local }
            };
            out.insert(key, ballot);
        }
        self.ad_sets.resize(sets.len(), Vec::new());
        for (set, index) in sets {
            self.ad_sets[index] = set;
        }
        out
    }
}

/// One run of the election over an [`Electorate`] for one live set: what is the same
/// for every service (the members, their hashes, who each set of advertisements lets
/// announce) is computed once.
pub struct Polls<'a> {
    electorate: &'a Electorate,
    members: Vec<Member>,
    hashes: Vec<NodeHash>,
    /// By advertisement set, computed when first needed.
    eligible: Vec<Option<Eligible>>,
    /// The interfaces of an announcement by (advertisement set, owner), computed when
    /// first needed.
    interfaces: HashMap<(usize, usize), Interfaces>,
    ranks: Vec<Rank>,
}

/// `ip` as text, the hash's input, written into `buffer` (no allocation per service).
fn ip_text<'a>(ip: &IpAddr, buffer: &'a mut [u8; 64]) -> std::borrow::Cow<'a, [u8]> {
    use std::io::Write as _;
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    match write!(cursor, "{ip}") {
        Ok(()) => {
            let len = usize::try_from(cursor.position()).unwrap_or(0);
            std::borrow::Cow::Borrowed(&buffer[..len])
        }
        // An address's text is at most 45 bytes: not reached.
        Err(_) => std::borrow::Cow::Owned(ip.to_string().into_bytes()),
    }
}

impl Electorate {
    /// Which of the nodes (by index, as [`Polls::rank`] gives them) live in `live` (`None`:
    /// all); `None` when the configuration lists no nodes (this node alone, which
    /// always lives).
    pub fn live_nodes(&self, live: Option<&BTreeSet<String>>) -> Option<Vec<bool>> {
        let nodes = self.nodes.as_ref()?;
        Some(
            nodes
                .iter()
                .map(|node| live.is_none_or(|live| live.contains(&node.name)))
                .collect(),
        )
    }

    /// How many members polls opened for `live` have: the most candidates (hashes) a
    /// service's election costs.
    pub fn voters(&self, live: Option<&BTreeSet<String>>) -> usize {
        self.nodes.as_ref().map_or(1, |nodes| {
            nodes
                .iter()
                .filter(|node| live.is_none_or(|live| live.contains(&node.name)))
                .count()
        })
    }

    /// The election among the nodes alive (`live`; `None`: every node of the
    /// configuration), run by `this_node` (the only member when the configuration
    /// lists no nodes).
    pub fn polls(&self, this_node: &str, live: Option<&BTreeSet<String>>) -> Polls<'_> {
        let members: Vec<Member> = match &self.nodes {
            None => vec![Member {
                name: this_node.into(),
                labels: Labels::new(),
            }],
            Some(nodes) => nodes
                .iter()
                .filter(|node| live.is_none_or(|live| live.contains(&node.name)))
                .cloned()
                .collect(),
        };
        let hashes = members
            .iter()
            .map(|node| NodeHash::new(&node.name))
            .collect();
        Polls {
            electorate: self,
            members,
            hashes,
            eligible: std::iter::repeat_with(|| None)
                .take(self.ad_sets.len())
                .collect(),
            interfaces: HashMap::new(),
            ranks: Vec::new(),
        }
    }
}

impl Polls<'_> {
    /// The election of a service with addresses `ips` and `ballot`.
    pub fn elect(&mut self, ips: &[IpAddr], ballot: &Ballot) -> Election {
        let not_announced = |reason: &str| Election::NotAnnounced {
            ips: ips.to_vec(),
            reason: reason.into(),
        };
        let (ad_set, (ordered, _)) = match self.ordered(ips, ballot, LISTED_CANDIDATES) {
            Ok(ordered) => ordered,
            Err(reason) => return not_announced(reason),
        };
        let Some(&owner) = ordered.first() else {
            return not_announced(NO_CANDIDATE);
        };
        let members = &self.members;
        Election::Announced {
            ips: ips.to_vec(),
            owner: members[owner].name.clone(),
            candidates: ordered.iter().map(|&i| members[i].name.clone()).collect(),
            interfaces: self.announcement(ad_set, owner).clone(),
        }
    }

    /// The service's candidates among the members in MetalLB's order, the first `cut`
    /// of them, and how many there are, with the service's advertisement set; or why
    /// it is not announced whoever lives.
    fn ordered(
        &mut self,
        ips: &[IpAddr],
        ballot: &Ballot,
        cut: usize,
    ) -> Result<(usize, (Vec<usize>, usize)), &'static str> {
        let (ad_set, local) = match ballot {
            Ballot::Fixed(reason) => return Err(reason),
            Ballot::Candidates { ad_set, local } => (*ad_set, local),
        };
        let Some(first) = ips.first() else {
            return Err(NO_ADDRESS);
        };
        let electorate = self.electorate;
        let members = &self.members;
        // Every node an advertisement of the service lets announce; under
        // externalTrafficPolicy Local, only those with a serving endpoint.
        let eligible = self.eligible[ad_set].get_or_insert_with(|| {
            let ads: Vec<&L2Advertisement> = electorate.ad_sets[ad_set]
                .iter()
                .map(|&i| &electorate.advertisements[i])
                .collect();
            eligible(members, &ads)
        });
        let candidates = eligible.members.iter().copied().filter(|(index, _)| {
            local
                .as_ref()
                .is_none_or(|local| local.binary_search(&members[*index].name).is_ok())
        });
        let mut text = [0; 64];
        let ordered = order(
            candidates,
            &ip_text(first, &mut text),
            members,
            &self.hashes,
            &mut self.ranks,
            cut,
        );
        Ok((ad_set, ordered))
    }

    /// Appends to `out` MetalLB's order of the service's candidates among the members
    /// (every usable node, live or not, when these polls were opened for no live
    /// set), the first [`RANKED`] of them, as member indices: the owner for a live set
    /// is the first live one, found with no hashing. Returns whether they are all the
    /// candidates; `None` when it is not announced whoever lives.
    pub fn rank(&mut self, ips: &[IpAddr], ballot: &Ballot, out: &mut Vec<u32>) -> Option<bool> {
        let (_, (first, all)) = self.ordered(ips, ballot, RANKED).ok()?;
        out.extend(first.iter().map(|&i| i as u32));
        Some(all == first.len())
    }

    /// The election of a service with addresses `ips` and advertisement set `ad_set`
    /// among the members alive in `live` (`None`: every one), from its ranking in these
    /// polls, opened for no live set ([`Polls::rank`]: `ranked`, complete or not): what
    /// [`Polls::elect`] gives in polls opened for `live`, with no hashing. `None` when
    /// the ranking holds too few live candidates to tell ([`listed`]).
    pub fn elect_ranked(
        &mut self,
        ips: &[IpAddr],
        ad_set: usize,
        ranked: &[u32],
        complete: bool,
        live: Option<&[bool]>,
    ) -> Option<Election> {
        let listed = listed(ranked, complete, live)?;
        let Some(&owner) = listed.first() else {
            return Some(Election::NotAnnounced {
                ips: ips.to_vec(),
                reason: NO_CANDIDATE.into(),
            });
        };
        let members = &self.members;
        let (owner_name, candidates) = (
            members[owner].name.clone(),
            listed.iter().map(|&i| members[i].name.clone()).collect(),
        );
        Some(Election::Announced {
            ips: ips.to_vec(),
            owner: owner_name,
            candidates,
            interfaces: self.announcement(ad_set, owner).clone(),
        })
    }

    /// The interfaces an announcement by member `owner` of a service announced by
    /// advertisement set `ad_set` is made on: those of the advertisements that select
    /// the owner (MetalLB's "my ads for the service").
    pub fn announcement(&mut self, ad_set: usize, owner: usize) -> &Interfaces {
        let (electorate, members) = (self.electorate, &self.members);
        self.interfaces.entry((ad_set, owner)).or_insert_with(|| {
            let owner_labels = &members[owner].labels;
            let owners_ads: Vec<&L2Advertisement> = electorate.ad_sets[ad_set]
                .iter()
                .map(|&i| &electorate.advertisements[i])
                .filter(|a| {
                    a.node_selectors.is_empty() || any_matches(&a.node_selectors, owner_labels)
                })
                .collect();
            interfaces_of(&owners_ads)
        })
    }

    /// How many sets of advertisements announce some service.
    pub fn ad_sets(&self) -> usize {
        self.electorate.ad_sets.len()
    }

    /// How many members there are.
    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// The name of member `index`.
    pub fn member(&self, index: usize) -> &str {
        &self.members[index].name
    }
}

/// The candidates an election lists ([`LISTED_CANDIDATES`], the owner first), as
/// member indices, from a service's ranking over every usable node (`ranked`, in
/// MetalLB's order; `complete` if it holds every candidate): its nodes alive in
/// `live` (`None`: every one), in the same order. Exact when the ranking is complete
/// or holds that many live ones: the first live ones of a prefix of the whole order
/// are its first live ones. `None` otherwise (then only the whole election knows).
pub fn listed(ranked: &[u32], complete: bool, live: Option<&[bool]>) -> Option<Vec<usize>> {
    let alive: Vec<usize> = ranked
        .iter()
        .map(|&node| node as usize)
        .filter(|&node| live.is_none_or(|live| live.get(node).copied().unwrap_or(false)))
        .take(LISTED_CANDIDATES)
        .collect();
    (complete || alive.len() == LISTED_CANDIDATES).then_some(alive)
}

/// Below this many hashes (one per candidate and service, about 60 ns each on an Intel
/// Xeon) a window of an election runs on one thread: starting and joining a second
/// one costs about as much.
pub const PARALLEL_HASHES: usize = 20_000;

/// The most services a window of an election on several threads holds the outcome of
/// before handing it on: what the threads add to the memory stays small.
const WINDOW: usize = 4096;

/// A window's pieces per thread: a thread that the machine's load holds back leaves
/// its pieces to the others.
const PIECES_PER_THREAD: usize = 4;

/// Runs a part of an election (or a ranking) over many services on several threads,
/// each with its own state (its [`Polls`]), with the outcome in the services' order:
/// the same as on one thread. Small parts run on the calling thread alone.
pub struct Workers<S, F> {
    threads: usize,
    from_hashes: usize,
    /// One per thread used so far, made by `state`.
    states: Vec<S>,
    state: F,
}

impl<S: Send, F: FnMut() -> S> Workers<S, F> {
    pub fn new(threads: Threads, state: F) -> Self {
        Self {
            threads: threads.count(),
            from_hashes: threads.from_hashes,
            states: Vec::new(),
            state,
        }
    }

    /// How many services to hand [`Workers::map`] at once when each costs `weight`
    /// hashes: a window when that is worth threads, a few services otherwise (either
    /// way little is held at once).
    pub fn window(&self, weight: usize) -> usize {
        if self.threads > 1 && WINDOW.saturating_mul(weight) >= self.from_hashes {
            WINDOW
        } else {
            64
        }
    }

    /// The first thread's state.
    pub fn first(&mut self) -> &mut S {
        if self.states.is_empty() {
            self.states.push((self.state)());
        }
        &mut self.states[0]
    }

    /// `map` of every piece of `items` (with its state and the index of its first
    /// item), in order; on several threads when the items cost at least
    /// [`PARALLEL_HASHES`] hashes (or as [`Threads::from_hashes`] says), `weight` each.
    pub fn map<T: Sync, P: Send>(
        &mut self,
        items: &[T],
        weight: usize,
        map: impl Fn(&mut S, usize, &[T]) -> P + Sync,
    ) -> Vec<P> {
        let threads = if items.len().saturating_mul(weight) < self.from_hashes {
            1
        } else {
            self.threads.min(items.len())
        };
        if threads <= 1 {
            return vec![map(self.first(), 0, items)];
        }
        while self.states.len() < threads {
            self.states.push((self.state)());
        }
        let size = items.len().div_ceil(threads * PIECES_PER_THREAD);
        let pieces: Vec<(usize, &[T])> = items
            .chunks(size)
            .enumerate()
            .map(|(i, piece)| (i * size, piece))
            .collect();
        let next = AtomicUsize::new(0);
        let work = |state: &mut S| {
            let mut done = Vec::new();
            while let Some(&(first, piece)) = pieces.get(next.fetch_add(1, Ordering::Relaxed)) {
                done.push((first, map(state, first, piece)));
            }
            done
        };
        let work = &work;
        let Some((mine, others)) = self.states[..threads].split_first_mut() else {
            return Vec::new();
        };
        let mut done = std::thread::scope(|scope| {
            let others: Vec<_> = others
                .iter_mut()
                .map(|state| scope.spawn(move || work(state)))
                .collect();
            let mut done = work(mine);
            for other in others {
                match other.join() {
                    Ok(theirs) => done.extend(theirs),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            done
        });
        done.sort_unstable_by_key(|(first, _)| *first);
        done.into_iter().map(|(_, outcome)| outcome).collect()
    }
}

/// An iterator that yields `left` more items, saying so: what collects it (a `Vec`,
/// a `BTreeMap`) allocates once instead of doubling as it goes, which for the plans of
/// 100,000 Services held several MiB more at the peak.
pub struct Counted<I> {
    iter: I,
    left: usize,
}

impl<I> Counted<I> {
    pub fn new(iter: I, left: usize) -> Self {
        Self { iter, left }
    }
}

impl<I: Iterator> Iterator for Counted<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let item = self.iter.next()?;
        self.left = self.left.saturating_sub(1);
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// Elects, for every allocated service, the node that announces it. `this_node` is the
/// name of the node running the election (used when the configuration lists no nodes).
pub fn elect(
    config: &Config,
    decisions: &BTreeMap<ServiceKey, Decision>,
    this_node: &str,
    context: &ElectionContext,
) -> BTreeMap<ServiceKey, Election> {
    let slices = slices_by_service(config);
    let (electorate, ballots) = ballots(config, &slices, decisions, context.endpoints);
    let live = context.live_nodes.as_ref();
    let weight = electorate.voters(live);
    let mut workers = Workers::new(context.threads, || electorate.polls(this_node, live));
    let (keys, ballots): (Vec<ServiceKey>, Vec<(&[IpAddr], Ballot)>) = ballots
        .into_iter()
        .filter_map(|(key, ballot)| match decisions.get(&key) {
            Some(Decision::Allocated(allocation)) => Some((key, (&allocation.ips[..], ballot))),
            _ => None,
        })
        .unzip();
    let window = workers.window(weight);
    let elections = ballots.chunks(window).flat_map(|window| {
        workers
            .map(window, weight, |polls, _, piece| {
                let elect = |(ips, ballot): &(&[IpAddr], Ballot)| polls.elect(ips, ballot);
                piece.iter().map(elect).collect::<Vec<_>>()
            })
            .into_iter()
            .flatten()
    });
    let count = keys.len();
    Counted::new(keys.into_iter().zip(elections), count).collect()
}

pub(crate) const NO_CANDIDATE: &str = "no node may announce it (nodeSelectors, exclusion label, NetworkUnavailable, no live speaker, or no local endpoint under externalTrafficPolicy Local)";

/// The union of the advertisements' interfaces; any advertisement without interfaces
/// means all of them.
fn interfaces_of(ads: &[&L2Advertisement]) -> Interfaces {
    if ads.iter().any(|a| a.interfaces.is_empty()) {
        return Interfaces::All;
    }
    Interfaces::Only(
        ads.iter()
            .flat_map(|a| a.interfaces.iter().cloned())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        allocator::Allocation,
        config::{ValidateOptions, file::parse, validate},
    };

    fn config(text: &str) -> Config {
        let validation = validate(&parse(text).expect("parses"), &ValidateOptions::default());
        validation
            .config
            .unwrap_or_else(|| panic!("invalid: {:?}", validation.errors))
    }

    fn allocated(pool: &str, ips: &[&str]) -> Decision {
        Decision::Allocated(Allocation {
            pool: pool.into(),
            ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
        })
    }

    fn key(name: &str) -> ServiceKey {
        ServiceKey {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    const POOL: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: pool}\nspec: {addresses: [192.0.2.0/24]}\n";

    fn service(name: &str, extra_meta: &str) -> String {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}{extra_meta}}}\nspec: {{type: LoadBalancer}}\n"
        )
    }

    fn node(name: &str, labels: &str) -> String {
        format!(
            "---\napiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{{labels}}}}}\n"
        )
    }

    fn adv(spec: &str) -> String {
        format!(
            "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: adv{:x}}}\nspec: {spec}\n",
            spec.bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
        )
    }

    /// sha256(node + "#" + ip), as hex, for checking the order by hand.
    fn hash_hex(node: &str, ip: &str) -> String {
        Sha256::digest(format!("{node}#{ip}").as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// An EndpointSlice of `service`: (node, ready, serving) per endpoint.
    fn slice(service: &str, endpoints: &[(Option<&str>, Option<bool>, Option<bool>)]) -> String {
        let endpoints: Vec<String> = endpoints
            .iter()
            .enumerate()
            .map(|(i, (node, ready, serving))| {
                let node = node.map(|n| format!(", nodeName: {n}")).unwrap_or_default();
                let mut conditions = Vec::new();
                if let Some(ready) = ready {
                    conditions.push(format!("ready: {ready}"));
                }
                if let Some(serving) = serving {
                    conditions.push(format!("serving: {serving}"));
                }
                format!(
                    "{{addresses: ['10.1.0.{i}'], conditions: {{{}}}{node}}}",
                    conditions.join(", ")
                )
            })
            .collect();
        format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {service}-{}, labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\nendpoints: [{}]\n",
            endpoints.len(),
            endpoints.join(", ")
        )
    }

    #[test]
    fn endpoints_and_live_speakers_narrow_the_candidates() {
        let nodes = node("a", "") + &node("b", "") + &node("c", "");
        let local = || {
            "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {type: LoadBalancer, externalTrafficPolicy: Local}\n".to_string()
        };
        let observed = |live: Option<&[&str]>| ElectionContext {
            live_nodes: live.map(|l| l.iter().map(|n| n.to_string()).collect()),
            endpoints: EndpointRule::Observed,
            ..ElectionContext::default()
        };
        let assumed = ElectionContext::default();
        let ready = |node: &'static str| (Some(node), Some(true), None);
        /// (case, objects, context, candidates, or why it is not announced)
        type Case<'a> = (
            &'a str,
            String,
            ElectionContext,
            Result<Vec<&'a str>, &'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "a file without slices: served everywhere",
                service("web", ""),
                assumed.clone(),
                Ok(vec!["a", "b", "c"]),
            ),
            (
                "the API without slices: no endpoint",
                service("web", ""),
                observed(None),
                Err("no endpoint of the service is ready"),
            ),
            (
                "no endpoint ready",
                service("web", "") + &slice("web", &[(Some("a"), Some(false), None)]),
                observed(None),
                Err("no endpoint of the service is ready"),
            ),
            (
                "ready unknown counts as ready",
                service("web", "") + &slice("web", &[(Some("a"), None, None)]),
                observed(None),
                Ok(vec!["a", "b", "c"]),
            ),
            (
                "terminating but serving counts",
                service("web", "") + &slice("web", &[(Some("a"), Some(false), Some(true))]),
                observed(None),
                Ok(vec!["a", "b", "c"]),
            ),
            (
                "Cluster: any node, wherever the endpoint",
                service("web", "") + &slice("web", &[ready("c")]),
                observed(None),
                Ok(vec!["a", "b", "c"]),
            ),
            (
                "Local: only nodes with a ready endpoint",
                local()
                    + &slice(
                        "web",
                        &[ready("c"), ready("a"), (Some("b"), Some(false), None)],
                    ),
                observed(None),
                Ok(vec!["a", "c"]),
            ),
            (
                "Local: an endpoint without a node serves from none",
                local() + &slice("web", &[(None, Some(true), None)]),
                observed(None),
                Err("no node may announce it"),
            ),
            (
                "Local in a file with slices",
                local() + &slice("web", &[ready("b")]),
                assumed.clone(),
                Ok(vec!["b"]),
            ),
            (
                "only live speakers",
                service("web", "") + &slice("web", &[ready("a")]),
                observed(Some(&["b", "c"])),
                Ok(vec!["b", "c"]),
            ),
            (
                "Local and live",
                local() + &slice("web", &[ready("a"), ready("b")]),
                observed(Some(&["b", "c"])),
                Ok(vec!["b"]),
            ),
            (
                "no live speaker",
                service("web", "") + &slice("web", &[ready("a")]),
                observed(Some(&[])),
                Err("no node may announce it"),
            ),
            (
                "another service's slice does not count",
                service("web", "") + &slice("db", &[ready("a")]),
                observed(None),
                Err("no endpoint of the service is ready"),
            ),
        ];
        let decisions = BTreeMap::from([(key("web"), allocated("pool", &["192.0.2.5"]))]);
        for (name, objects, context, want) in cases {
            let text = POOL.to_string() + &nodes + &objects + &adv("{}");
            let cfg = config(&text);
            let got = &elect(&cfg, &decisions, "a", &context)[&key("web")];
            match (got, want) {
                (Election::Announced { candidates, .. }, Ok(want)) => {
                    let mut got: Vec<&str> = candidates.iter().map(String::as_str).collect();
                    got.sort();
                    assert_eq!(got, want, "{name}");
                }
                (Election::NotAnnounced { reason, .. }, Err(want)) => {
                    assert!(reason.contains(want), "{name}: {reason}")
                }
                (got, want) => panic!("{name}: got {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn standalone_without_nodes_elects_this_node_on_all_interfaces() {
        let cfg = config(&(POOL.to_string() + &service("web", "") + &adv("{}")));
        let decisions = BTreeMap::from([(key("web"), allocated("pool", &["192.0.2.1"]))]);
        let result = elect(&cfg, &decisions, "me", &ElectionContext::default());
        assert_eq!(
            result[&key("web")],
            Election::Announced {
                ips: vec!["192.0.2.1".parse().unwrap()],
                owner: "me".into(),
                candidates: vec!["me".into()],
                interfaces: Interfaces::All,
            }
        );
    }

    #[test]
    fn the_hash_orders_the_candidates() {
        let text = POOL.to_string()
            + &node("a", "")
            + &node("b", "")
            + &node("c", "")
            + &service("web", "")
            + &adv("{}");
        let cfg = config(&text);
        for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.77"] {
            let decisions = BTreeMap::from([(key("web"), allocated("pool", &[ip]))]);
            let Election::Announced {
                owner, candidates, ..
            } = &elect(&cfg, &decisions, "a", &ElectionContext::default())[&key("web")]
            else {
                panic!("not announced")
            };
            let mut by_hash: Vec<(String, String)> = ["a", "b", "c"]
                .iter()
                .map(|n| (hash_hex(n, ip), n.to_string()))
                .collect();
            by_hash.sort();
            let expected: Vec<String> = by_hash.into_iter().map(|(_, n)| n).collect();
            assert_eq!(candidates, &expected, "{ip}");
            assert_eq!(owner, &expected[0]);
            // The election does not depend on who runs it.
            assert_eq!(
                elect(&cfg, &decisions, "b", &ElectionContext::default()),
                elect(&cfg, &decisions, "c", &ElectionContext::default())
            );
        }
    }

    #[test]
    fn node_hashes_are_sha256_of_node_hash_ip_at_every_length() {
        // One block up to 55 bytes, two beyond: both ways give SHA-256's digest.
        for name_len in 0..70 {
            let name = "n".repeat(name_len);
            let hash = NodeHash::new(&name);
            for ip in ["192.0.2.1", "2001:db8::ffff:ffff:ffff:ffff"] {
                let got: String = hash
                    .with(&name, ip.as_bytes())
                    .iter()
                    .map(|w| format!("{w:08x}"))
                    .collect();
                assert_eq!(got, hash_hex(&name, ip), "{name_len} {ip}");
            }
        }
    }

    /// Every candidate's hash at once (sixteen at a time where the CPU can) is
    /// `sha256(node + "#" + ip)`: names of every length (one block or two), in
    /// batches of every size.
    #[test]
    fn all_hashes_at_once_are_sha256_of_node_hash_ip() {
        let names: Vec<String> = (0..70)
            .map(|len| {
                (0..len)
                    .map(|i| char::from(b'a' + (i % 26) as u8))
                    .collect()
            })
            .collect();
        let nodes: Vec<Member> = names
            .iter()
            .map(|name| Member {
                name: name.clone(),
                labels: Labels::new(),
            })
            .collect();
        let hashes: Vec<NodeHash> = names.iter().map(|name| NodeHash::new(name)).collect();
        for ip in ["192.0.2.1", "2001:db8::ffff:ffff:ffff:ffff", "10.0.0.255"] {
            for count in [0, 1, 15, 16, 17, 33, 70] {
                // Every other node first, then the rest: blocks out of order.
                let order = (0..70).step_by(2).chain((1..70).step_by(2)).take(count);
                let mut ranks: Vec<Rank> = order
                    .map(|index| (std::cmp::Reverse(0), [0; 8], index))
                    .collect();
                hash_all(&mut ranks, ip.as_bytes(), &nodes, &hashes);
                for (_, hash, index) in &ranks {
                    let got: String = hash.iter().map(|w| format!("{w:08x}")).collect();
                    assert_eq!(got, hash_hex(&names[*index], ip), "{index} {ip} {count}");
                }
            }
        }
    }

    #[test]
    fn many_nodes_list_the_first_candidates_in_order() {
        // More nodes than are listed: the owner and the list are the head of the full
        // order (preferred nodes first, then the hash), whoever runs the election.
        let names: Vec<String> = (0..40).map(|i| format!("node-{i:02}")).collect();
        let mut text = POOL.to_string();
        for (i, name) in names.iter().enumerate() {
            text += &node(name, if i % 3 == 0 { "disk: ssd" } else { "" });
        }
        text += &service("web", "");
        text += &adv(
            "{preferredNodeSelectors: [{weight: 10, preference: {matchLabels: {disk: ssd}}}]}",
        );
        let cfg = config(&text);
        for ip in ["192.0.2.1", "192.0.2.200"] {
            let decisions = BTreeMap::from([(key("web"), allocated("pool", &[ip]))]);
            let Election::Announced {
                owner, candidates, ..
            } = &elect(&cfg, &decisions, "node-07", &ElectionContext::default())[&key("web")]
            else {
                panic!("not announced")
            };
            let mut full: Vec<(bool, String, String)> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (i % 3 != 0, hash_hex(n, ip), n.clone()))
                .collect();
            full.sort();
            let expected: Vec<String> = full
                .into_iter()
                .map(|(_, _, n)| n)
                .take(LISTED_CANDIDATES)
                .collect();
            assert_eq!(candidates, &expected, "{ip}");
            assert_eq!(owner, &expected[0]);
        }
    }

    /// The candidates an election lists, from a ranking: its live nodes in its order,
    /// when it holds every candidate or enough live ones; otherwise it cannot tell.
    #[test]
    fn the_listed_candidates_are_the_rankings_live_nodes_when_it_can_tell() {
        let ranked: Vec<u32> = (0..RANKED as u32).rev().collect();
        let alive =
            |dead: &[u32]| -> Vec<bool> { (0..40).map(|node| !dead.contains(&node)).collect() };
        let first = |ranked: &[u32], live: &[bool]| -> Vec<usize> {
            let live = |&node: &usize| live[node];
            let nodes = ranked.iter().map(|&n| n as usize).filter(live);
            nodes.take(LISTED_CANDIDATES).collect()
        };
        let half: Vec<u32> = (0..16).map(|i| 2 * i).collect();
        let more_than_half: Vec<u32> = half.iter().copied().chain([1]).collect();
        let all_ranked: Vec<u32> = ranked.clone();
        /// (case, ranking, complete, live, listed)
        type Case<'a> = (
            &'a str,
            Vec<u32>,
            bool,
            Option<Vec<bool>>,
            Option<Vec<usize>>,
        );
        let cases: Vec<Case> = vec![
            (
                "every node alive: the first ones",
                ranked.clone(),
                false,
                Some(alive(&[])),
                Some((16..32).rev().collect()),
            ),
            (
                "no live set (this node alone): the first ones",
                ranked.clone(),
                false,
                None,
                Some((16..32).rev().collect()),
            ),
            (
                "half the ranked dead, every other one: exactly enough",
                ranked.clone(),
                false,
                Some(alive(&half)),
                Some(first(&ranked, &alive(&half))),
            ),
            (
                "one more dead: too few to tell",
                ranked.clone(),
                false,
                Some(alive(&more_than_half)),
                None,
            ),
            (
                "as many dead, but the ranking holds every candidate",
                ranked.clone(),
                true,
                Some(alive(&more_than_half)),
                Some(first(&ranked, &alive(&more_than_half))),
            ),
            (
                "every ranked node dead: nobody, if complete",
                ranked.clone(),
                true,
                Some(alive(&all_ranked)),
                Some(Vec::new()),
            ),
            (
                "every ranked node dead: cannot tell, if not",
                ranked.clone(),
                false,
                Some(alive(&all_ranked)),
                None,
            ),
            (
                "three candidates, one dead",
                vec![2, 0, 1],
                true,
                Some(alive(&[0])),
                Some(vec![2, 1]),
            ),
            (
                "no candidate",
                Vec::new(),
                true,
                Some(alive(&[])),
                Some(Vec::new()),
            ),
        ];
        for (name, ranked, complete, live, want) in cases {
            assert_eq!(listed(&ranked, complete, live.as_deref()), want, "{name}");
        }
    }

    #[test]
    fn node_selectors_exclusion_and_network_unavailable_narrow_candidates() {
        let text = POOL.to_string()
            + &node("a", "zone: east")
            + &node("b", "zone: west")
            + &node("c", &format!("zone: east, {EXCLUDE_LABEL}: ''"))
            + "---\napiVersion: v1\nkind: Node\nmetadata: {name: d, labels: {zone: east}}\nstatus: {conditions: [{type: NetworkUnavailable, status: 'True'}]}\n"
            + &service("web", "")
            + &adv("{nodeSelectors: [{matchLabels: {zone: east}}], interfaces: [eth1, eth0]}");
        let cfg = config(&text);
        let decisions = BTreeMap::from([(key("web"), allocated("pool", &["192.0.2.9"]))]);
        let Election::Announced {
            owner,
            candidates,
            interfaces,
            ..
        } = &elect(&cfg, &decisions, "b", &ElectionContext::default())[&key("web")]
        else {
            panic!("not announced")
        };
        assert_eq!(candidates, &["a".to_string()]);
        assert_eq!(owner, "a");
        assert_eq!(
            interfaces,
            &Interfaces::Only(BTreeSet::from(["eth0".into(), "eth1".into()]))
        );
    }

    #[test]
    fn preferred_weights_come_before_the_hash() {
        // Whatever the hash says, the node with the highest summed weight wins.
        let text = POOL.to_string()
            + &node("a", "disk: ssd")
            + &node("b", "disk: ssd, nic: fast")
            + &node("c", "")
            + &service("web", "")
            + &adv(
                "{preferredNodeSelectors: [{weight: 10, preference: {matchLabels: {disk: ssd}}}]}",
            )
            + &adv(
                "{preferredNodeSelectors: [{weight: 5, preference: {matchLabels: {nic: fast}}}], interfaces: [eth9]}",
            );
        let cfg = config(&text);
        for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
            let decisions = BTreeMap::from([(key("web"), allocated("pool", &[ip]))]);
            let Election::Announced {
                candidates,
                interfaces,
                ..
            } = &elect(&cfg, &decisions, "c", &ElectionContext::default())[&key("web")]
            else {
                panic!("not announced")
            };
            assert_eq!(
                candidates,
                &["b".to_string(), "a".to_string(), "c".to_string()],
                "{ip}"
            );
            // One advertisement has no interfaces: all of them.
            assert_eq!(interfaces, &Interfaces::All);
        }
    }

    #[test]
    fn services_not_announced_say_why() {
        let other_pool = "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: other}\nspec: {addresses: [198.51.100.0/24]}\n";
        let text = POOL.to_string()
            + other_pool
            + &node("a", "zone: east")
            + &service("unadvertised", "")
            + &service(
                "shared",
                ", labels: {app: x}, annotations: {metallb.io/allow-shared-ip: k}",
            )
            + &service("nowhere", ", labels: {app: x}")
            + &adv("{ipAddressPools: [other], serviceSelectors: [{matchLabels: {app: x}}]}")
            + &adv("{ipAddressPools: [pool], nodeSelectors: [{matchLabels: {zone: west}}]}");
        let cfg = config(&text);
        let decisions = BTreeMap::from([
            (key("unadvertised"), allocated("other", &["198.51.100.1"])),
            (key("shared"), allocated("other", &["198.51.100.2"])),
            (key("nowhere"), allocated("pool", &["192.0.2.3"])),
        ]);
        let result = elect(&cfg, &decisions, "a", &ElectionContext::default());
        let reason = |name: &str| match &result[&key(name)] {
            Election::NotAnnounced { reason, .. } => reason.clone(),
            other => panic!("{name}: {other:?}"),
        };
        assert!(reason("unadvertised").contains("no L2Advertisement"));
        assert!(reason("shared").contains("allow-shared-ip"));
        assert!(reason("nowhere").contains("no node may announce"));
    }
}

#[cfg(test)]
mod slices_of_tests {
    use super::*;

    #[test]
    fn the_slices_of_some_services_are_those_every_service_has() {
        let slice = |name: &str, namespace: Option<&str>, owner: Option<&str>| -> EndpointSlice {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": namespace,
                             "labels": owner.map(|o| serde_json::json!({SERVICE_NAME_LABEL: o}))},
                "addressType": "IPv4", "endpoints": [],
            }))
            .expect("slice")
        };
        let config = Config {
            endpoint_slices: vec![
                slice("a-1", Some("ns"), Some("a")),
                slice("b-1", Some("ns"), Some("b")),
                slice("a-2", Some("ns"), Some("a")),
                slice("a-3", Some("other"), Some("a")),
                slice("c-1", None, Some("c")),
                slice("c-2", Some(""), Some("c")),
                slice("loose", Some("ns"), None),
            ],
            ..Config::default()
        };
        let all = slices_by_service(&config);
        let names = |slices: &SlicesByService<'_>| -> Vec<(String, Vec<String>)> {
            slices
                .iter()
                .map(|(key, slices)| {
                    let names = slices
                        .iter()
                        .map(|s| s.metadata.name.clone().unwrap_or_default());
                    (key.to_string(), names.collect())
                })
                .collect()
        };
        for keys in [
            vec![],
            vec![("ns", "a")],
            vec![("ns", "a"), ("default", "c"), ("ns", "none")],
            vec![("ns", "a"), ("ns", "b"), ("other", "a"), ("default", "c")],
        ] {
            let keys: BTreeSet<(&str, &str)> = keys.into_iter().collect();
            let want: SlicesByService<'_> = (all.iter())
                .filter(|(key, _)| keys.contains(&(key.namespace.as_str(), key.name.as_str())))
                .map(|(key, slices)| (key.clone(), slices.clone()))
                .collect();
            assert_eq!(names(&slices_of(&config, &keys)), names(&want), "{keys:?}");
        }
        assert_eq!(
            names(&all),
            [
                (
                    "default/c".to_string(),
                    vec!["c-1".to_string(), "c-2".to_string()]
                ),
                ("ns/a".into(), vec!["a-1".into(), "a-2".into()]),
                ("ns/b".into(), vec!["b-1".into()]),
                ("other/a".into(), vec!["a-3".into()]),
            ]
        );
    }
}
