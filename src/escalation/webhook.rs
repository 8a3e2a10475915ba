//! The POST to `escalation_webhook`: the body, its signature, and one attempt with a timeout.
//! The contract is in docs/PROTOCOL.md ("The offline hook").

use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha2::Sha256;

use crate::model::Notification;

/// Longest one POST may take, connecting included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The JSON body: the user, and the notification as a WebSocket frame carries it.
pub fn body(user: &str, notification: &Notification) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        user: &'a str,
        notification: &'a Notification,
    }
    // Serialising plain strings, numbers and already-valid raw JSON cannot fail.
    serde_json::to_vec(&Body { user, notification }).unwrap_or_default()
}

/// `sha256=` and the hex HMAC-SHA256 of `body` keyed with `secret`: the
/// `X-Informd-Signature` header.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length; `new_from_slice` never refuses one.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The `Idempotency-Key` of a notification's escalation: the same on every attempt and every
/// node (notification ids are unique across the deployment).
pub fn idempotency_key(notification_id: i64) -> String {
    format!("informd-escalation-{notification_id}")
}

/// Why an attempt failed, for the log (never holding the secret).
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("the webhook answered {0}")]
    Status(reqwest::StatusCode),
    #[error("the webhook could not be reached: {0}")]
    Unreachable(String),
}

/// The configured webhook and its key.
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    secret: SecretString,
}

impl Webhook {
    pub fn new(url: String, secret: SecretString) -> Result<Webhook, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            // A redirect would turn the POST into a GET elsewhere: a 3xx is a failed attempt,
            // and the webhook should be configured with its final URL.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("informd/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Webhook {
            client,
            url,
            secret,
        })
    }

    /// POSTs one escalation; `Ok` on a 2xx.
    pub async fn post(&self, notification_id: i64, body: Vec<u8>) -> Result<(), AttemptError> {
        let signature = signature(self.secret.expose_secret(), &body);
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", idempotency_key(notification_id))
            .header("X-Informd-Signature", signature)
            .body(body)
            .send()
            .await
            // Without the URL: it may hold a password.
            .map_err(|e| AttemptError::Unreachable(e.without_url().to_string()))?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status => Err(AttemptError::Status(status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
