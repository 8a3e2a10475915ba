//! docs/grafana-informd.json queries only what informd exports: every metric name in its
//! queries, and every label it groups by, appears in a live `/metrics` after traffic that
//! moves every metric (sessions, a refused handshake, publishes, a replay, a slow consumer).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Client, Event};
use crate::render::shipped;

/// Every PromQL text in the dashboard: panel targets and template variable queries.
fn queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("expr" | "definition", Value::String(text)) => out.push(text.clone()),
                    _ => queries(item, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| queries(item, out)),
        _ => {}
    }
}

/// The `informd_*` names in a query.
fn metric_names(query: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = query;
    while let Some(start) = rest.find("informd_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The labels of `by (…)` clauses in a query.
fn grouping_labels(query: &str) -> BTreeSet<String> {
    query
        .split("by (")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .flat_map(|labels| labels.split(','))
        .map(|label| label.trim().to_string())
        .collect()
}

/// Drives traffic that makes informd export every metric family (labelled families appear
/// only once a label value has been used), then returns `/metrics`.
async fn live_metrics() -> String {
    let app = spawn_app_with(|c| c.outbound_queue = 4).await;
    let (client, _) = app.connect_user("42", "").await;
    app.notify("42", "like").await;
    app.publish_ok(&json!({"topic": "global", "data": {}}))
        .await;
    client.close().await;
    let (mut resumed, _) = app.connect_user("42", "&since=0").await;
    resumed.next_of_type("notification").await;
    let bad = app.ws_url("?token=not-a-token");
    assert!(Client::connect(&bad, &[]).await.is_err());

    // A client that does not read, with a tiny receive buffer, is closed as a slow consumer.
    let mut slow = app.connect_slow_reader("slow").await;
    let pad = "x".repeat(16 * 1024);
    for _ in 0..10 {
        let batch: Vec<_> = (0..10)
            .map(|_| json!({"to": "slow", "kind": "big", "data": {"pad": pad}}))
            .collect();
        app.publish_ok(&Value::Array(batch)).await;
    }
    while let Event::Frame(_) = slow.next_event().await {}

    // Sessions are counted closed when their task ends, just after the close frame.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = app
            .http
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("informd_slow_consumer_closes_total{")
            || std::time::Instant::now() > deadline
        {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_queries_only_exported_metrics() {
    let dashboard: Value =
        serde_json::from_str(&shipped("docs/grafana-informd.json")).expect("the dashboard is JSON");
    let mut all = Vec::new();
    queries(&dashboard, &mut all);
    assert!(all.len() >= 15, "the dashboard has its queries: {all:?}");

    let text = live_metrics().await;
    let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let exported: BTreeSet<&str> = samples
        .iter()
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();

    let mut used = BTreeSet::new();
    for query in &all {
        let names = metric_names(query);
        assert!(
            !names.is_empty(),
            "a query without an informd metric: {query}"
        );
        for name in &names {
            assert!(
                exported.contains(name.as_str()),
                "the dashboard queries {name}, which /metrics does not export:\n{query}\n\n{text}"
            );
            used.insert(name.clone());
        }
        for label in grouping_labels(query) {
            let carried = samples.iter().any(|line| {
                names.iter().any(|name| line.starts_with(name.as_str()))
                    && line.contains(&format!("{label}=\""))
            });
            assert!(
                carried,
                "the dashboard groups by {label}, which its metrics do not carry:\n{query}"
            );
        }
    }
    // And every informd metric has a panel.
    let families: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    for family in families {
        assert!(
            used.iter().any(|name| name.starts_with(family)),
            "no panel shows {family}"
        );
    }
}
