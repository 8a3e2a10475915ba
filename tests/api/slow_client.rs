//! A client that stops reading is closed with 1013 without delaying anyone else, and loses
//! nothing: it resumes with `since`.

use serde_json::json;

use crate::helpers::{code, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_with_1013_and_does_not_delay_others() {
    let app = spawn_app_with(|c| {
        c.outbound_queue = 16;
        c.max_publish_bytes = 4 * 1024 * 1024;
    })
    .await;
    let mut slow = app.connect_slow_reader("slow").await;
    let (mut fast, _) = app.connect_user("fast", "").await;
    let total = 300;
    // The fast client reads all the time, as a browser tab does.
    let fast_reader = tokio::spawn(async move { fast.notification_seqs(total).await });

    // 300 notifications of ~16 KiB each to both users, in batches of 10.
    let pad = "x".repeat(16 * 1024);
    for _ in 0..total / 10 {
        let batch: Vec<_> = (0..10)
            .map(|_| json!({"to": ["slow", "fast"], "kind": "big", "data": {"pad": pad}}))
            .collect();
        app.publish_ok(&serde_json::Value::Array(batch)).await;
    }
    // The fast client gets every one while the slow one reads nothing.
    let fast_seqs = fast_reader.await.unwrap();
    assert_eq!(fast_seqs, (1..=total as i64).collect::<Vec<_>>());

    // Now the slow client reads: some notifications, then the 1013 close.
    let mut last_seen = 0;
    let close = loop {
        match slow.next_event().await {
            crate::helpers::Event::Frame(frame) => {
                assert_eq!(frame["type"], "notification");
                last_seen = frame["notification"]["seq"].as_i64().unwrap();
            }
            crate::helpers::Event::Closed(code) => break code,
        }
    };
    assert_eq!(close, code(1013));
    assert!(
        last_seen < total as i64,
        "it was closed before receiving everything"
    );

    // It resumes from where it was and gets the rest.
    let (mut resumed, _) = app
        .connect_user("slow", &format!("&since={last_seen}"))
        .await;
    let rest = resumed.notification_seqs(total - last_seen as usize).await;
    assert_eq!(rest, ((last_seen + 1)..=total as i64).collect::<Vec<_>>());
    assert_eq!(resumed.next_of_type("resumed").await["complete"], true);
}
