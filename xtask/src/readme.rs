//! The README's "Two commands" block and `.ci/run` must name the same commands in the
//! same order: CI runs what a newcomer runs, and cannot drift from it. `.ci/run` then
//! runs [`CI_EXTRA`], checks that are not README commands.

/// What `.ci/run` runs after the README's two commands.
pub const CI_EXTRA: &[&str] = &["cargo xtask demo --kubernetes", "cargo xtask demo --bgp"];

/// The commands of the README's "Two commands" block (comments stripped), in order.
pub fn two_commands(readme: &str) -> Vec<String> {
    let Some(section) = readme.split("\n## Two commands").nth(1) else {
        return Vec::new();
    };
    let Some(block) = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
    else {
        return Vec::new();
    };
    block.lines().filter_map(command_of).collect()
}

/// The commands `.ci/run` runs (every line that is not blank, a comment or shell set-up).
pub fn ci_commands(script: &str) -> Vec<String> {
    script
        .lines()
        .filter(|line| {
            let line = line.trim();
            !(line.starts_with("set ") || line.starts_with("cd "))
        })
        .filter_map(command_of)
        .collect()
}

/// A line without its comment and surrounding blanks, if anything is left.
fn command_of(line: &str) -> Option<String> {
    let command = line.split('#').next().unwrap_or_default().trim();
    (!command.is_empty()).then(|| command.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(relative: &str) -> String {
        let path = crate::workspace_root()
            .expect("workspace root")
            .join(relative);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn ci_runs_the_readme_commands_in_order_then_the_extra_checks() {
        let readme = two_commands(&read("README.md"));
        assert_eq!(
            readme,
            ["cargo xtask demo", "cargo xtask test"],
            "the README's Two commands block changed: update .ci/run and this test together"
        );
        let mut wanted = readme;
        wanted.extend(CI_EXTRA.iter().map(|c| c.to_string()));
        assert_eq!(ci_commands(&read(".ci/run")), wanted);
    }

    #[test]
    fn a_ci_script_running_only_the_tests_is_caught() {
        let script = "#!/usr/bin/env bash\nset -euo pipefail\ncd \"$(dirname \"$0\")/..\"\ncargo xtask test\n";
        assert_eq!(ci_commands(script), ["cargo xtask test"]);
        assert_ne!(ci_commands(script), two_commands(&read("README.md")));
    }

    #[test]
    fn commands_lose_comments_and_blank_lines() {
        let readme = "x\n## Two commands\n\ntext\n\n```sh\ncargo xtask demo    # the demo\n\n  cargo   xtask test # tests\n```\n## Next\n```sh\nother\n```\n";
        assert_eq!(
            two_commands(readme),
            ["cargo xtask demo", "cargo xtask test"]
        );
        assert!(two_commands("no such section").is_empty());
    }
}
