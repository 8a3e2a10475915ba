//! Browsers and publishers through nginx, with informd under supervisord.

use serde_json::json;

use crate::helpers::Client;
use crate::stack::Stack;

/// Browser-like clients (token in the query, the site's Origin) connect through nginx and get
/// what backends publish through nginx: notifications to their user, broadcasts to everyone.
#[tokio::test]
async fn browsers_receive_what_is_published_through_nginx() {
    let stack = Stack::start().await;
    let (mut tab_a, welcome) = stack.connect("42", "").await;
    assert_eq!(welcome["user"], "42");
    let (mut tab_b, _) = stack.connect("42", "").await;
    let (mut other, _) = stack.connect("7", "").await;

    let response = stack
        .publish(&json!({"to": "42", "kind": "like", "actor": {"id": "7", "name": "alice"}}))
        .await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    for tab in [&mut tab_a, &mut tab_b] {
        let frame = tab.next_of_type("notification").await;
        assert_eq!(frame["notification"]["kind"], "like");
        assert_eq!(frame["notification"]["seq"], 1);
        assert_eq!(frame["unread"], 1);
    }

    let response = stack
        .publish(&json!({"topic": "global", "data": {"text": "maintenance at noon"}}))
        .await;
    assert_eq!(response.status(), 200);
    for client in [&mut tab_a, &mut tab_b, &mut other] {
        let frame = client.next_of_type("broadcast").await;
        assert_eq!(frame["data"]["text"], "maintenance at noon");
    }
}

/// nginx passes Host with its port, so the same-origin check works on a non-default port, and
/// still refuses another site's page.
#[tokio::test]
async fn the_origin_check_works_behind_nginx() {
    let stack = Stack::start().await;
    let token = stack.token("42");
    let url = format!("ws://127.0.0.1:{}/inform?token={token}", stack.port);
    let refused = Client::connect(&url, &[("Origin", "https://evil.example")])
        .await
        .err()
        .expect("a foreign origin is refused");
    assert_eq!(refused.status, 403, "{refused:?}");
    // The same site on another port is another origin.
    let other_port = format!("http://127.0.0.1:{}", stack.informd_port);
    let refused = Client::connect(&url, &[("Origin", &other_port)])
        .await
        .err()
        .expect("another port is another origin");
    assert_eq!(refused.status, 403, "{refused:?}");
    // This site's own pages get in.
    assert!(stack.browser(&token, "").await.is_ok());
}

/// The `[supervisord] minfds` of the drop-in takes effect: supervisord, started with the
/// usual soft limit of 1024, raises it to minfds, and informd (which raises its own soft limit
/// to the hard one) has at least that many.
#[tokio::test]
async fn minfds_raises_the_open_file_limit() {
    let stack = Stack::start().await;
    let (supervisord_soft, _) = open_file_limits(stack.supervisord_pid as i32);
    assert_eq!(supervisord_soft, stack.minfds, "supervisord applied minfds");
    let pid = stack.informd_pid().expect("informd runs");
    let (soft, _) = open_file_limits(pid);
    assert!(
        soft >= stack.minfds,
        "informd's open-file limit {soft} is below minfds {}",
        stack.minfds
    );
    assert!(
        stack
            .informd_log()
            .contains(&format!("open-file limit {soft}")),
        "informd logs its limit: {}",
        stack.informd_log()
    );
}

/// A process's open-file limits (soft, hard) from /proc.
fn open_file_limits(pid: i32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut numbers = line
        .split_whitespace()
        .filter_map(|word| word.parse::<u64>().ok());
    (numbers.next().unwrap(), numbers.next().unwrap())
}
