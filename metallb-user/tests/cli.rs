//! The `metallb` command line: exit codes and what it prints.

use std::{
    io::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

const BINARY: &str = env!("CARGO_BIN_EXE_metallb");

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, text: &str) -> Self {
        let dir = std::env::temp_dir().join(metallb_testkit::lab::unique_name("cli"));
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

/// What the command is given on standard input.
enum Input<'a> {
    Nothing,
    Text(&'a str),
    File(&'a str),
}

/// Runs `metallb` with `input` and `RUST_LOG=off` (so that only what is printed, not
/// logged, is seen); fails the test if it has not ended within the deadline.
fn run_quiet(args: &[&str], input: Input<'_>) -> (i32, String, String) {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.stdin(match input {
        Input::Nothing => Stdio::null(),
        Input::Text(_) => Stdio::piped(),
        Input::File(path) => std::fs::File::open(path).expect("input file").into(),
    });
    let mut child = command.spawn().expect("run metallb");
    if let (Input::Text(text), Some(mut stdin)) = (&input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).expect("write stdin");
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (done, wait) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let out = match wait.recv_timeout(Duration::from_secs(30)) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("metallb {args:?} did not end within 30 s");
        }
    };
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
            "default/api  192.0.2.101, 2001:db8::100  demo-pool  node-1        answers on lo",
            "default/db   192.0.2.110                 demo-pool  node-1        answers on lo",
            "default/web  192.0.2.100                 demo-pool  node-1        answers on lo",
            "",
            "POOL       IN USE  ADDRESSES",
            "demo-pool  4       54",
            "",
            "INTERFACE  XDP     WHY",
            "lo         attach  named by --interface",
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
        serde_json::json!(["192.0.2.101", "2001:db8::100"])
    );
    assert_eq!(
        value["services"][0]["this_node"],
        serde_json::json!({"announce": {"interfaces": ["lo"]}})
    );
    assert_eq!(
        value["pools"][0],
        serde_json::json!({"pool": "demo-pool", "in_use": 4, "total": "54"})
    );
    assert_eq!(
        value["interfaces"],
        serde_json::json!({
            "attached": [{"interface": "lo", "reason": "command_line"}],
            "skipped": [],
            "missing": [],
            "exclusions": null,
        })
    );
}

#[test]
fn a_bad_exclusion_pattern_refuses_the_file_and_names_the_pattern() {
    let file = Scratch::new(
        "excludel2.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: metallb-excludel2, namespace: metallb-system}\n\
         data:\n  excludel2.yaml: |\n    announcedInterfacesToExclude:\n    - ^veth.*\n    - ^cali(\n",
    );
    let path = file.0.to_str().unwrap();
    let error = "error: ConfigMap metallb-system/metallb-excludel2: data[excludel2.yaml].announcedInterfacesToExclude[1] \"^cali(\": not a valid regular expression (RE2 syntax, as Go's regexp): unclosed group\n";
    let (code, stdout, _) = run(&["validate", path]);
    assert_eq!(code, 1);
    assert!(stdout.starts_with(error), "{stdout}");
    let (code, stdout, stderr) = run_quiet(&["plan", "--config", path], Input::Nothing);
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert!(stderr.starts_with(error), "{stderr}");
}

#[test]
fn plan_warns_when_both_annotation_prefixes_disagree() {
    let file = Scratch::new(
        "prefixes.yaml",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {addresses: [192.0.2.0/30]}\n\
         ---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: b}\nspec: {addresses: [192.0.2.8/30]}\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {name: x, annotations: {metallb.io/address-pool: b, metallb.universe.tf/address-pool: a}}\nspec: {type: LoadBalancer}\n",
    );
    let path = file.0.to_str().unwrap();
    let (code, table, stderr) = run(&["plan", "--config", path, "--interface", "lo"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(table.contains("default/x  192.0.2.8"), "{table}");
    assert!(
        table.lines().any(|line| line
            == "warning: default/x: annotations metallb.io/address-pool=\"b\" and metallb.universe.tf/address-pool=\"a\" disagree; metallb.io/address-pool is used (as MetalLB does), remove one of them"),
        "{table}"
    );
    let (_, json, _) = run(&[
        "plan",
        "--config",
        path,
        "--interface",
        "lo",
        "--output",
        "json",
    ]);
    let value: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert!(
        value["services"][0]["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .starts_with("annotations metallb.io/address-pool=\"b\""),
        "{json}"
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
    // default/b cannot get an address: the table is printed all the same.
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.ends_with(
            "1 service(s) cannot get what they ask for (allocation failed): see the table\n"
        ),
        "{stderr}"
    );
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

#[test]
fn plan_help_says_what_the_exit_status_means() {
    let (code, help, _) = run(&["plan", "--help"]);
    assert_eq!(code, 0);
    assert!(
        help.contains(
            "Exit status: 0 when every LoadBalancer service gets what it asks for; 3 when"
        ) && help.contains("1 when the configuration")
            && help.contains("--max-config-bytes <BYTES>"),
        "{help}"
    );
}

#[test]
fn what_is_not_a_regular_file_is_refused_by_type_and_plan_says_why() {
    let file = Scratch::new("config.yaml", "x: 1\n");
    let dir = file.0.parent().unwrap().to_path_buf();
    let fifo = dir.join("fifo");
    // No writer ever opens it: reading it would block forever.
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let under_a_file = file.0.join("inner.yaml");
    let cases = [
        (
            "/dev/zero".to_string(),
            "reading /dev/zero: it is a character device, not a regular file (to read from a pipe, give `-` and pipe it into standard input)",
        ),
        (
            "/dev/urandom".to_string(),
            "reading /dev/urandom: it is a character device, not a regular file",
        ),
        (
            fifo.display().to_string(),
            "fifo: it is a FIFO (named pipe), not a regular file",
        ),
        (
            dir.display().to_string(),
            ": it is a directory, not a regular file",
        ),
        (
            "/nonexistent/metallb.yaml".to_string(),
            "reading /nonexistent/metallb.yaml: No such file or directory (os error 2)",
        ),
        (
            under_a_file.display().to_string(),
            "inner.yaml: Not a directory (os error 20)",
        ),
    ];
    for (path, expected) in &cases {
        for args in [
            vec!["validate", path.as_str()],
            vec!["plan", "--config", path.as_str(), "--interface", "lo"],
        ] {
            let (code, stdout, stderr) = run_quiet(&args, Input::Nothing);
            assert_eq!(code, 1, "{args:?}: {stdout}{stderr}");
            assert!(
                stderr.starts_with("error: reading ") && stderr.contains(expected),
                "{args:?}: {stderr}"
            );
        }
    }
}

#[test]
fn plan_prints_every_error_of_an_invalid_file_with_logs_off() {
    let file = Scratch::new(
        "bad.yaml",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {addresses: [192.0.2.300/32]}\n",
    );
    let path = file.0.to_str().unwrap();
    let (code, stdout, stderr) = run_quiet(&["plan", "--config", path], Input::Nothing);
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        format!(
            "error: IPAddressPool metallb-system/a: spec.addresses[0] \"192.0.2.300/32\": invalid CIDR\nerror: {path} is not a valid configuration: 1 error(s)\n"
        )
    );
}

#[test]
fn what_is_read_is_capped_and_the_cap_can_be_raised() {
    let example = example();
    let size = std::fs::metadata(&example).unwrap().len();
    let exact = size.to_string();
    let less = (size - 1).to_string();
    assert_eq!(
        run_quiet(
            &["validate", &example, "--max-config-bytes", &exact],
            Input::Nothing
        )
        .0,
        0
    );
    let (code, _, stderr) = run_quiet(
        &["validate", &example, "--max-config-bytes", &less],
        Input::Nothing,
    );
    assert_eq!(code, 1);
    assert!(
        stderr.ends_with(&format!(
            "standalone.yaml: larger than {less} bytes, the limit for a configuration (raise it with --max-config-bytes)\n"
        )),
        "{stderr}"
    );
    // Standard input: the same limit, for what never ends too.
    let (code, _, stderr) = run_quiet(&["validate", "-"], Input::File("/dev/zero"));
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "error: reading standard input: larger than 4194304 bytes, the limit for a configuration (raise it with --max-config-bytes)\n"
    );
    let (code, _, stderr) = run_quiet(
        &["plan", "--config", "-", "--max-config-bytes", "1000"],
        Input::File("/dev/zero"),
    );
    assert_eq!(code, 1);
    assert!(stderr.contains("larger than 1000 bytes"), "{stderr}");
    // A file past the default limit is refused by its size, before it is read.
    let big = Scratch::new("big.yaml", "");
    std::fs::File::options()
        .write(true)
        .open(&big.0)
        .unwrap()
        .set_len(5 << 20)
        .unwrap();
    let (code, _, stderr) = run_quiet(&["validate", big.0.to_str().unwrap()], Input::Nothing);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("big.yaml: larger than 4194304 bytes"),
        "{stderr}"
    );
}

#[test]
fn standard_input_is_read_for_a_dash_but_not_by_the_speaker() {
    let text = std::fs::read_to_string(example()).unwrap();
    let (code, stdout, _) = run_quiet(&["validate", "-"], Input::Text(&text));
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with("standard input is valid: 1 IPAddressPool(s)"),
        "{stdout}"
    );
    let (code, table, _) = run_quiet(
        &[
            "plan",
            "--config",
            "-",
            "--node-name",
            "n",
            "--interface",
            "lo",
        ],
        Input::Text(&text),
    );
    assert_eq!(code, 0);
    assert!(table.starts_with("SERVICE "), "{table}");
    let (code, _, stderr) = run_quiet(&["speaker", "--config", "-"], Input::Nothing);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("standard input (`-`) cannot be followed, give a file"),
        "{stderr}"
    );
    let invalid = [0xffu8, b'\n'];
    let bad = Scratch::new("latin1.yaml", "");
    std::fs::write(&bad.0, [b"a: 1\nname: caf".as_slice(), &invalid].concat()).unwrap();
    let (code, _, stderr) = run_quiet(&["validate", bad.0.to_str().unwrap()], Input::Nothing);
    assert_eq!(code, 1);
    assert!(
        stderr.ends_with("latin1.yaml: not UTF-8 text (invalid byte at line 2 column 10)\n"),
        "{stderr}"
    );
}

/// A configuration whose names hold terminal escapes, a carriage return and a newline.
const HOSTILE: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: \"pool\\e[2J\"}\nspec: {addresses: [192.0.2.0/24]}\n\
---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2}\nspec: {}\n\
---\napiVersion: v1\nkind: Service\nmetadata: {name: \"\\e[31mred\\rcr\\nnl\"}\nspec: {type: LoadBalancer}\n\
---\napiVersion: v1\nkind: Service\nmetadata: {name: \"typo\\e]0;title\\a\", labels: {x: 1}}\n";

#[test]
fn names_with_control_characters_are_never_printed_raw() {
    let file = Scratch::new("hostile.yaml", HOSTILE);
    let path = file.0.to_str().unwrap();
    let raw = |text: &str| text.chars().any(|c| c.is_control() && c != '\n');
    let (code, stdout, stderr) = run_quiet(&["validate", path], Input::Nothing);
    assert_eq!(code, 1);
    assert!(!raw(&stdout) && !raw(&stderr), "{stdout:?} {stderr:?}");
    assert!(
        stdout.starts_with("error: document 4 (Service typo\\u{1b}]0;title\\u{7}): metadata.labels.x: invalid type: integer `1`, expected a string at line 18 column 47\n"),
        "{stdout}"
    );
    // Without the faulty Service the file is valid; whatever names are refused later
    // (Kubernetes name rules), nothing is printed raw and escaped names show.
    let valid = HOSTILE.rsplit_once("---").unwrap().0;
    let file = Scratch::new("hostile.yaml", valid);
    let path = file.0.to_str().unwrap();
    let (code, stdout, stderr) = run_quiet(&["validate", path], Input::Nothing);
    assert!(code == 0 || code == 1, "{stdout}{stderr}");
    assert!(!raw(&stdout) && !raw(&stderr), "{stdout:?} {stderr:?}");
    let args = [
        "plan",
        "--config",
        path,
        "--interface",
        "lo",
        "--node-name",
        "n\r",
    ];
    let (code, stdout, stderr) = run_quiet(&args, Input::Nothing);
    assert!(code == 0 || code == 1, "{stdout}{stderr}");
    assert!(!raw(&stdout) && !raw(&stderr), "{stdout:?} {stderr:?}");
    let shown = format!("{stdout}{stderr}");
    assert!(shown.contains("\\u{1b}[31mred\\rcr\\nnl"), "{shown}");
    if code == 0 {
        assert!(
            shown.contains("pool\\u{1b}[2J") && shown.contains("ON THIS NODE (n\\r)"),
            "{shown}"
        );
    }
}

#[test]
fn no_length_of_name_or_value_makes_plan_panic() {
    let long_pool = "p".repeat(65_000);
    let long_value = "x".repeat(70_000);
    let file = Scratch::new(
        "long.yaml",
        &format!(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {long_pool}}}\nspec: {{addresses: [192.0.2.0/24]}}\n\
             ---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: l2}}\nspec: {{}}\n\
             ---\napiVersion: v1\nkind: Service\nmetadata: {{name: a}}\nspec: {{type: LoadBalancer}}\n\
             ---\napiVersion: v1\nkind: Service\nmetadata:\n  name: b\n  annotations: {{metallb.io/loadBalancerIPs: {long_value}}}\nspec: {{type: LoadBalancer}}\n"
        ),
    );
    let path = file.0.to_str().unwrap();
    for output in ["table", "json"] {
        let (code, stdout, stderr) = run_quiet(
            &[
                "plan",
                "--config",
                path,
                "--interface",
                "lo",
                "--output",
                output,
            ],
            Input::Nothing,
        );
        // Valid or refused (names longer than Kubernetes allows), never a panic.
        assert!([1, 3].contains(&code), "{output}: {code} {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        if code == 3 {
            assert!(stdout.contains(&long_pool) && stdout.contains(&long_value));
        }
    }
}

/// `--garp-interval` and `--garp-duration` take durations as Go and Kubernetes tools
/// write them, and bare seconds; a bad one is a usage error naming the flag and why.
#[test]
fn speaker_garp_flags_take_go_durations() {
    let (code, help, _) = run(&["speaker", "--help"]);
    assert_eq!(code, 0);
    assert!(
        help.contains("--garp-interval <DURATION>") && help.contains("[default: 1.1s]"),
        "{help}"
    );
    assert!(
        help.contains("--garp-duration <DURATION>") && help.contains("[default: 5s]"),
        "{help}"
    );
    assert!(
        help.contains("--garp-rate <FRAMES>") && help.contains("[default: 1000]"),
        "{help}"
    );
    let (code, _, err) = run(&["speaker", "--garp-rate", "0"]);
    assert_eq!(code, 2);
    assert!(err.contains("--garp-rate"), "{err}");

    // Accepted: the speaker gets past its flags and stops at the datapath, on a pin
    // directory outside bpffs (nothing is loaded, no port is taken).
    let pins = std::env::temp_dir()
        .join(metallb_testkit::lab::unique_name("cli-pins"))
        .join("pins");
    let pins = pins.to_str().unwrap();
    let example = example();
    for (interval, duration) in [
        ("1.1s", "0s"),
        ("1100ms", "1m30s"),
        ("1.1", "5"),
        ("250ms", "1.5h2m3.5s"),
    ] {
        let (code, _, stderr) = run(&[
            "speaker",
            "--config",
            &example,
            "--pin-dir",
            pins,
            "--metrics-addr",
            "127.0.0.1:0",
            "--garp-interval",
            interval,
            "--garp-duration",
            duration,
        ]);
        assert_eq!(code, 1, "{interval} / {duration}: {stderr}");
        assert!(
            stderr.contains("not on a bpf filesystem"),
            "{interval} / {duration}: {stderr}"
        );
    }

    for (flag, value, reason) in [
        (
            "--garp-duration",
            "5x",
            "unknown time unit \"x\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations); expected a duration such as 5s, 1100ms, 1.1s, 1m30s, or seconds such as 1.1",
        ),
        (
            "--garp-duration",
            "-1s",
            "a duration cannot be negative; expected a duration such as 5s, 1100ms, 1.1s, 1m30s, or seconds such as 1.1",
        ),
        (
            "--garp-interval",
            "0s",
            "less than 10ms would flood the link; to announce only once, use --garp-duration 0s",
        ),
    ] {
        let (code, _, stderr) = run(&["speaker", "--config", "x", flag, value]);
        assert_eq!(code, 2, "{flag} {value}: {stderr}");
        assert!(
            stderr.starts_with(&format!(
                "error: invalid value '{value}' for '{flag} <DURATION>': {reason}\n"
            )),
            "{flag} {value}: {stderr}"
        );
    }
}

/// Every numeric flag has a range: a value outside it is a usage error (exit 2) that
/// names the flag, the value and why, before anything is loaded.
#[test]
fn numeric_flags_out_of_range_are_usage_errors() {
    const SPEAKER: &[&str] = &["speaker", "--config", "x"];
    const TOO_LONG: &str = "more than 24h is not a sensible value";
    // (command, flag, value, reason)
    let cases: &[(&[&str], &str, &str, &str)] = &[
        (
            SPEAKER,
            "--max-vips <MAX_VIPS>",
            "1073741824",
            "1073741824 is not in 1..=1048576",
        ),
        (
            SPEAKER,
            "--max-vips <MAX_VIPS>",
            "0",
            "0 is not in 1..=1048576",
        ),
        (
            &["validate", "x"],
            "--max-config-bytes <BYTES>",
            "0",
            "0 is not in 1..=1073741824",
        ),
        (
            &["validate", "x"],
            "--max-config-bytes <BYTES>",
            "1073741825",
            "1073741825 is not in 1..=1073741824",
        ),
        (
            SPEAKER,
            "--garp-interval <DURATION>",
            "0",
            "less than 10ms would flood the link; to announce only once, use --garp-duration 0s",
        ),
        (SPEAKER, "--garp-interval <DURATION>", "25h", TOO_LONG),
        (SPEAKER, "--garp-duration <DURATION>", "1000000h", TOO_LONG),
        (SPEAKER, "--pin-dir-wait <DURATION>", "25h", TOO_LONG),
        (
            &["controller"],
            "--lease-duration <DURATION>",
            "0s",
            "must be more than 0s",
        ),
        (
            &["controller"],
            "--renew-deadline <DURATION>",
            "0s",
            "must be more than 0s",
        ),
        (
            &["controller"],
            "--retry-period <DURATION>",
            "0s",
            "must be more than 0s",
        ),
        (
            &["controller"],
            "--retry-period <DURATION>",
            "1441m",
            TOO_LONG,
        ),
        (
            SPEAKER,
            "--probe-interval <DURATION>",
            "5ms",
            "less than 10ms would flood the link with probes",
        ),
        (
            SPEAKER,
            "--probe-interval <DURATION>",
            "61s",
            "more than 1m would leave a dead speaker's VIPs unanswered that long",
        ),
        (
            SPEAKER,
            "--suspicion-timeout <DURATION>",
            "0s",
            "less than 10ms would declare speakers down at any scheduling delay",
        ),
        (
            SPEAKER,
            "--suspicion-timeout <DURATION>",
            "1h",
            "more than 10m would leave a dead speaker's VIPs unanswered that long",
        ),
        (
            SPEAKER,
            "--membership-port <MEMBERSHIP_PORT>",
            "0",
            "0 is not in 1..=65535",
        ),
        (
            SPEAKER,
            "--membership-port <MEMBERSHIP_PORT>",
            "65536",
            "65536 is not in 1..=65535",
        ),
    ];
    // Flags that must hold together: the controller's Lease timings, as client-go
    // requires them. (arguments, message)
    let together: &[(&[&str], &str)] = &[
        (
            &["--lease-duration", "10s", "--renew-deadline", "10s"],
            "--lease-duration 10s must be more than --renew-deadline 10s",
        ),
        (
            &["--renew-deadline", "2s", "--retry-period", "2s"],
            "--renew-deadline 2s must be more than 1.2 x --retry-period 2s (client-go's jitter)",
        ),
        (
            &[
                "--lease-duration",
                "900ms",
                "--renew-deadline",
                "500ms",
                "--retry-period",
                "100ms",
            ],
            "--lease-duration 900ms must be at least 1s: the Lease holds whole seconds",
        ),
    ];
    for (flags, message) in together {
        let args = [&["controller"], *flags].concat();
        let (code, _, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!("error: {message}\n")),
            "{args:?}: {stderr}"
        );
    }
    for (command, flag, value, reason) in cases {
        let name = flag.split(' ').next().expect("flag");
        let mut args = command.to_vec();
        args.extend([name, value]);
        let (code, _, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!(
                "error: invalid value '{value}' for '{flag}': {reason}\n"
            )),
            "{args:?}: {stderr}"
        );
    }
}

/// Bad input not tabled above (directories, devices, missing files: see
/// `what_is_not_a_regular_file_is_refused_by_type_and_plan_says_why`; non-UTF-8:
/// `names_with_control_characters_are_never_printed_raw`; size:
/// `what_is_read_is_capped_and_the_cap_can_be_raised`), each with its exit code and
/// message, in bounded time: an empty file, a YAML alias bomb (a billion "lol"s from
/// 1 KB), a wrong apiVersion, an unknown kind, and an IPv6 range of 2^64 addresses.
#[test]
fn bad_inputs_each_have_their_message_and_exit_code() {
    const POOL: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a, namespace: metallb-system}\n";
    let mut bomb = String::from("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (name, previous) in ["b", "c", "d", "e", "f", "g", "h", "i"]
        .iter()
        .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
    {
        let refs = vec![format!("*{previous}"); 9].join(", ");
        bomb += &format!("{name}: &{name} [{refs}]\n");
    }
    let two_services = "---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: LoadBalancer, ipFamilies: [IPv6], ports: [{port: 80}]}\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {name: t}\nspec: {type: LoadBalancer, ipFamilies: [IPv6], ports: [{port: 80}]}\n";
    // (case, file, command, exit code, lines the output must hold)
    let cases: Vec<(&str, String, &str, i32, Vec<String>)> = vec![
        (
            "empty file",
            String::new(),
            "validate",
            0,
            vec![
                "is valid: 0 IPAddressPool(s), 0 L2Advertisement(s), 0 Service(s), 0 Node(s), 0 warning(s)".into(),
            ],
        ),
        (
            "alias bomb",
            bomb,
            "validate",
            1,
            vec!["error: document 1: not valid YAML: repetition limit exceeded".into()],
        ),
        (
            "wrong apiVersion",
            format!("{}spec: {{addresses: [192.0.2.0/24]}}\n", POOL.replace("v1beta1", "v9")),
            "validate",
            1,
            vec!["error: document 1 (IPAddressPool a): apiVersion/kind \"metallb.io/v9 IPAddressPool\": not a kind this configuration reads (metallb.io/v1beta1 IPAddressPool, ".into()],
        ),
        (
            "unknown kind",
            format!("{}spec: {{addresses: [192.0.2.0/24]}}\n", POOL.replace("IPAddressPool", "IPAddressPoool")),
            "validate",
            1,
            vec!["error: document 1 (IPAddressPoool a): apiVersion/kind \"metallb.io/v1beta1 IPAddressPoool\": not a kind".into()],
        ),
        (
            "IPv6 ranges of 2^64 addresses",
            format!("{POOL}spec: {{addresses: ['2001:db8::/64', '2001:db8:1::-2001:db8:1::ffff:ffff:ffff:ffff']}}\n{two_services}"),
            "plan",
            // Allocated (no L2Advertisement announces the pool: not a failure).
            0,
            vec![
                "default/s  2001:db8::1".into(),
                "default/t  2001:db8::2".into(),
                "a     2       36893488147419103231".into(),
            ],
        ),
    ];
    for (name, text, command, code_wanted, lines) in cases {
        let file = Scratch::new("bad.yaml", &text);
        let path = file.0.to_str().unwrap();
        let args = match command {
            "plan" => vec!["plan", "--config", path, "--interface", "lo"],
            _ => vec!["validate", path],
        };
        let (code, stdout, stderr) = run_quiet(&args, Input::Nothing);
        assert_eq!(code, code_wanted, "{name}: {stdout}{stderr}");
        for line in lines {
            assert!(
                stdout.contains(&line) || stderr.contains(&line),
                "{name}: {line:?} not in\n{stdout}{stderr}"
            );
        }
    }
}

/// Membership is configured as MetalLB's DaemonSet configures memberlist: `--help`
/// names MetalLB's variables beside the flags, and the controller's Secret flags.
#[test]
fn membership_flags_take_metallb_s_memberlist_variables() {
    let (code, help, _) = run(&["speaker", "--help"]);
    assert_eq!(code, 0);
    for (flag, variable) in [
        ("--membership-key-file", "METALLB_ML_SECRET_KEY_PATH"),
        ("--membership-bind-addr", "METALLB_ML_BIND_ADDR"),
        ("--membership-port", "METALLB_ML_BIND_PORT"),
        ("--speaker-selector", "METALLB_ML_LABELS"),
    ] {
        let at = help
            .find(flag)
            .unwrap_or_else(|| panic!("{flag} in {help}"));
        let next = help[at + 2..]
            .find("\n  -")
            .map_or(help.len(), |n| at + 2 + n);
        assert!(
            help[at..next].contains(&format!("[env: {variable}")),
            "{flag}: {}",
            &help[at..next]
        );
    }
    let (code, help, _) = run(&["controller", "--help"]);
    assert_eq!(code, 0);
    assert!(help.contains("--ml-secret-name"), "{help}");
    assert!(help.contains("[env: METALLB_ML_SECRET_NAME"), "{help}");
    assert!(help.contains("--deployment <DEPLOYMENT>"), "{help}");
    assert!(help.contains("[env: METALLB_DEPLOYMENT"), "{help}");
    // A bad address is a usage error naming the flag.
    let (code, _, err) = run(&["speaker", "--membership-bind-addr", "node-1"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--membership-bind-addr"), "{err}");
}
