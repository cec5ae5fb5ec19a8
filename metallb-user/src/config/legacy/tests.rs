use super::*;
use crate::config::file;

/// The output for `text`, which must convert without error.
fn converted(text: &str) -> String {
    converted_with(text, &MigrateOptions::default(), DEFAULT_NAMESPACE)
}

/// The output for `text`, whose objects go to `namespace`.
fn converted_with(text: &str, options: &MigrateOptions, namespace: &str) -> String {
    let migration = migrate(text, options);
    assert!(
        migration.errors.is_empty(),
        "{text}\nerrors: {:#?}",
        migration.errors
    );
    let yaml = migration
        .objects
        .expect("objects when there is no error")
        .to_yaml()
        .expect("serializes");
    passes_validate(&yaml, namespace, &migration.warnings);
    yaml
}

/// Every output is a configuration `metallb validate` accepts (the BGP kinds too); any
/// warning is one the conversion gave too.
fn passes_validate(yaml: &str, namespace: &str, conversion_warnings: &[Issue]) {
    let parsed = file::parse(yaml).unwrap_or_else(|errors| panic!("{yaml}\n{errors:#?}"));
    let validation = validate(
        &parsed,
        &ValidateOptions {
            namespace: namespace.to_owned(),
        },
    );
    assert!(
        validation.errors.is_empty(),
        "{yaml}\n{:#?}",
        validation.errors
    );
    for warning in &validation.warnings {
        assert!(
            conversion_warnings.contains(warning),
            "{yaml}\nwarning not given by the conversion: {warning}"
        );
    }
}

fn messages(issues: &[Issue]) -> Vec<String> {
    issues.iter().map(ToString::to_string).collect()
}

fn errors(text: &str) -> Vec<String> {
    let migration = migrate(text, &MigrateOptions::default());
    assert!(migration.objects.is_none(), "{text}: converted");
    messages(&migration.errors)
}

fn warnings(text: &str) -> Vec<String> {
    messages(&migrate(text, &MigrateOptions::default()).warnings)
}

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/config/legacy/testdata");

fn testdata(path: &str) -> String {
    std::fs::read_to_string(format!("{TESTDATA}/{path}")).expect("testdata")
}

/// MetalLB's golden output, less what is deliberately not written here: MetalLB's
/// header line (ours is [`HEADER`]), the `status` of each object (the API server ignores
/// it on create: it belongs to the controllers) and `passwordSecret: {}` (Go writes an
/// empty struct that means nothing).
fn metallb_golden_as_written_here(golden: &str) -> String {
    let mut out = String::from(HEADER);
    let mut in_status = false;
    for line in golden.lines() {
        if in_status && line.starts_with("  ") {
            continue;
        }
        in_status = line == "status:";
        if line.starts_with('#') || line == "status: {}" || in_status {
            continue;
        }
        if line == "  passwordSecret: {}" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// MetalLB's converter's own test data (`configmaptocrs/testdata`), whole ConfigMaps and
/// bare `data.config`: the same objects, named, ordered and written as MetalLB writes
/// them.
#[test]
fn metallb_golden_files_convert_to_the_same_objects() {
    let cases = [
        ("configmap-yaml", "config-yaml"),
        ("configmap-data", "config-data"),
    ];
    for (dir, prefix) in cases {
        for name in [
            "address-pools",
            "bfdprofile",
            "communities",
            "convert-names",
            "peers",
        ] {
            let input = testdata(&format!("{dir}/{prefix}-{name}.yaml"));
            let golden = testdata(&format!("{dir}/{prefix}-{name}.golden"));
            assert_eq!(
                converted(&input),
                metallb_golden_as_written_here(&golden),
                "{dir}/{prefix}-{name}"
            );
        }
    }
}

/// MetalLB's "full" case has a pool with `protocol: l2`, which MetalLB v0.12 refused
/// ("unknown protocol") and its converter passes through as a pool with no
/// advertisement. Here it is an error; written `layer2`, it converts to MetalLB's
/// objects plus the pool's L2Advertisement.
#[test]
fn metallb_full_golden_file_with_protocol_l2_is_refused_and_converts_once_written_layer2() {
    for (dir, prefix) in [
        ("configmap-yaml", "config-yaml"),
        ("configmap-data", "config-data"),
    ] {
        let input = testdata(&format!("{dir}/{prefix}-full.yaml"));
        assert_eq!(
            errors(&input),
            [
                "address-pools[1] (my-l2-space): protocol \"l2\": unknown protocol: MetalLB's are layer2 and bgp"
            ],
            "{dir}"
        );
        let fixed = input.replace("protocol: l2\n", "protocol: layer2\n");
        let golden =
            metallb_golden_as_written_here(&testdata(&format!("{dir}/{prefix}-full.golden")));
        let l2_advertisement = "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: l2advertisement1\n  namespace: metallb-system\nspec:\n  ipAddressPools:\n  - my-l2-space\n---\n";
        let before_bfd = golden
            .find("apiVersion: metallb.io/v1beta1\nkind: BFDProfile")
            .unwrap();
        let want = format!(
            "{}{l2_advertisement}{}",
            &golden[..before_bfd],
            &golden[before_bfd..]
        );
        assert_eq!(converted(&fixed), want, "{dir}");
    }
}

fn pool(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: {name}\n  namespace: metallb-system\nspec:\n{spec}---\n"
    )
}

fn l2(index: usize, pool: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: l2advertisement{index}\n  namespace: metallb-system\nspec:\n  ipAddressPools:\n  - {pool}\n---\n"
    )
}

fn bgp_advertisement(index: usize, spec: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata:\n  name: bgpadvertisement{index}\n  namespace: metallb-system\nspec:\n{spec}---\n"
    )
}

fn peer(index: usize, spec: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata:\n  name: peer{index}\n  namespace: metallb-system\nspec:\n{spec}---\n"
    )
}

fn bfd(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata:\n  name: {name}\n  namespace: metallb-system\nspec:\n{spec}---\n"
    )
}

const PEER: &str = "peers:\n- peer-address: 10.0.0.1\n  peer-asn: 64501\n  my-asn: 64500\n";
const PEER_SPEC: &str =
    "  holdTime: 1m30s\n  myASN: 64500\n  peerASN: 64501\n  peerAddress: 10.0.0.1\n";

/// Every field of MetalLB's legacy configuration, one at a time, and what it becomes.
#[test]
fn each_field_converts_as_metallb_converts_it() {
    let l2_pool = "address-pools:\n- name: a\n  protocol: layer2\n  addresses: [192.0.2.0/28]\n";
    let bgp_pool =
        "address-pools:\n- name: a\n  protocol: bgp\n  addresses: [192.0.2.0/28, 2001:db8::/120]\n";
    // Each BGPAdvertisement's spec; keys sorted, as Go writes them.
    const POOLS: &str = "  ipAddressPools:\n  - a\n";
    let bgp_pool_objects = |advertisements: &[&str]| {
        let mut out = pool("a", "  addresses:\n  - 192.0.2.0/28\n  - 2001:db8::/120\n");
        for (i, spec) in advertisements.iter().enumerate() {
            out.push_str(&bgp_advertisement(i + 1, spec));
        }
        out
    };
    let cases: Vec<(&str, String, String)> = vec![
        // address-pools
        (
            "protocol: layer2 (name, addresses)",
            l2_pool.into(),
            pool("a", "  addresses:\n  - 192.0.2.0/28\n") + &l2(1, "a"),
        ),
        (
            "addresses: CIDRs and ranges, both families, as written",
            "address-pools:\n- name: a\n  protocol: layer2\n  addresses:\n  - 192.0.2.5/28\n  - 198.51.100.1 - 198.51.100.9\n  - 2001:0db8::/120\n".into(),
            // Quoted: plain text here has no space (YAML would take it plain too).
            pool("a", "  addresses:\n  - 192.0.2.5/28\n  - \"198.51.100.1 - 198.51.100.9\"\n  - 2001:0db8::/120\n") + &l2(1, "a"),
        ),
        (
            "auto-assign: false",
            format!("{l2_pool}  auto-assign: false\n"),
            pool("a", "  addresses:\n  - 192.0.2.0/28\n  autoAssign: false\n") + &l2(1, "a"),
        ),
        (
            "auto-assign: true is written, as MetalLB does",
            format!("{l2_pool}  auto-assign: true\n"),
            pool("a", "  addresses:\n  - 192.0.2.0/28\n  autoAssign: true\n") + &l2(1, "a"),
        ),
        (
            "avoid-buggy-ips: true",
            format!("{l2_pool}  avoid-buggy-ips: true\n"),
            pool("a", "  addresses:\n  - 192.0.2.0/28\n  avoidBuggyIPs: true\n") + &l2(1, "a"),
        ),
        (
            "avoid-buggy-ips: false is the default, not written",
            format!("{l2_pool}  avoid-buggy-ips: false\n"),
            pool("a", "  addresses:\n  - 192.0.2.0/28\n") + &l2(1, "a"),
        ),
        (
            "protocol: bgp without bgp-advertisements: one with no attributes",
            bgp_pool.into(),
            bgp_pool_objects(&[POOLS]),
        ),
        (
            "bgp-advertisements: an empty entry",
            format!("{bgp_pool}  bgp-advertisements:\n  -\n"),
            bgp_pool_objects(&[POOLS]),
        ),
        (
            "bgp-advertisements: aggregation-length",
            format!("{bgp_pool}  bgp-advertisements:\n  - aggregation-length: 28\n"),
            bgp_pool_objects(&[&format!("  aggregationLength: 28\n{POOLS}")]),
        ),
        (
            "bgp-advertisements: aggregation-length-v6",
            format!("{bgp_pool}  bgp-advertisements:\n  - aggregation-length-v6: 120\n"),
            bgp_pool_objects(&[&format!("  aggregationLengthV6: 120\n{POOLS}")]),
        ),
        (
            "bgp-advertisements: localpref",
            format!("{bgp_pool}  bgp-advertisements:\n  - localpref: 100\n"),
            bgp_pool_objects(&[&format!("{POOLS}  localPref: 100\n")]),
        ),
        (
            "bgp-advertisements: communities, literal (quoted where YAML 1.1 reads a number) and large",
            format!("{bgp_pool}  bgp-advertisements:\n  - communities: [\"64512:1\", \"1234:5678\", large:1:2:3]\n"),
            bgp_pool_objects(&[&format!("  communities:\n  - \"64512:1\"\n  - 1234:5678\n  - large:1:2:3\n{POOLS}")]),
        ),
        (
            "bgp-advertisements: several, numbered in order",
            format!("{bgp_pool}  bgp-advertisements:\n  - aggregation-length: 32\n  - aggregation-length: 30\n    aggregation-length-v6: 124\n    localpref: 50\n"),
            bgp_pool_objects(&[
                &format!("  aggregationLength: 32\n{POOLS}"),
                &format!("  aggregationLength: 30\n  aggregationLengthV6: 124\n{POOLS}  localPref: 50\n"),
            ]),
        ),
        // bgp-communities
        (
            "bgp-communities: one Community, aliases sorted, used by name",
            format!("bgp-communities:\n  z: 65535:65281\n  a: large:1:2:3\n{bgp_pool}  bgp-advertisements:\n  - communities: [z]\n"),
            bgp_pool_objects(&[&format!("  communities:\n  - z\n{POOLS}")])
                + "apiVersion: metallb.io/v1beta1\nkind: Community\nmetadata:\n  name: communities\n  namespace: metallb-system\nspec:\n  communities:\n  - name: a\n    value: large:1:2:3\n  - name: z\n    value: 65535:65281\n---\n",
        ),
        // peers
        ("peers: peer-address, peer-asn, my-asn; hold time 90s", PEER.into(), peer(1, PEER_SPEC)),
        (
            "peer-port",
            format!("{PEER}  peer-port: 1179\n"),
            peer(1, &format!("{PEER_SPEC}  peerPort: 1179\n")),
        ),
        (
            "hold-time, rounded down to seconds, written as Go writes durations",
            format!("{PEER}  hold-time: 180.9s\n"),
            peer(1, &PEER_SPEC.replace("1m30s", "3m0s")),
        ),
        (
            "hold-time: 0 (no keepalives)",
            format!("{PEER}  hold-time: 0s\n"),
            peer(1, &PEER_SPEC.replace("1m30s", "0s")),
        ),
        (
            "keepalive-time",
            format!("{PEER}  keepalive-time: 30s\n"),
            peer(1, &PEER_SPEC.replace("  myASN", "  keepaliveTime: 30s\n  myASN")),
        ),
        (
            "router-id",
            format!("{PEER}  router-id: 10.0.0.100\n"),
            peer(1, &format!("{PEER_SPEC}  routerID: 10.0.0.100\n")),
        ),
        (
            "source-address",
            format!("{PEER}  source-address: 10.0.0.2\n"),
            peer(1, &format!("{PEER_SPEC}  sourceAddress: 10.0.0.2\n")),
        ),
        (
            "password; a number is its text, as Go reads it",
            format!("{PEER}  password: 1234\n"),
            peer(1, &PEER_SPEC.replace("  peerASN", "  password: \"1234\"\n  peerASN")),
        ),
        (
            "ebgp-multihop",
            format!("{PEER}  ebgp-multihop: true\n"),
            peer(1, &PEER_SPEC.replace("  holdTime", "  ebgpMultiHop: true\n  holdTime")),
        ),
        (
            "bfd-profile, renamed as its profile",
            format!("{PEER}  bfd-profile: Fast_BFD\nbfd-profiles:\n- name: Fast_BFD\n"),
            peer(1, &format!("  bfdProfile: fast-bfd\n{PEER_SPEC}"))
                + &bfd("fast-bfd", "  echoMode: false\n  passiveMode: false\n"),
        ),
        (
            "node-selectors: match-labels (a number is its text) and match-expressions",
            format!("{PEER}  node-selectors:\n  - match-labels: {{rack: 1, zone: \"on\"}}\n    match-expressions:\n    - {{key: kubernetes.io/arch, operator: In, values: [amd64, arm64]}}\n    - {{key: spot, operator: DoesNotExist}}\n  - match-labels: {{kubernetes.io/hostname: node-2}}\n"),
            peer(
                1,
                &PEER_SPEC.replace(
                    "  peerASN",
                    "  nodeSelectors:\n  - matchExpressions:\n    - key: kubernetes.io/arch\n      operator: In\n      values:\n      - amd64\n      - arm64\n    - key: spot\n      operator: DoesNotExist\n    matchLabels:\n      rack: \"1\"\n      zone: \"on\"\n  - matchLabels:\n      kubernetes.io/hostname: node-2\n  peerASN",
                ),
            ),
        ),
        (
            "several peers: peer1, peer2",
            format!("{PEER}- peer-address: 2001:db8::1\n  peer-asn: 64501\n  my-asn: 64500\n"),
            peer(1, PEER_SPEC) + &peer(2, &PEER_SPEC.replace("10.0.0.1", "2001:db8::1")),
        ),
        // bfd-profiles
        (
            "bfd-profiles: every field",
            "bfd-profiles:\n- name: full\n  receive-interval: 300\n  transmit-interval: 301\n  detect-multiplier: 5\n  echo-interval: 50\n  echo-mode: true\n  passive-mode: true\n  minimum-ttl: 200\n".into(),
            bfd("full", "  detectMultiplier: 5\n  echoInterval: 50\n  echoMode: true\n  minimumTtl: 200\n  passiveMode: true\n  receiveInterval: 300\n  transmitInterval: 301\n"),
        ),
        (
            "bfd-profiles: name only; echo-mode and passive-mode always written",
            "bfd-profiles:\n- name: plain\n".into(),
            bfd("plain", "  echoMode: false\n  passiveMode: false\n"),
        ),
        // Names
        (
            "names that are not object names are renamed as MetalLB renames them",
            "address-pools:\n- name: 01_Pool_A\n  protocol: layer2\n  addresses: [192.0.2.0/28]\n".into(),
            pool("pool-a", "  addresses:\n  - 192.0.2.0/28\n") + &l2(1, "pool-a"),
        ),
    ];
    for (what, input, want) in &cases {
        let got = converted(input);
        assert_eq!(&got, &format!("{HEADER}{want}"), "{what}");
    }
}

#[test]
fn the_namespace_is_the_option_else_the_config_maps_else_metallb_system() {
    let config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config\n  namespace: lb\ndata:\n  config: |\n    address-pools:\n    - name: a\n      protocol: layer2\n      addresses: [192.0.2.0/28]\n";
    let bare = "address-pools:\n- name: a\n  protocol: layer2\n  addresses: [192.0.2.0/28]\n";
    let in_namespace = |namespace: &str| {
        format!(
            "{HEADER}{}{}",
            pool("a", "  addresses:\n  - 192.0.2.0/28\n"),
            l2(1, "a")
        )
        .replace(
            "namespace: metallb-system",
            &format!("namespace: {namespace}"),
        )
    };
    let option = |namespace: Option<&str>| MigrateOptions {
        namespace: namespace.map(str::to_owned),
    };
    let cases = [
        (config_map.to_owned(), None, "lb"),
        (config_map.to_owned(), Some("other"), "other"),
        (bare.to_owned(), None, "metallb-system"),
        (bare.to_owned(), Some("other"), "other"),
        (
            config_map.replace("  namespace: lb\n", ""),
            None,
            "metallb-system",
        ),
    ];
    for (input, namespace, want) in cases {
        assert_eq!(
            converted_with(&input, &option(namespace), want),
            in_namespace(want),
            "{input} --namespace {namespace:?}"
        );
    }
}

/// MetalLB v0.12's `TestParse` cases that it refused (`internal/config/config_test.go`),
/// with the error given here; and more of the same kind.
#[test]
fn what_metallb_refused_is_an_error_naming_the_field_and_the_value() {
    let peer = |extra: &str| {
        format!("peers:\n- my-asn: 42\n  peer-asn: 42\n  peer-address: 1.2.3.4\n{extra}")
    };
    let bgp_pool = |extra: &str| {
        format!(
            "address-pools:\n- name: pool1\n  protocol: bgp\n  addresses: [10.20.0.0/16]\n{extra}"
        )
    };
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "invalid yaml",
            "foo:<>$@$2r24j90".into(),
            vec!["configuration: not a mapping of address-pools, peers, bgp-communities, bfd-profiles"],
        ),
        (
            "invalid peer-address",
            "peers:\n- my-asn: 42\n  peer-asn: 42\n  peer-address: 1.2.3.400\n".into(),
            vec!["peers[0] (1.2.3.400): peer-address \"1.2.3.400\": not an IP address"],
        ),
        (
            "missing peer-address",
            "peers:\n- my-asn: 42\n  peer-asn: 42\n".into(),
            vec!["peers[0]: peer-address: missing"],
        ),
        (
            "invalid my-asn",
            "peers:\n- peer-asn: 42\n  peer-address: 1.2.3.4\n".into(),
            vec!["peers[0] (1.2.3.4): my-asn: missing: the local AS number"],
        ),
        (
            "invalid peer-asn",
            "peers:\n- my-asn: 42\n  peer-address: 1.2.3.4\n".into(),
            vec!["peers[0] (1.2.3.4): peer-asn: missing: the peer's AS number"],
        ),
        (
            "invalid ebgp-multihop",
            peer("  ebgp-multihop: true\n"),
            vec!["peers[0] (1.2.3.4): ebgp-multihop \"true\": is for eBGP, and this peer is iBGP (my-asn equals peer-asn)"],
        ),
        (
            "invalid hold time (wrong format)",
            peer("  hold-time: foo\n"),
            vec!["peers[0] (1.2.3.4): hold-time \"foo\": time: invalid duration \"foo\""],
        ),
        (
            "hold time without a unit",
            peer("  hold-time: 90\n"),
            vec!["peers[0] (1.2.3.4): hold-time \"90\": time: missing unit in duration \"90\""],
        ),
        (
            "invalid hold time (too short)",
            peer("  hold-time: 1s\n"),
            vec!["peers[0] (1.2.3.4): hold-time \"1s\": must be 0 or at least 3s"],
        ),
        (
            "invalid keepalive time",
            peer("  keepalive-time: soon\n"),
            vec!["peers[0] (1.2.3.4): keepalive-time \"soon\": time: invalid duration \"soon\""],
        ),
        (
            "keepalive time longer than the hold time",
            peer("  hold-time: 9s\n  keepalive-time: 10s\n"),
            vec!["peers[0] (1.2.3.4): keepalive-time \"10s\": must not be longer than the hold time (9s)"],
        ),
        (
            "invalid router ID",
            peer("  router-id: oh god how do I BGP\n"),
            vec!["peers[0] (1.2.3.4): router-id \"oh god how do I BGP\": not an IP address"],
        ),
        (
            "invalid source address",
            peer("  source-address: 10.0.0.300\n"),
            vec!["peers[0] (1.2.3.4): source-address \"10.0.0.300\": not an IP address"],
        ),
        (
            "invalid label node selector shape",
            peer("  node-selectors:\n  - match-labels:\n      foo:\n        bar: baz\n"),
            vec!["configuration: peers[0].node-selectors[0].match-labels.foo: invalid type: map, expected a string at line 7 column 7"],
        ),
        (
            "invalid expression node selector (missing key)",
            peer("  node-selectors:\n  - match-expressions:\n    - operator: In\n      values: [foo, bar]\n"),
            vec!["peers[0] (1.2.3.4): node-selectors[0] \"{\\\"matchExpressions\\\":[{\\\"key\\\":\\\"\\\",\\\"operator\\\":\\\"In\\\",\\\"values\\\":[\\\"foo\\\",\\\"bar\\\"]}]}\": label key \"\" has an empty name"],
        ),
        (
            "invalid expression node selector (missing operator)",
            peer("  node-selectors:\n  - match-expressions:\n    - key: foo\n      values: [foo, bar]\n"),
            vec!["peers[0] (1.2.3.4): node-selectors[0] \"{\\\"matchExpressions\\\":[{\\\"key\\\":\\\"foo\\\",\\\"operator\\\":\\\"\\\",\\\"values\\\":[\\\"foo\\\",\\\"bar\\\"]}]}\": operator \"\" is not one of In, NotIn, Exists, DoesNotExist"],
        ),
        (
            "invalid expression node selector (invalid operator)",
            peer("  node-selectors:\n  - match-expressions:\n    - key: foo\n      operator: Surrounds\n      values: [foo, bar]\n"),
            vec!["peers[0] (1.2.3.4): node-selectors[0] \"{\\\"matchExpressions\\\":[{\\\"key\\\":\\\"foo\\\",\\\"operator\\\":\\\"Surrounds\\\",\\\"values\\\":[\\\"foo\\\",\\\"bar\\\"]}]}\": operator \"Surrounds\" is not one of In, NotIn, Exists, DoesNotExist"],
        ),
        (
            "duplicate peers",
            peer("- my-asn: 42\n  peer-asn: 42\n  peer-address: 1.2.3.4\n  hold-time: 90s\n"),
            vec!["peers[1] (1.2.3.4): the same session as peers[0]"],
        ),
        (
            "no pool name",
            "address-pools:\n-\n".into(),
            vec![
                "address-pools[0]: name: missing",
                "address-pools[0]: addresses: the pool has no addresses",
                "address-pools[0]: protocol: missing: layer2 or bgp",
            ],
        ),
        (
            "address pool with no addresses",
            "address-pools:\n- name: pool1\n  protocol: bgp\n".into(),
            vec!["address-pools[0] (pool1): addresses: the pool has no addresses"],
        ),
        (
            "address pool with no protocol",
            "address-pools:\n- name: pool1\n  addresses: [10.0.0.0/24]\n".into(),
            vec!["address-pools[0] (pool1): protocol: missing: layer2 or bgp"],
        ),
        (
            "address pool with unknown protocol",
            "address-pools:\n- name: pool1\n  protocol: babel\n  addresses: [10.0.0.0/24]\n".into(),
            vec!["address-pools[0] (pool1): protocol \"babel\": unknown protocol: MetalLB's are layer2 and bgp"],
        ),
        (
            "invalid pool CIDR",
            "address-pools:\n- name: pool1\n  protocol: bgp\n  addresses:\n  - 100.200.300.400/24\n".into(),
            vec!["address-pools[0] (pool1): addresses[0] \"100.200.300.400/24\": invalid CIDR"],
        ),
        (
            "invalid pool CIDR prefix length",
            "address-pools:\n- name: pool1\n  protocol: bgp\n  addresses:\n  - 1.2.3.0/33\n".into(),
            vec!["address-pools[0] (pool1): addresses[0] \"1.2.3.0/33\": invalid CIDR: prefix length 33 is more than 32"],
        ),
        (
            "invalid pool CIDR, first address of the range is after the second",
            "address-pools:\n- name: pool1\n  protocol: bgp\n  addresses:\n  - 1.2.3.10-1.2.3.1\n".into(),
            vec!["address-pools[0] (pool1): addresses[0] \"1.2.3.10-1.2.3.1\": start 1.2.3.10 is after end 1.2.3.1"],
        ),
        (
            "bad aggregation length (too long)",
            bgp_pool("  bgp-advertisements:\n  - aggregation-length: 33\n"),
            vec!["address-pools[0] (pool1): bgp-advertisements[0].aggregation-length \"33\": must be from 1 to 32"],
        ),
        (
            "bad IPv6 aggregation length (too long)",
            bgp_pool("  bgp-advertisements:\n  - aggregation-length-v6: 129\n"),
            vec!["address-pools[0] (pool1): bgp-advertisements[0].aggregation-length-v6 \"129\": must be from 0 to 128"],
        ),
        (
            "bad aggregation length (incompatible with CIDR)",
            "address-pools:\n- name: pool1\n  protocol: bgp\n  addresses:\n  - 10.20.30.40/24\n  - 1.2.3.0/28\n  bgp-advertisements:\n  - aggregation-length: 26\n".into(),
            vec!["address-pools[0] (pool1): bgp-advertisements[0].aggregation-length \"26\": is shorter than the prefix length 28 of 1.2.3.0-1.2.3.15: a /26 route would take in addresses outside the pool"],
        ),
        (
            "aggregation length by range, too wide",
            "address-pools:\n- name: pool1\n  protocol: bgp\n  addresses:\n  - 3.3.3.2-3.3.3.254\n  bgp-advertisements:\n  - aggregation-length: 24\n".into(),
            vec!["address-pools[0] (pool1): bgp-advertisements[0].aggregation-length \"24\": is shorter than the prefix length 26 of 3.3.3.2-3.3.3.254: a /24 route would take in addresses outside the pool"],
        ),
        (
            "bad community literal (wrong format)",
            bgp_pool("  bgp-advertisements:\n  - communities: [\"1234\"]\n"),
            vec!["address-pools[0] (pool1): bgp-advertisements[0].communities[0] \"1234\": not a community: AS:value (16 bits each) or large:global:local1:local2 (32 bits each), and no name in bgp-communities"],
        ),
        (
            "bad community literal (asn part doesn't fit)",
            bgp_pool("  bgp-advertisements:\n  - communities: [\"99999999:1\"]\n"),
            vec!["address-pools[0] (pool1): bgp-advertisements[0].communities[0] \"99999999:1\": section \"99999999\" is not a number from 0 to 65535, and no name in bgp-communities"],
        ),
        (
            "bad community literal (community# part doesn't fit)",
            bgp_pool("  bgp-advertisements:\n  - communities: [\"1:99999999\"]\n"),
            vec!["address-pools[0] (pool1): bgp-advertisements[0].communities[0] \"1:99999999\": section \"99999999\" is not a number from 0 to 65535, and no name in bgp-communities"],
        ),
        (
            "bad community ref (unknown ref)",
            bgp_pool("  bgp-advertisements:\n  - communities: [\"flarb\"]\n"),
            vec!["address-pools[0] (pool1): bgp-advertisements[0].communities[0] \"flarb\": not a community: AS:value (16 bits each) or large:global:local1:local2 (32 bits each), and no name in bgp-communities"],
        ),
        (
            "bad community ref (ref asn doesn't fit)",
            format!("bgp-communities:\n  flarb: 99999999:1\n{}", bgp_pool("  bgp-advertisements:\n  - communities: [\"flarb\"]\n")),
            vec!["bgp-communities: flarb \"99999999:1\": section \"99999999\" is not a number from 0 to 65535"],
        ),
        (
            "bad large community",
            "bgp-communities:\n  big: large:1:2:4294967296\n  marker: huge:1:2:3\n".into(),
            vec![
                "bgp-communities: big \"large:1:2:4294967296\": section \"4294967296\" is not a number from 0 to 4294967295",
                "bgp-communities: marker \"huge:1:2:3\": not a community: AS:value (16 bits each) or large:global:local1:local2 (32 bits each)",
            ],
        ),
        (
            "duplicate pool definition",
            "address-pools:\n- name: pool1\n  protocol: bgp\n  addresses: [10.0.0.0/24]\n- name: pool1\n  protocol: bgp\n  addresses: [10.0.1.0/24]\n- name: pool2\n  protocol: bgp\n  addresses: [10.0.2.0/24]\n".into(),
            vec!["address-pools[1] (pool1): name \"pool1\": duplicate definition: address-pools[0] has the same name"],
        ),
        (
            "two names that become the same object name",
            "address-pools:\n- name: Pool_1\n  protocol: layer2\n  addresses: [10.0.0.0/24]\n- name: pool-1\n  protocol: layer2\n  addresses: [10.0.1.0/24]\n".into(),
            vec!["address-pools[1] (pool-1): name \"pool-1\": becomes \"pool-1\", the name address-pools[0] gets too; rename one"],
        ),
        (
            "a name with no letter",
            "address-pools:\n- name: \"2024\"\n  protocol: layer2\n  addresses: [10.0.0.0/24]\n".into(),
            vec!["address-pools[0] (2024): name \"2024\": cannot be made the name of the IPAddressPool: it has no letter"],
        ),
        (
            "a name that stays invalid",
            "bfd-profiles:\n- name: fast profile\n".into(),
            vec!["bfd-profiles[0] (fast profile): name \"fast profile\": cannot be made the name of the BFDProfile: it must be a lowercase RFC 1123 subdomain: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit; rename it"],
        ),
        (
            "duplicate CIDRs (found by metallb validate's rules, on the objects written)",
            "address-pools:\n- name: pool1\n  protocol: bgp\n  addresses:\n  - 10.0.0.0/8\n- name: pool2\n  protocol: bgp\n  addresses:\n  - 10.0.0.0/8\n".into(),
            vec!["IPAddressPool metallb-system/pool2: spec.addresses[0] \"10.0.0.0/8\": overlaps \"10.0.0.0/8\" of IPAddressPool metallb-system/pool1"],
        ),
        (
            "overlapping CIDRs",
            "address-pools:\n- name: pool1\n  protocol: bgp\n  addresses:\n  - 10.0.0.0/8\n- name: pool2\n  protocol: bgp\n  addresses:\n  - 10.0.0.0/16\n".into(),
            vec!["IPAddressPool metallb-system/pool2: spec.addresses[0] \"10.0.0.0/16\": overlaps \"10.0.0.0/8\" of IPAddressPool metallb-system/pool1"],
        ),
        (
            "BGP advertisements in layer2 pool",
            "address-pools:\n- name: pool1\n  protocol: layer2\n  addresses:\n  - 10.0.0.0/16\n  bgp-advertisements:\n  - communities: [\"flarb\"]\n".into(),
            vec!["address-pools[0] (pool1): bgp-advertisements: a layer2 pool cannot have bgp-advertisements (MetalLB refuses it)"],
        ),
        (
            "Peer with non existing BFD Profile",
            "bfd-profiles:\n- name: default\npeers:\n- my-asn: 42\n  peer-asn: 42\n  peer-address: 1.2.3.4\n  bfd-profile: zzz\n".into(),
            vec!["peers[0] (1.2.3.4): bfd-profile \"zzz\": names no entry of bfd-profiles"],
        ),
        (
            "Multiple BFD Profiles with the same name",
            "bfd-profiles:\n- name: default\n- name: foo\n- name: foo\n".into(),
            vec!["bfd-profiles[2] (foo): name \"foo\": duplicate definition: bfd-profiles[1] has the same name"],
        ),
        (
            "BFD Profile with too low receive interval",
            "bfd-profiles:\n- name: default\n  receive-interval: 2\n".into(),
            vec!["bfd-profiles[0] (default): receive-interval \"2\": must be from 10 to 60000"],
        ),
        (
            "BFD Profile with too high range receive interval, and every other bound",
            "bfd-profiles:\n- name: default\n  receive-interval: 90000\n  transmit-interval: 9\n  detect-multiplier: 256\n  echo-interval: 60001\n  minimum-ttl: 0\n".into(),
            vec![
                "bfd-profiles[0] (default): receive-interval \"90000\": must be from 10 to 60000",
                "bfd-profiles[0] (default): transmit-interval \"9\": must be from 10 to 60000",
                "bfd-profiles[0] (default): detect-multiplier \"256\": must be from 2 to 255",
                "bfd-profiles[0] (default): echo-interval \"60001\": must be from 10 to 60000",
                "bfd-profiles[0] (default): minimum-ttl \"0\": must be from 1 to 254",
            ],
        ),
        (
            "Duplicate bgp advertisement definition",
            bgp_pool("  bgp-advertisements:\n  - aggregation-length: 26\n  - aggregation-length: 26\n"),
            vec!["address-pools[0] (pool1): bgp-advertisements[1]: duplicate definition: the same as bgp-advertisements[0]"],
        ),
        (
            "Duplicate communities definition",
            format!("bgp-communities:\n  bar: 64512:1234\n{}", bgp_pool("  bgp-advertisements:\n  - communities: [\"bar\", \"bar\"]\n")),
            vec!["address-pools[0] (pool1): bgp-advertisements[0].communities[1] \"bar\": duplicate definition of the community"],
        ),
        (
            "type errors, each with its place",
            "address-pools:\n- name: a\n  protocol: layer2\n  addresses: 10.0.0.0/24\n  auto-assign: \"yes\"\npeers:\n- my-asn: 4294967296\n  peer-port: -1\n".into(),
            vec![
                "configuration: address-pools[0].addresses: invalid type: string \"10.0.0.0/24\", expected a sequence at line 4 column 3",
                "configuration: address-pools[0].auto-assign: invalid type: string \"yes\", expected a boolean at line 5 column 3",
                "configuration: peers[0].my-asn: invalid value: integer `4294967296`, expected u32 at line 7 column 3",
                "configuration: peers[0].peer-port: invalid value: integer `-1`, expected u16 at line 8 column 3",
            ],
        ),
        (
            "a key written twice",
            "address-pools:\n- name: a\n  name: b\n".into(),
            vec!["input document 1: address-pools[0].name: key written twice, at line 2 column 3 and again at line 3 column 3"],
        ),
    ];
    for (what, input, want) in &cases {
        assert_eq!(&errors(input), want, "{what}");
    }
}

#[test]
fn a_config_map_is_read_with_its_problems_named() {
    let cases: Vec<(&str, &str, Vec<&str>)> = vec![
        (
            "a type error of the ConfigMap, after an empty document",
            "---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [config]\ndata: {config: ''}\n",
            vec![
                "ConfigMap: metadata.name: invalid type: sequence, expected a string at line 6 column 3",
            ],
        ),
        (
            "another kind",
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\n",
            vec![
                "input: apiVersion/kind \"metallb.io/v1beta1 IPAddressPool\": not MetalLB's configuration: give its ConfigMap (v1 ConfigMap `config`, `kubectl get configmap -n metallb-system config -o yaml`) or the YAML of its data.config",
            ],
        ),
        (
            "no data.config",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\ndata:\n  config.yaml: |\n    peers: []\n",
            vec![
                "ConfigMap metallb-system/config: data.config: missing: MetalLB reads its configuration from the key `config` (the ConfigMap has keys config.yaml)",
            ],
        ),
        (
            "no data",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\n",
            vec![
                "ConfigMap metallb-system/config: data.config: missing: MetalLB reads its configuration from the key `config` (the ConfigMap has no data)",
            ],
        ),
        (
            "data that is not text",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata:\n  config: [a]\n",
            vec![
                "ConfigMap: data.config: invalid type: sequence, expected a string at line 5 column 3",
            ],
        ),
        (
            "two documents",
            "address-pools: []\n---\npeers: []\n",
            vec!["input: holds 2 YAML documents; give one: the ConfigMap, or its data.config"],
        ),
        (
            "not YAML",
            "address-pools: [\n",
            vec![
                "input document 1: not valid YAML: did not find expected node content at line 2 column 1, while parsing a flow node",
            ],
        ),
        (
            "a type error inside data.config, placed in it",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata:\n  config: |\n    address-pools:\n    - name: a\n      protocol: layer2\n      avoid-buggy-ips: 1\n",
            vec![
                "data.config: address-pools[0].avoid-buggy-ips: invalid type: integer `1`, expected a boolean at line 4 column 3 of data.config",
            ],
        ),
    ];
    for (what, input, want) in &cases {
        assert_eq!(&errors(input), want, "{what}");
    }
}

#[test]
fn unknown_keys_renames_bgp_and_emptiness_are_warnings() {
    assert_eq!(
        warnings(
            "address-pools:\n- name: a\n  protocol: layer2\n  addresses: [192.0.2.0/28]\n  auto_assign: false\npeer:\n- {}\n"
        ),
        [
            "configuration: address-pools[0].auto_assign: unknown key, ignored (MetalLB v0.12 refused it) at line 5 column 3",
            "configuration: peer: unknown key, ignored (MetalLB v0.12 refused it) at line 6 column 1",
        ]
    );
    assert_eq!(
        warnings(
            "address-pools:\n- name: My_Pool\n  protocol: bgp\n  addresses: [192.0.2.0/28]\npeers:\n- {my-asn: 1, peer-asn: 2, peer-address: 10.0.0.1, vrf: red}\n"
        ),
        [
            "configuration: peers[0].vrf: unknown key, ignored (MetalLB v0.12 refused it) at line 6 column 52",
            "address-pools[0] (My_Pool): name \"My_Pool\": the IPAddressPool is named \"my-pool\": an object name is a lowercase RFC 1123 subdomain (renamed as MetalLB's converter renames it)",
            "address-pools[0] (My_Pool): protocol \"bgp\": converted to a BGPAdvertisement: announced over BGP by the standalone speaker (not yet by the Kubernetes speaker)",
            "peers: converted to BGPPeer objects: the standalone speaker peers with them (not yet the Kubernetes speaker)",
        ]
    );
    for empty in ["", "---\n", "# nothing\n"] {
        let migration = migrate(empty, &MigrateOptions::default());
        assert!(migration.errors.is_empty());
        assert_eq!(migration.objects.unwrap().to_yaml().unwrap(), HEADER);
        assert_eq!(
            messages(&migration.warnings),
            ["input: empty: there is nothing to convert"]
        );
    }
    // An empty configuration converts to no object.
    assert_eq!(converted("peers: []\n"), HEADER);
}

#[test]
fn names_are_made_kubernetes_names_as_metallb_makes_them() {
    let cases = [
        ("pool", Some("pool")),
        ("a", Some("a")),
        ("Capitalized-AddressPool", Some("capitalized-addresspool")),
        ("01-numbered-addresspool", Some("numbered-addresspool")),
        ("underscored_bfd_profile", Some("underscored-bfd-profile")),
        (
            "tooLongBFDProfileName01-tooLongBFDProfileName02-tooLongBFDProfileName03-tooLongBFDProfileName04",
            Some("toolongbfdprofilename01-toolongbfdprofilename02-toolongbfdprofi"),
        ),
        ("pool.v4", Some("pool.v4")),
        ("_-_", None),
        ("123", None),
        ("Ünïcode", Some("nïcode")),
    ];
    for (name, want) in cases {
        assert_eq!(metallb_k8s_name(name).as_deref(), want, "{name}");
    }
}

#[test]
fn the_widest_block_of_a_range_is_its_cidr_summary_s() {
    let cases = [
        ("10.0.0.0/24", 24),
        ("10.20.30.40/24", 24),
        ("1.2.3.0/28", 28),
        ("3.3.3.2-3.3.3.254", 26),
        ("3.3.3.0-3.3.3.255", 24),
        ("3.3.3.1-3.3.3.1", 32),
        ("0.0.0.0-255.255.255.255", 0),
        ("0.0.0.1-255.255.255.255", 1),
        ("2001:db8::/64", 64),
        ("2001:db8::1-2001:db8::ffff", 113),
        ("::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0),
    ];
    for (text, want) in cases {
        let range = AddrRange::parse(text).unwrap();
        assert_eq!(widest_block(&range), want, "{text}");
    }
}

#[test]
fn a_config_map_from_kubectl_converts() {
    // As `kubectl get configmap -n metallb-system config -o yaml` prints it.
    let text = r#"apiVersion: v1
data:
  config: |
    address-pools:
    - name: default
      protocol: layer2
      addresses:
      - 192.168.1.240-192.168.1.250
kind: ConfigMap
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"v1","data":{"config":"..."},"kind":"ConfigMap","metadata":{"annotations":{},"name":"config","namespace":"metallb-system"}}
  creationTimestamp: "2022-03-01T10:00:00Z"
  name: config
  namespace: metallb-system
  resourceVersion: "1234"
  uid: 0b9c7d1c-3a4e-4a57-9c1e-6c1f1f1f1f1f
"#;
    assert_eq!(
        converted(text),
        format!(
            "{HEADER}{}{}",
            pool("default", "  addresses:\n  - 192.168.1.240-192.168.1.250\n"),
            l2(1, "default")
        )
    );
    assert!(
        migrate(text, &MigrateOptions::default())
            .warnings
            .is_empty()
    );
}
