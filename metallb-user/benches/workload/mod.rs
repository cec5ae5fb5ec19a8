//! The Services and pools the allocator and scale benches measure, in one place so that
//! their figures describe the same workload.

use std::collections::BTreeMap;

use metallb_user::config::{
    AddrRange, Pool, Service,
    service_model::{Annotations, ServiceMeta, ServicePort, ServiceSpec},
};

pub const POOLS: usize = 20;

/// 20 pools, each with an IPv4 range of 2^`v4_bits` and an IPv6 range of
/// 2^`v6_bits` addresses.
pub fn pools(v4_bits: u32, v6_bits: u32) -> Vec<Pool> {
    (0..POOLS)
        .map(|i| Pool {
            name: format!("pool-{i:02}"),
            labels: BTreeMap::new(),
            ranges: vec![
                AddrRange::parse(&format!("10.{}.0.0/{}", i * 8, 32 - v4_bits)).expect("a range"),
                AddrRange::parse(&format!("2001:db8:{i:x}::/{}", 128 - v6_bits)).expect("a range"),
            ],
            auto_assign: true,
            avoid_buggy_ips: i % 2 == 1,
            allocation: None,
        })
        .collect()
}

/// Every third Service IPv6, every tenth dual-stack, every twentieth sharing an
/// address, every fiftieth asking for a pool by name; the pools fill in name order.
pub fn service(i: usize) -> Service {
    let mut annotations = Vec::new();
    if i.is_multiple_of(20) {
        annotations.push((
            "metallb.io/allow-shared-ip".into(),
            format!("key-{}", i % 7),
        ));
    }
    if i % 50 == 1 {
        annotations.push((
            "metallb.io/address-pool".into(),
            format!("pool-{:02}", POOLS - 1),
        ));
    }
    let (families, policy) = if i.is_multiple_of(10) {
        (None, Some("PreferDualStack"))
    } else if i % 3 == 1 {
        (Some(vec!["IPv6".to_string()]), Some("SingleStack"))
    } else {
        (None, None)
    };
    Service {
        metadata: ServiceMeta {
            name: Some(format!("svc-{i:06}")),
            namespace: Some(format!("ns-{}", i % 100)),
            annotations: Annotations::metallb(annotations),
            ..ServiceMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ip_families: families,
            ip_family_policy: policy.map(Into::into),
            ports: Some(vec![ServicePort {
                port: 1000 + i32::try_from(i % 60_000).expect("small"),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
