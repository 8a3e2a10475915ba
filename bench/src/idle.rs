//! `idle`: hold N authenticated sessions open and measure what each costs the server.

use std::time::Duration;

use serde_json::json;

use crate::clients::Fleet;
use crate::report::{liveness, Summary};
use crate::server_usage::rss_bytes;
use crate::Common;

pub async fn run(common: &Common, clients: usize, hold: u64) -> anyhow::Result<Summary> {
    let before = common.pid.and_then(rss_bytes);
    let fleet = Fleet::connect(common, clients, |k| Some(format!("idle-{k}"))).await?;
    let connected = clients - fleet.failed;
    // Let the server finish whatever each handshake started.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = common.pid.and_then(rss_bytes);
    let per_session = match (before, after) {
        (Some(b), Some(a)) if connected > 0 => Some(a.saturating_sub(b) as f64 / connected as f64),
        _ => None,
    };
    if let (Some(b), Some(a), Some(per)) = (before, after, per_session) {
        eprintln!(
            "server RSS {:.1} MiB -> {:.1} MiB: {:.0} bytes ({:.2} KiB) per session",
            b as f64 / 1048576.0,
            a as f64 / 1048576.0,
            per,
            per / 1024.0
        );
    }
    eprintln!("holding {connected} sessions for {hold} s");
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let failed = fleet.failed;
    let results = fleet.finish().await;
    let alive = results.iter().filter(|r| r.alive).count();
    eprintln!("{alive} of {connected} sessions answered a ping at the end");

    let mut summary = Summary::new("idle");
    summary.set("clients", json!(clients));
    summary.set("connected", json!(connected));
    summary.set("failed", json!(failed));
    summary.set("liveness", liveness(&results));
    summary.set("rss_before_bytes", json!(before));
    summary.set("rss_after_bytes", json!(after));
    summary.set(
        "rss_per_session_bytes",
        json!(per_session.map(|p| p.round())),
    );
    if failed > 0 {
        summary.fail(&format!("{failed} sessions failed to connect"));
    }
    if alive < connected {
        summary.fail(&format!("{} sessions died while idle", connected - alive));
    }
    Ok(summary)
}
