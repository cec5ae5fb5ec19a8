//! The `metallb` command line: exit codes and what it prints.

use std::{path::PathBuf, process::Command};

const BINARY: &str = env!("CARGO_BIN_EXE_metallb");

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, text: &str) -> Self {
        let dir = std::env::temp_dir().join(metallb_user::lab::unique_name("cli"));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        Self(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BINARY)
        .args(args)
        .output()
        .expect("run metallb");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn example() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/standalone.yaml").to_string()
}

#[test]
fn validate_accepts_the_shipped_example() {
    let (code, stdout, _) = run(&["validate", &example()]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.ends_with("is valid: 1 IPAddressPool(s), 1 L2Advertisement(s), 3 Service(s), 0 Node(s), 0 warning(s)\n"), "{stdout}");
}

#[test]
fn validate_lists_every_error_and_exits_1() {
    let file = Scratch::new(
        "bad.yaml",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {addresses: [192.0.2.0/24, 192.0.2.300/32]}\n\
         ---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: b}\nspec: {addresses: [192.0.2.128/25]}\n\
         ---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2, namespace: default}\nspec: {ipAddressPools: [a, missing]}\n",
    );
    let (code, stdout, _) = run(&["validate", file.0.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "error: IPAddressPool metallb-system/a: spec.addresses[1] \"192.0.2.300/32\": invalid CIDR",
            "error: IPAddressPool metallb-system/b: spec.addresses[0] \"192.0.2.128/25\": overlaps \"192.0.2.0/24\" of IPAddressPool metallb-system/a",
            "error: L2Advertisement default/l2: metadata.namespace \"default\": MetalLB reads its objects only from namespace \"metallb-system\"",
        ],
        "{stdout}"
    );
    assert!(
        lines[3]
            .starts_with("warning: L2Advertisement default/l2: spec.ipAddressPools[1] \"missing\""),
        "{stdout}"
    );
    assert!(lines[4].ends_with("is invalid: 3 error(s)"), "{stdout}");
}

#[test]
fn validate_reports_yaml_errors_and_unreadable_files() {
    let file = Scratch::new(
        "broken.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: [oops\n",
    );
    let (code, stdout, _) = run(&["validate", file.0.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stdout.contains("document 1") && stdout.contains("not valid YAML"),
        "{stdout}"
    );
    let (code, _, stderr) = run(&["validate", "/nonexistent/metallb.yaml"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("reading /nonexistent/metallb.yaml"),
        "{stderr}"
    );
}

#[test]
fn validate_honours_the_namespace_flag() {
    let file = Scratch::new(
        "ns.yaml",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a, namespace: lb}\nspec: {addresses: [192.0.2.0/24]}\n",
    );
    let path = file.0.to_str().unwrap();
    assert_eq!(run(&["validate", path]).0, 1);
    assert_eq!(run(&["validate", path, "--namespace", "lb"]).0, 0);
}

#[test]
fn usage_errors_exit_2_with_help() {
    let (code, _, stderr) = run(&["plan"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--config"), "{stderr}");
    let (code, _, stderr) = run(&["speaker", "--config", "x", "--xdp-mode", "turbo"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("native") && stderr.contains("generic"),
        "{stderr}"
    );
}

#[test]
fn plan_shows_every_service_in_a_table_and_in_json() {
    let example = example();
    let args = [
        "plan",
        "--config",
        &example,
        "--node-name",
        "node-1",
        "--interface",
        "lo",
    ];
    let (code, table, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines,
        [
            "SERVICE      IPS                         POOL       ANNOUNCED BY  ON THIS NODE (node-1)",
            "default/api  192.0.2.100, 2001:db8::100  demo-pool  node-1        answers on lo",
            "default/db   192.0.2.110                 demo-pool  node-1        answers on lo",
            "default/web  192.0.2.101                 demo-pool  node-1        answers on lo",
            "",
            "POOL       IN USE  ADDRESSES",
            "demo-pool  4       54",
        ]
    );
    let mut json_args = args.to_vec();
    json_args.extend(["--output", "json"]);
    let (code, json, _) = run(&json_args);
    assert_eq!(code, 0);
    let value: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(value["node"], "node-1");
    assert_eq!(value["services"][0]["service"], "default/api");
    assert_eq!(
        value["services"][0]["ips"],
        serde_json::json!(["192.0.2.100", "2001:db8::100"])
    );
    assert_eq!(
        value["services"][0]["this_node"],
        serde_json::json!({"announce": {"interfaces": ["lo"]}})
    );
    assert_eq!(
        value["pools"][0],
        serde_json::json!({"pool": "demo-pool", "in_use": 4, "total": "54"})
    );
}

#[test]
fn plan_says_why_a_service_gets_nothing_and_who_else_announces() {
    let file = Scratch::new(
        "plan.yaml",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: small}\nspec: {addresses: [192.0.2.10/32]}\n\
         ---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2}\nspec: {nodeSelectors: [{matchLabels: {role: lb}}]}\n\
         ---\napiVersion: v1\nkind: Node\nmetadata: {name: node-1}\n\
         ---\napiVersion: v1\nkind: Node\nmetadata: {name: node-2, labels: {role: lb}}\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {type: LoadBalancer}\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {type: LoadBalancer}\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {name: c}\nspec: {type: ClusterIP}\n",
    );
    let (code, table, stderr) = run(&[
        "plan",
        "--config",
        file.0.to_str().unwrap(),
        "--node-name",
        "node-1",
        "--interface",
        "lo",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        row("default/a").contains("192.0.2.10")
            && row("default/a").contains("suppresses (announced by node-2)"),
        "{table}"
    );
    assert!(row("default/b").contains("allocation failed"), "{table}");
    assert!(row("default/c").contains("ignored"), "{table}");
}

#[test]
fn logs_can_be_json_for_machines() {
    let file = Scratch::new(
        "warn.yaml",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {addresses: [192.0.2.0/24]}\n\
         ---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2}\nspec: {ipAddressPools: [nope]}\n",
    );
    let path = file.0.to_str().unwrap();
    let (code, _, stderr) = run(&[
        "--log-format",
        "json",
        "plan",
        "--config",
        path,
        "--interface",
        "lo",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let line: serde_json::Value =
        serde_json::from_str(stderr.lines().next().expect("a log line")).expect("JSON log line");
    assert_eq!(line["level"], "WARN");
    assert!(
        line["fields"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no IPAddressPool has this name"),
        "{line}"
    );
    let (_, _, text) = run(&["plan", "--config", path, "--interface", "lo"]);
    assert!(
        text.contains("WARN")
            && serde_json::from_str::<serde_json::Value>(text.lines().next().unwrap_or(""))
                .is_err()
    );
}

#[test]
fn validate_refuses_what_the_api_server_would_and_warns_of_what_can_never_be_met() {
    let pool = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {addresses: [192.0.2.0/24]}\n";
    let refused = Scratch::new(
        "refused.yaml",
        &format!(
            "{pool}---\napiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{type: LoadBalancer, externalTrafficPolicy: Locale, ports: [{{port: 70000, protocol: BOGUS}}]}}\n\
             ---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {}}}\nspec: {{addresses: ['127.0.0.0/8']}}\n",
            "p".repeat(65_000)
        ),
    );
    let (code, stdout, _) = run(&["validate", refused.0.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    let shown = format!("{}… (65000 characters)", "p".repeat(60));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..5],
        [
            "error: Service default/web: spec.ports[0].port \"70000\": must be 1 to 65535",
            "error: Service default/web: spec.ports[0].protocol \"BOGUS\": not one of TCP, UDP, SCTP",
            "error: Service default/web: spec.externalTrafficPolicy \"Locale\": not one of Cluster, Local",
            &format!(
                "error: IPAddressPool metallb-system/{shown}: metadata.name \"{shown}\": must be no more than 253 characters (has 65000)"
            ),
            &format!(
                "error: IPAddressPool metallb-system/{shown}: spec.addresses[0] \"127.0.0.0/8\": holds addresses that can never be a VIP on a LAN: it overlaps 127.0.0.0/8 (loopback: never leaves a host)"
            ),
        ],
        "{stdout}"
    );
    assert!(lines[5].ends_with("is invalid: 5 error(s)"), "{stdout}");
    assert!(stdout.len() < 2_000, "{} bytes", stdout.len());

    let unmet = Scratch::new(
        "unmet.yaml",
        &format!(
            "{pool}---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, annotations: {{metallb.io/adress-pool: a, metallb.io/loadBalancerIPs: not-an-ip}}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
        ),
    );
    let (code, stdout, _) = run(&["validate", unmet.0.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>()[..2],
        [
            "warning: Service default/web: metadata.annotations \"metallb.io/adress-pool\": MetalLB reads no such annotation, so it is ignored; the closest it reads is metallb.io/address-pool",
            "warning: Service default/web: annotation metallb.io/loadBalancerIPs=\"not-an-ip\": \"not-an-ip\" is not an IP address: the service can get no address",
        ],
        "{stdout}"
    );
    assert!(stdout.ends_with("is valid: 1 IPAddressPool(s), 0 L2Advertisement(s), 1 Service(s), 0 Node(s), 2 warning(s)\n"), "{stdout}");
}
