//! The simulated backend service: `POST /publish` with the publisher key.

use std::time::Duration;

use anyhow::Context;

/// A keep-alive HTTP client for `/publish`.
#[derive(Clone)]
pub struct Publisher {
    client: reqwest::Client,
    url: String,
    key: String,
}

impl Publisher {
    pub fn new(base: &str, key: &str) -> anyhow::Result<Publisher> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1024)
            .build()
            .context("building the HTTP client")?;
        Ok(Publisher {
            client,
            url: format!("{}/publish", base.trim_end_matches('/')),
            key: key.to_string(),
        })
    }

    /// Posts a JSON body; `Err` carries the status (or the transport error) of a failure.
    pub async fn post(&self, body: String) -> Result<(), String> {
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(&self.key)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("transport: {e}"))?;
        let status = response.status();
        if status.is_success() {
            // Drain the body so the connection can be reused.
            let _ = response.bytes().await;
            Ok(())
        } else {
            let text = response.text().await.unwrap_or_default();
            Err(format!("{status}: {text}"))
        }
    }
}
