//! `commit_priority`: the real binary's threads, read from /proc. With `realtime`, the SQLite
//! writer and its connection's thread run in Linux's realtime class and nothing else does;
//! without the privilege it needs, informd refuses to start and says what to grant; with
//! PostgreSQL it is refused, as there the commit runs in the database server.

use std::path::Path;
use std::process::Command;

use crate::daemon::{
    configured, configured_under, legitimate_user_gets_through, refused_at_start, Daemon,
};
use crate::helpers::postgres_server;

/// `SCHED_FIFO` in /proc's `policy` field.
const FIFO: u32 = 1;

/// Each thread of `pid`: its name and its scheduling policy.
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("task directory") {
        let task = task.expect("task").path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(task.join("comm")),
            std::fs::read_to_string(task.join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        // The fields after the name (which may hold spaces) start with the third, `state`;
        // `policy` is the 41st.
        let after_name = stat.rsplit_once(')').expect("stat has a name").1;
        let policy = after_name
            .split_whitespace()
            .nth(41 - 3)
            .and_then(|field| field.parse().ok())
            .expect("policy field");
        threads.push((name.trim_end().to_string(), policy));
    }
    threads
}

/// The names of `pid`'s threads in the realtime FIFO class, sorted.
fn realtime_threads(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = thread_policies(pid)
        .into_iter()
        .filter(|(_, policy)| *policy == FIFO)
        .map(|(name, _)| name)
        .collect();
    names.sort();
    names
}

/// Whether this process may move a thread into the realtime class, as informd would.
fn may_use_realtime() -> bool {
    Command::new("chrt")
        .args(["--fifo", "1", "true"])
        .status()
        .is_ok_and(|status| status.success())
}

#[tokio::test]
async fn by_default_no_thread_is_realtime() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(configured(dir.path()));
    legitimate_user_gets_through(&daemon, "7").await;
    let threads = thread_policies(daemon.child.id());
    assert!(
        threads.iter().all(|(_, policy)| *policy != FIFO),
        "{threads:?}"
    );
    if postgres_server().is_none() {
        assert!(
            threads.iter().any(|(name, _)| name == "informd-writer"),
            "the SQLite writer has a thread of its own: {threads:?}"
        );
    }
}

#[tokio::test]
async fn realtime_moves_the_sqlite_writer_and_its_connection_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = configured(dir.path());
    command.env("INFORMD_COMMIT_PRIORITY", "realtime");
    if postgres_server().is_some() {
        let output = refused_at_start(command);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("applies to the SQLite writer only")
                && stderr.contains("INFORMD_COMMIT_PRIORITY"),
            "{stderr}"
        );
        return;
    }
    if !may_use_realtime() {
        // Without the privilege the other test shows the refusal; nothing to look at here.
        eprintln!("skipped: this process may not use the realtime class");
        return;
    }
    let daemon = Daemon::start(command);
    legitimate_user_gets_through(&daemon, "7").await;
    assert_eq!(
        realtime_threads(daemon.child.id()),
        ["informd-writer", "sqlx-sqlite-wor"],
        "the writer and the one SQLite thread it opened"
    );
}

/// `configured`, run by a user that may not use the realtime class: as `nobody` when the tests
/// run as root, else with an `RLIMIT_RTPRIO` of 0.
fn unprivileged(dir: &Path) -> Command {
    if nix::unistd::geteuid().is_root() {
        configured_under(
            dir,
            "setpriv",
            &["--reuid=65534", "--regid=65534", "--clear-groups"],
        )
    } else {
        configured_under(dir, "prlimit", &["--rtprio=0:0"])
    }
}

#[tokio::test]
async fn realtime_without_the_privilege_is_refused_with_what_to_grant() {
    if postgres_server().is_some() {
        return; // refused for PostgreSQL whatever the privilege, above
    }
    let dir = tempfile::tempdir().unwrap();
    // `nobody` must be able to create the database here.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let mut command = unprivileged(dir.path());
    command.env("INFORMD_COMMIT_PRIORITY", "realtime");
    let output = refused_at_start(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("commit_priority = \"realtime\" could not move the store's writer")
            && stderr.contains("CAP_SYS_NICE")
            && stderr.contains("INFORMD_COMMIT_PRIORITY"),
        "{stderr}"
    );
    // The same user, with the default, starts.
    let mut command = unprivileged(dir.path());
    command.env("INFORMD_LISTEN", "127.0.0.1:0");
    let daemon = Daemon::start(command);
    legitimate_user_gets_through(&daemon, "8").await;
}
