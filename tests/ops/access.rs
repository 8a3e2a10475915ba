//! /publish and /metrics answer only the backend network (nginx's `geo $informd_backend`,
//! which lists 127.0.0.1 as shipped); a client from 127.0.0.2 stands for the public.

use std::net::{IpAddr, Ipv4Addr};

use serde_json::{json, Value};

use crate::helpers::PUBLISH_KEY;
use crate::stack::Stack;

#[tokio::test]
async fn publish_and_metrics_are_refused_outside_the_backend_network() {
    let stack = Stack::start().await;
    let outsider = reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()
        .unwrap();

    let response = outsider
        .post(stack.url("/publish"))
        .bearer_auth(PUBLISH_KEY)
        .json(&json!({"to": "42", "kind": "like"}))
        .send()
        .await
        .expect("connect from 127.0.0.2");
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.expect("a JSON refusal");
    assert_eq!(body["error"]["code"], "forbidden");
    let response = outsider.get(stack.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 403);
    // The public paths stay public.
    let response = outsider.get(stack.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // informd logs the browser's address, not nginx's: X-Forwarded-For from nginx, trusted
    // through the env file's trusted_proxies.
    let response = outsider
        .get(stack.url("/api/notifications"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let logged = "127.0.0.2 \"GET /api/notifications\" 401";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !stack.informd_log().contains(logged) {
        assert!(
            std::time::Instant::now() < deadline,
            "informd's log does not name the client: {}",
            stack.informd_log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // The backend network gets through.
    let response = stack.publish(&json!({"to": "42", "kind": "like"})).await;
    assert_eq!(response.status(), 200);
    let metrics = stack.http.get(stack.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    // Only the backend's publish reached informd.
    assert!(
        text.contains("informd_publishes_total{result=\"ok\"} 1\n"),
        "{text}"
    );
}
