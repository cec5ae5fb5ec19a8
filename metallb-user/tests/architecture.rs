//! The pure core (configuration and its checks, the allocator, the election, the
//! plan, the entries it hands the datapath; BGP's plan, FRR configuration and status)
//! imports nothing from the datapath, the kernel, the runtime or the agent's edges:
//! it is table-tested alone, and `metallb plan` and `metallb validate` run it without
//! privileges. This reads the core's sources and names every line that reaches out
//! of it (test modules excepted).

use std::path::{Path, PathBuf};

/// The core's files and folders, from `src/`.
const CORE: &[&str] = &[
    "allocator",
    "config",
    "election.rs",
    "entries.rs",
    "plan.rs",
    "plan",
    "bgp/plan.rs",
    "bgp/frr.rs",
    "bgp/status.rs",
];

/// What the core must not name: the datapath and the kernel, the async runtime and
/// the HTTP server, and the agent's I/O edges.
const OUTSIDE: &[&str] = &[
    "crate::datapath",
    "datapath::",
    "aya::",
    "aya_log",
    "tokio",
    "axum",
    "nix::",
    "libc::",
    "crate::speaker",
    "crate::announce",
    "crate::kubernetes",
    "crate::metrics",
    "crate::membership",
    "crate::fencing",
    "crate::bgp::speaker",
    "crate::bgp::frr",
];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .collect();
        entries.sort();
        for entry in entries {
            // Test modules may use anything.
            let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name == "tests" || name == "tests.rs" || name == "testdata" {
                continue;
            }
            rust_files(&entry, out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// The lines of `text` that name something of [`OUTSIDE`] before its first
/// `#[cfg(test)]`, with their numbers; comments are skipped.
fn reaching_out(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .take_while(|(_, line)| line.trim() != "#[cfg(test)]")
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .filter(|(_, line)| OUTSIDE.iter().any(|name| line.contains(name)))
        .map(|(number, line)| (number + 1, line.trim().to_string()))
        .collect()
}

#[test]
fn the_pure_core_imports_nothing_from_the_datapath_the_runtime_or_the_edges() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for part in CORE {
        let path = src.join(part);
        assert!(path.exists(), "{} is gone: update CORE", path.display());
        rust_files(&path, &mut files);
    }
    assert!(
        files.len() > 10,
        "the core's files were not found: {files:?}"
    );
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        for (number, line) in reaching_out(&text) {
            found.push(format!(
                "{}:{number}: {line}",
                file.strip_prefix(&src).unwrap_or(file).display()
            ));
        }
    }
    assert!(
        found.is_empty(),
        "the pure core reaches out of itself:\n{}",
        found.join("\n")
    );
}

#[test]
fn a_line_that_reaches_out_is_named_and_test_modules_are_not_read() {
    let text = "use std::net::IpAddr;\n\
                // a comment about crate::datapath is fine\n\
                use crate::datapath::maps::VipKey;\n\
                #[cfg(test)]\n\
                mod tests { use tokio::time; }\n";
    assert_eq!(
        reaching_out(text),
        vec![(3, "use crate::datapath::maps::VipKey;".to_string())]
    );
}
