//! `metallb migrate-config`: MetalLB's legacy ConfigMap in, metallb.io objects out, on
//! the command line (the conversion itself is table-tested in `config::legacy`).

use std::{
    io::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
};

const BINARY: &str = env!("CARGO_BIN_EXE_metallb");

/// One of MetalLB's own converter test inputs (`configmaptocrs/testdata`).
fn metallb_testdata(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/config/legacy/testdata")
        .join(path)
}

/// Exit status, standard output, standard error; logs off, so that only what is
/// printed is seen.
fn run(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(BINARY)
        .args(args)
        .env("RUST_LOG", "off")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run metallb");
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const LAYER2_CONFIG_MAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: config
  namespace: metallb-system
data:
  config: |
    address-pools:
    - name: Default_Pool
      protocol: layer2
      addresses:
      - 192.168.1.240-192.168.1.250
      avoid-buggy-ips: true
";

const LAYER2_OBJECTS: &str =
    "# Converted from MetalLB's ConfigMap configuration by `metallb migrate-config`.
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata:
  name: default-pool
  namespace: metallb-system
spec:
  addresses:
  - 192.168.1.240-192.168.1.250
  avoidBuggyIPs: true
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata:
  name: l2advertisement1
  namespace: metallb-system
spec:
  ipAddressPools:
  - default-pool
---
";

const RENAMED: &str = "warning: address-pools[0] (Default_Pool): name \"Default_Pool\": the IPAddressPool is named \"default-pool\": an object name is a lowercase RFC 1123 subdomain (renamed as MetalLB's converter renames it)\n";

#[test]
fn a_config_map_on_standard_input_becomes_objects_that_validate_accepts() {
    let (code, stdout, stderr) = run(&["migrate-config", "-"], Some(LAYER2_CONFIG_MAP));
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (0, LAYER2_OBJECTS, RENAMED)
    );
    let (code, stdout, stderr) = run(&["validate", "-"], Some(&stdout));
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[test]
fn a_file_is_converted_with_its_warnings_on_standard_error() {
    let path = metallb_testdata("configmap-data/config-data-address-pools.yaml");
    let (code, stdout, stderr) = run(&["migrate-config", path.to_str().unwrap()], None);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with(
            "# Converted from MetalLB's ConfigMap configuration by `metallb migrate-config`.\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: my-ip-space-bgp\n"
        ),
        "{stdout}"
    );
    assert_eq!(
        stderr,
        "warning: address-pools[0] (my-ip-space-bgp): protocol \"bgp\": converted to a BGPAdvertisement: announced over BGP by the standalone speaker (not yet by the Kubernetes speaker)\n\
         warning: IPAddressPool metallb-system/my-ip-space-bgp: spec.addresses[1] \"fc00:f853:0ccd:e799::/124\": fc00:f853:ccd:e799:: is its subnet-router anycast address (RFC 4291), which the routers of the link answer: it is never handed out\n"
    );
}

#[test]
fn the_namespace_option_places_the_objects() {
    let (code, stdout, _) = run(
        &["migrate-config", "--namespace", "lb", "-"],
        Some(LAYER2_CONFIG_MAP),
    );
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        LAYER2_OBJECTS.replace("namespace: metallb-system", "namespace: lb")
    );
}

#[test]
fn errors_name_the_field_and_the_value_and_nothing_is_printed() {
    let config = "address-pools:\n- name: a\n  protocol: l2\n  addresses: [192.168.1.0/33]\n";
    let (code, stdout, stderr) = run(&["migrate-config", "-"], Some(config));
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (
            1,
            "",
            "error: address-pools[0] (a): addresses[0] \"192.168.1.0/33\": invalid CIDR: prefix length 33 is more than 32\n\
             error: address-pools[0] (a): protocol \"l2\": unknown protocol: MetalLB's are layer2 and bgp\n\
             error: standard input cannot be converted: 2 error(s)\n"
        )
    );
}

#[test]
fn the_input_is_read_as_every_configuration_is() {
    let (code, stdout, stderr) = run(
        &["migrate-config", "--max-config-bytes", "10", "-"],
        Some(LAYER2_CONFIG_MAP),
    );
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (
            1,
            "",
            "error: reading standard input: larger than 10 bytes, the limit for a configuration (raise it with --max-config-bytes)\n"
        )
    );
    let (code, _, stderr) = run(&["migrate-config", "/dev/zero"], None);
    assert_eq!(
        (code, stderr.as_str()),
        (
            1,
            "error: reading /dev/zero: it is a character device, not a regular file (to read from a pipe, give `-` and pipe it into standard input)\n"
        )
    );
}

#[test]
fn help_says_what_it_reads_and_writes() {
    let (code, stdout, _) = run(&["migrate-config", "--help"], None);
    assert_eq!(code, 0);
    for expected in [
        "kubectl get configmap -n metallb-system config -o yaml",
        "l2advertisementN",
        "bgpadvertisementN",
        "peerN",
        "--namespace <NAMESPACE>",
        "Exit status: 0 when",
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in:\n{stdout}");
    }
}
