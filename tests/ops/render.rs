//! The shipped deployment files, with the few substitutions a test needs (paths, ports, the
//! binary, the user). Every substitution must match the shipped text exactly once, so a test
//! cannot quietly run something other than what we ship: if a shipped line changes, the test
//! says which substitution no longer applies.

use std::path::{Path, PathBuf};

/// The repository root (the package's manifest directory).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A shipped file's text, e.g. `shipped("nginx/informd.conf")`.
pub fn shipped(path: &str) -> String {
    let full = repo().join(path);
    std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("reading shipped file {}: {e}", full.display()))
}

/// `text` with each `(from, to)` applied; each `from` must occur exactly once.
pub fn substitute(name: &str, text: &str, substitutions: &[(&str, String)]) -> String {
    let mut out = text.to_string();
    for (from, to) in substitutions {
        let found = out.matches(from).count();
        assert_eq!(
            found, 1,
            "{name}: expected {from:?} exactly once in the shipped file, found it {found} times; \
             update the test's substitutions with the shipped file"
        );
        out = out.replacen(from, to, 1);
    }
    out
}

/// `text` with every occurrence of `from` replaced (a path prefix used in several places);
/// `from` must occur at least once.
pub fn substitute_all(name: &str, text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "{name}: expected {from:?} in the shipped file; update the test's substitutions"
    );
    text.replace(from, to)
}

/// Writes `text` to `path`, creating parent directories.
pub fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create parent directory");
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// The value of `key=value` (supervisor) or `key value;` (nginx) or `Key=value` (systemd) on a
/// line of its own in `text`, first occurrence.
pub fn setting<'a>(text: &'a str, key: &str, separator: char) -> Option<&'a str> {
    text.lines().map(str::trim).find_map(|line| {
        let rest = line.strip_prefix(key)?;
        let rest = rest.strip_prefix(separator)?;
        Some(rest.trim().trim_end_matches(';').trim())
    })
}

/// Seconds in an nginx or systemd duration like `75s`, `20`, `2m`.
pub fn seconds(value: &str) -> u64 {
    let (number, unit) = value.split_at(
        value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len()),
    );
    let number: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("not a duration: {value:?}"));
    match unit {
        "" | "s" => number,
        "m" | "min" => number * 60,
        other => panic!("unexpected duration unit {other:?} in {value:?}"),
    }
}

/// The name of the user running the tests (`id -un`).
pub fn current_user() -> String {
    let output = std::process::Command::new("id")
        .arg("-un")
        .output()
        .expect("run id -un");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// This process's hard open-file limit, from /proc/self/limits.
pub fn hard_file_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits");
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|hard| hard.parse().ok())
        .unwrap_or(1024)
}

/// Finds a program on PATH or in the sbin directories (where Debian puts nginx, which a
/// non-root PATH often lacks). Panics with what to install when it is missing.
pub fn program(name: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    let candidates = path
        .split(':')
        .map(PathBuf::from)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from));
    for dir in candidates {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not installed; the deployment tests run it for real. Install it with \
         scripts/deps/ops.sh (apt-get install {package})"
    )
}
