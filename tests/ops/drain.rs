//! `supervisorctl stop`: SIGTERM, sessions closed with 1001, exit 0 within the grace, before
//! supervisor's stopwaitsecs would resort to SIGKILL.

use std::time::{Duration, Instant};

use crate::render::{self, shipped};
use crate::stack::Stack;

#[tokio::test]
async fn supervisorctl_stop_drains_with_1001_within_the_grace() {
    let stack = Stack::start().await;
    let env = shipped("supervisor/informd.env.example");
    let grace = Duration::from_secs(
        render::setting(&env, "INFORMD_SHUTDOWN_GRACE_SECS", '=')
            .expect("the env example sets the grace")
            .parse()
            .expect("a number of seconds"),
    );
    let mut clients = Vec::new();
    for user in ["1", "2", "3", "3"] {
        clients.push(stack.connect(user, "").await.0);
    }

    let started = Instant::now();
    let stop = {
        let config = stack.path("supervisord.conf");
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(render::program("supervisorctl", "supervisor"))
                .arg("--configuration")
                .arg(config)
                .args(["stop", "informd"])
                .output()
                .expect("run supervisorctl")
        })
    };
    for client in &mut clients {
        assert_eq!(client.closed().await, Some(1001), "going away");
    }
    let output = stop.await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("informd: stopped"),
        "{output:?}"
    );
    assert!(
        elapsed < grace,
        "the stop took {elapsed:?}, longer than the grace {grace:?}"
    );
    let supervisord = stack.supervisord_log();
    assert!(
        supervisord.contains("stopped: informd (exit status 0)"),
        "informd exited 0 on SIGTERM, not killed: {supervisord}"
    );
    let log = stack.informd_log();
    assert!(log.contains("SIGTERM: shutting down"), "{log}");
    assert!(log.contains("informd stopped"), "{log}");
    assert!(!log.contains("grace period over"), "{log}");
}
