//! `GET /metrics`, read with a Prometheus text parser: the figures move as the traffic does.

use std::time::Duration;

use serde_json::json;

use crate::daemon::{configured, Daemon};
use crate::helpers::{code, spawn_app, spawn_app_with, Client, Event, TestApp};

/// One scrape: every sample by name and labels.
struct Scrape(Vec<prometheus_parse::Sample>);

impl Scrape {
    async fn of(url: &str) -> Scrape {
        let answer = reqwest::get(url).await.unwrap();
        assert_eq!(answer.status(), 200);
        let content_type = answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let text = answer.text().await.unwrap();
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let parsed = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
        Scrape(parsed.samples)
    }

    /// The value of `name` whose labels include `labels` (0 when there is none yet).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => 0.0,
            })
            .sum()
    }
}

async fn scrape(app: &TestApp) -> Scrape {
    Scrape::of(&app.url("/metrics")).await
}

/// Scrapes until `check` holds (the counts a session makes at its end land just after the
/// client sees its close), for up to 5 s.
async fn scrape_until(app: &TestApp, check: impl Fn(&Scrape) -> bool) -> Scrape {
    for _ in 0..100 {
        let scrape = scrape(app).await;
        if check(&scrape) {
            return scrape;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    scrape(app).await
}

#[tokio::test]
async fn sessions_deliveries_publishes_and_refusals_are_counted() {
    let app = spawn_app().await;
    let before = scrape(&app).await;
    assert_eq!(before.value("informd_sessions", &[]), 0.0);
    assert_eq!(before.value("informd_build_info", &[]), 1.0);

    let (mut first, _) = app.connect_user("ann", "").await;
    let (mut second, _) = app.connect_user("ann", "").await;
    let open = scrape(&app).await;
    assert_eq!(open.value("informd_sessions", &[]), 2.0);
    assert_eq!(open.value("informd_sessions_opened_total", &[]), 2.0);

    app.notify("ann", "like").await;
    first.next_of_type("notification").await;
    second.next_of_type("notification").await;
    app.publish_ok(&json!({"topic": "global", "data": {"v": 1}}))
        .await;
    first.next_of_type("broadcast").await;
    second.next_of_type("broadcast").await;
    // A hub shard counts its deliveries once it has queued them all, which can be just after
    // the frames reach the clients.
    let published = scrape_until(&app, |s| {
        let delivered = |stream| s.value("informd_deliveries_total", &[("stream", stream)]);
        delivered("user") >= 2.0 && delivered("topic") >= 2.0
    })
    .await;
    assert_eq!(
        published.value("informd_publishes_total", &[("result", "ok")]),
        2.0
    );
    assert_eq!(
        published.value("informd_deliveries_total", &[("stream", "user")]),
        2.0
    );
    assert_eq!(
        published.value("informd_deliveries_total", &[("stream", "topic")]),
        2.0
    );
    assert_eq!(
        published.value("informd_events_stored_total", &[("kind", "notification")]),
        1.0
    );
    assert_eq!(
        published.value("informd_events_stored_total", &[("kind", "broadcast")]),
        1.0
    );
    assert_eq!(
        published.value("informd_publish_duration_seconds_count", &[]),
        2.0
    );
    assert_eq!(
        published.value("informd_publish_to_delivery_seconds_count", &[]),
        2.0
    );
    assert!(published.value("informd_commit_duration_seconds_count", &[]) >= 2.0);

    // A publish refused, a handshake refused.
    let refused = app.publish(&json!({"to": 42, "kind": "like"})).await;
    assert_eq!(refused.status(), 400);
    let bad_token = Client::connect(&app.ws_url("?token=not-a-jwt"), &[]).await;
    assert!(bad_token.is_err());
    // And a resume from the database.
    let (mut third, _) = app.connect_user("ann", "&since=0").await;
    third.next_of_type("notification").await;
    third.next_of_type("resumed").await;
    let refusals = scrape(&app).await;
    assert_eq!(
        refusals.value("informd_publishes_total", &[("result", "invalid_field")]),
        1.0
    );
    assert_eq!(
        refusals.value(
            "informd_handshakes_refused_total",
            &[("reason", "invalid_token")]
        ),
        1.0
    );
    assert_eq!(
        refusals.value("informd_replays_total", &[("cause", "resume")]),
        1.0
    );
    assert_eq!(refusals.value("informd_replayed_events_total", &[]), 1.0);

    first.close().await;
    second.close().await;
    drop(third); // gone without a close frame
                 // A scrape reads the metrics one by one, in no fixed order, so the gauge may show a
                 // session gone before the counter shows its close: wait for all three.
    let closed = scrape_until(&app, |s| {
        s.value("informd_sessions", &[]) == 0.0
            && s.value("informd_sessions_closed_total", &[("code", "1000")]) == 2.0
            && s.value("informd_sessions_closed_total", &[("code", "1006")]) == 1.0
    })
    .await;
    assert_eq!(closed.value("informd_sessions", &[]), 0.0);
    assert_eq!(
        closed.value("informd_sessions_closed_total", &[("code", "1000")]),
        2.0
    );
    assert_eq!(
        closed.value("informd_sessions_closed_total", &[("code", "1006")]),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_close_is_counted() {
    let app = spawn_app_with(|c| c.outbound_queue = 4).await;
    let mut slow = app.connect_slow_reader("slow").await;
    let pad = "x".repeat(16 * 1024);
    for _ in 0..10 {
        let batch: Vec<_> = (0..10)
            .map(|_| json!({"to": "slow", "kind": "big", "data": {"pad": pad}}))
            .collect();
        app.publish_ok(&serde_json::Value::Array(batch)).await;
    }
    let close = loop {
        if let Event::Closed(code) = slow.next_event().await {
            break code;
        }
    };
    assert_eq!(close, code(1013));
    let after = scrape_until(&app, |s| {
        s.value("informd_sessions_closed_total", &[("code", "1013")]) == 1.0
    })
    .await;
    assert_eq!(
        after.value("informd_slow_consumer_closes_total", &[("cause", "queue")]),
        1.0
    );
    assert_eq!(
        after.value("informd_sessions_closed_total", &[("code", "1013")]),
        1.0
    );
}

#[tokio::test]
async fn metrics_listen_moves_metrics_off_the_public_port() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = configured(dir.path());
    command.env("INFORMD_METRICS_LISTEN", "127.0.0.1:0");
    let daemon = Daemon::start(command);
    let line = daemon
        .wait_for_log("metrics on http://", Duration::from_secs(10))
        .await
        .expect("the metrics address is logged");
    let url = line
        .split("metrics on ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap()
        .to_string();
    let public = reqwest::get(daemon.url("/metrics")).await.unwrap();
    assert_eq!(public.status(), 404);
    let scrape = Scrape::of(&url).await;
    assert_eq!(scrape.value("informd_sessions", &[]), 0.0);
    let elsewhere = reqwest::get(url.replace("/metrics", "/healthz"))
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);
}
