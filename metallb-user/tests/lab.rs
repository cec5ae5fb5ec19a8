//! `cargo xtask lab` up and down (needs root): two nodes with their speakers on
//! examples/standalone.yaml, a VIP answered from the client, then everything the lab
//! made gone (namespaces, speaker processes, pin directories, its state directory).

use std::path::Path;

use metallb_testkit::{
    kept_lab::{self, down, up},
    lab::unique_name,
};

const BINARY: &str = env!("CARGO_BIN_EXE_metallb");

#[test]
fn netns_lab_up_answers_and_down_leaves_nothing_behind() {
    let name = unique_name("lab");
    let state_dir = std::env::temp_dir().join(&name);
    let options = kept_lab::Options {
        nodes: 2,
        binary: BINARY.into(),
        base_config: Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/standalone.yaml"),
        state_dir: state_dir.clone(),
        name: name.clone(),
        membership_port: 17546,
        metrics_port: 17547,
    };
    let state = match up(&options) {
        Ok(state) => state,
        Err(e) => panic!("lab up: {e:#}"),
    };
    // Removed however the checks below end.
    struct Down<'a>(&'a Path);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            if self.0.exists() {
                let _ = down(self.0);
            }
        }
    }
    let guard = Down(&state_dir);
    assert_eq!(state.namespaces.len(), 4, "{state:?}");
    let text = kept_lab::describe(&state);
    assert!(
        text.contains(&format!("nsenter --net=/run/netns/{}", state.client_ns)),
        "{text}"
    );
    assert!(text.contains("192.0.2.11:17547/metrics"), "{text}");
    // A second lab in the same place is refused.
    let again = up(&options).expect_err("a second lab");
    assert!(
        format!("{again:#}").contains("a lab is up already"),
        "{again:#}"
    );

    // One of the two nodes answers web's VIP (the pool's first address).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let macs = [
        "02:00:00:00:01:01".to_string(),
        "02:00:00:00:01:02".to_string(),
    ];
    loop {
        let out = metallb_testkit::lab::exec_in(
            &state.client_ns,
            "arping",
            &[
                "-c",
                "1",
                "-w",
                "1",
                "-I",
                metallb_testkit::cluster::CLIENT_IF,
                "192.0.2.100",
            ],
        )
        .expect("arping");
        let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
        if macs.iter().any(|m| text.contains(&format!("[{m}]"))) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no answer: {text}");
    }

    let removed = down(&state_dir).expect("lab down");
    drop(guard);
    assert!(
        removed.iter().any(|r| r.starts_with("speaker of node-0")),
        "{removed:?}"
    );
    for ns in &state.namespaces {
        assert!(!Path::new("/run/netns").join(ns).exists(), "{ns} left");
    }
    for speaker in &state.speakers {
        // Exited (a zombie of this process at most: it has no exe), or the id reused.
        assert!(
            !std::fs::read_link(format!("/proc/{}/exe", speaker.pid))
                .is_ok_and(|exe| exe == Path::new(BINARY)),
            "speaker {} left",
            speaker.pid
        );
        assert!(
            !speaker.pin_dir.exists(),
            "{} left",
            speaker.pin_dir.display()
        );
    }
    assert!(!state_dir.exists());
    // Nothing left to remove.
    assert!(down(&state_dir).is_err());
}
