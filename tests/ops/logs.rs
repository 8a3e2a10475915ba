//! Tokens travel in the query string of WebSocket handshakes; nginx's logs must not keep them,
//! neither the access log nor the error log nginx writes when informd is down.

use serde_json::json;

use crate::stack::Stack;

#[tokio::test]
async fn no_token_in_nginx_logs_even_when_informd_is_down() {
    let stack = Stack::start().await;
    let token = stack.token("42");
    let mut client = stack.browser(&token, "&since=0").await.expect("handshake");
    client.next_of_type("welcome").await;
    client.close().await;
    // A token signed with another secret: refused with 401, and logged by both.
    let mut other = crate::helpers::test_config(std::path::Path::new("unused.db"));
    other.jwt_secret = Some("another-secret-0123456789".to_string().into());
    let forged = informd::auth::mint(&other, "43", 3600, vec![], None).unwrap();
    let refused = stack.browser(&forged, "").await.err().expect("refused");
    assert_eq!(refused.status, 401);

    // informd down: nginx answers 502 and writes to its error log.
    let stopped = stack.supervisorctl(&["stop", "informd"]);
    assert!(stopped.contains("informd: stopped"), "{stopped}");
    let refused = stack.browser(&token, "&since=0").await.err().expect("down");
    assert_eq!(refused.status, 502);
    let response = stack.publish(&json!({"to": "42", "kind": "like"})).await;
    assert_eq!(response.status(), 502);

    // nginx writes a request's log lines after its answer has gone out: wait for the last.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (access, errors) = loop {
        let (access, errors) = (stack.nginx_access_log(), stack.nginx_error_log());
        let written =
            access.contains("\"POST /publish HTTP/1.1\" 502 ") && errors.contains("POST /publish");
        if written || std::time::Instant::now() > deadline {
            break (access, errors);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let informd = stack.informd_log();
    for (name, log) in [
        ("nginx access log", &access),
        ("nginx error log", &errors),
        ("informd log", &informd),
    ] {
        for secret in [&token, &forged] {
            let signature = secret.rsplit('.').next().unwrap();
            assert!(!log.contains(signature), "the {name} holds a token:\n{log}");
        }
        assert!(!log.contains("token="), "the {name} holds a query:\n{log}");
    }
    // The failures are in the logs all the same, without the token.
    for line in [
        "\"GET /inform HTTP/1.1\" 101 ",
        "\"GET /inform HTTP/1.1\" 401 ",
        "\"GET /inform HTTP/1.1\" 502 ",
        "\"POST /publish HTTP/1.1\" 502 ",
        "upstream_status=502",
    ] {
        assert!(
            access.contains(line),
            "no {line:?} in the access log:\n{access}"
        );
    }
    assert!(
        errors.contains("connect() failed") && errors.contains("POST /publish"),
        "the error log records the failed publish (so an absent token means something):\n{errors}"
    );
}
