//! `informd-bench soak`: crash informd with SIGKILL again and again under a mixed load, restart
//! it each time, and prove at the end that nothing acknowledged was lost and nothing was
//! doubled, in the database and at the clients.
//!
//! The run: start the real daemon ([`daemon`]) on a loopback port and a fresh SQLite file;
//! connect the clients ([`clients`]); start publishers ([`publishers`]) and REST readers
//! ([`readers`]); kill and restart the daemon at random intervals until the time is up; stop
//! the load, let the clients catch up, stop the daemon cleanly; then read the file and compare
//! ([`checker`]). Exits non-zero on any loss, double, gap or badge mismatch.

mod checker;
mod clients;
mod daemon;
mod publishers;
mod readers;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::json;
use tokio::sync::watch;

use clients::{ClientLog, ClientSpec, Logs};
use daemon::{Daemon, DaemonSpec};
use publishers::{Load, Phase, PublishStats, Target};
use readers::ReadStats;

/// The soak's knobs.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// The informd binary (default: `informd` next to this program).
    #[arg(long)]
    pub informd: Option<PathBuf>,
    /// Seconds of load and crashes.
    #[arg(long, default_value_t = 180)]
    pub seconds: u64,
    /// Users; each has a connected client, every fourth a second one (another tab).
    #[arg(long, default_value_t = 40)]
    pub users: usize,
    /// Anonymous clients (broadcasts only).
    #[arg(long, default_value_t = 4)]
    pub anonymous: usize,
    /// Topics besides `global`; each client follows one.
    #[arg(long, default_value_t = 4)]
    pub topics: usize,
    /// Concurrent publishers.
    #[arg(long, default_value_t = 6)]
    pub publishers: usize,
    /// Milliseconds between one publisher's publishes (randomised ±50%).
    #[arg(long, default_value_t = 30)]
    pub pause_ms: u64,
    /// Concurrent REST readers marking notifications read.
    #[arg(long, default_value_t = 2)]
    pub readers: usize,
    /// Shortest time between two kills, milliseconds.
    #[arg(long, default_value_t = 1500)]
    pub kill_min_ms: u64,
    /// Longest time between two kills, milliseconds.
    #[arg(long, default_value_t = 4000)]
    pub kill_max_ms: u64,
    /// Seconds the clients get to catch up once the load stops.
    #[arg(long, default_value_t = 30)]
    pub settle: u64,
    /// Every this many restarts, pause the load right after the restart, while the clients
    /// resume, and check that every client caught up (badge included); 0: never.
    #[arg(long, default_value_t = 3)]
    pub checkpoint_every: u64,
    /// Directory for the database and the daemon's log (default: a new temp directory,
    /// removed after a clean run).
    #[arg(long)]
    pub work: Option<PathBuf>,
}

/// Runs the soak; `Ok(false)` when it ran but found a loss, double, gap or mismatch.
pub async fn run(secret: &str, key: &str, args: SoakArgs) -> anyhow::Result<bool> {
    let started = Instant::now();
    let informd = match &args.informd {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("locating this program")?
            .join("informd"),
    };
    if !informd.exists() {
        bail!(
            "{} not found; build informd or pass --informd",
            informd.display()
        );
    }
    let (work, temporary) = match &args.work {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("informd-soak-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let database = work.join("soak.db");
    for stale in ["soak.db", "soak.db-wal", "soak.db-shm"] {
        let _ = std::fs::remove_file(work.join(stale));
    }
    let mut daemon = Daemon::new(DaemonSpec {
        binary: informd,
        database: database.clone(),
        port: daemon::free_port()?,
        secret: secret.to_string(),
        key: key.to_string(),
        log: work.join("informd.log"),
    })?;
    daemon.start().await?;
    let url = daemon.url();
    eprintln!("soak: informd at {url}, database {}", database.display());

    // Clients first, so they are there for the whole history.
    let (stop_clients, clients_stop) = watch::channel(false);
    let mut logs: Logs = Vec::new();
    let mut client_tasks = Vec::new();
    for spec in client_specs(&args) {
        let log = Arc::new(Mutex::new(ClientLog::default()));
        logs.push(log.clone());
        client_tasks.push(tokio::spawn(clients::client(
            url.clone(),
            secret.to_string(),
            spec,
            log,
            clients_stop.clone(),
        )));
    }
    wait_for_welcomes(&logs, Duration::from_secs(30)).await?;
    eprintln!("soak: {} clients connected", logs.len());

    // The load.
    let (load_phase, phase) = watch::channel(Phase::Run);
    let (give_up_tx, give_up) = watch::channel(false);
    let publish_stats = Arc::new(PublishStats::default());
    let read_stats = Arc::new(ReadStats::default());
    let load = Load {
        users: args.users.max(1),
        topics: args.topics,
        pause: Duration::from_millis(args.pause_ms),
    };
    let publisher_tasks: Vec<_> = (0..args.publishers.max(1))
        .map(|i| {
            tokio::spawn(publishers::publisher(
                i,
                url.clone(),
                key.to_string(),
                load.clone(),
                phase.clone(),
                give_up.clone(),
                publish_stats.clone(),
            ))
        })
        .collect();
    let reader_tasks: Vec<_> = (0..args.readers)
        .map(|_| {
            tokio::spawn(readers::reader(
                url.clone(),
                secret.to_string(),
                args.users.max(1),
                Duration::from_millis(100),
                phase.clone(),
                read_stats.clone(),
            ))
        })
        .collect();

    // The crashes.
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let (low, high) = (args.kill_min_ms, args.kill_max_ms.max(args.kill_min_ms));
    let (mut checkpoints, mut checkpoints_failed) = (0u64, 0u64);
    loop {
        let at = (Instant::now() + Duration::from_millis(fastrand::u64(low..=high))).min(deadline);
        tokio::time::sleep(at.saturating_duration_since(Instant::now())).await;
        daemon.kill_and_restart().await?;
        eprintln!(
            "soak: restart {} at {:.0} s ({} publishes acknowledged so far)",
            daemon.restarts,
            started.elapsed().as_secs_f64(),
            publish_stats.acked.load(Ordering::Relaxed)
        );
        if at >= deadline {
            break;
        }
        if args.checkpoint_every > 0 && daemon.restarts % args.checkpoint_every == 0 {
            checkpoints += 1;
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=100))).await;
            let _ = load_phase.send(Phase::Pause);
            if !settle(&database, &logs, Duration::from_secs(args.settle)).await {
                checkpoints_failed += 1;
                report_behind(&database, &logs).await;
            }
            let _ = load_phase.send(Phase::Run);
        }
    }
    // The run ends on a crash: the load stops while every client resumes (publishes in hand
    // are still being retried), so what a resume leaves behind (a badge, a doubled frame) is
    // not covered up by later events and is still there for the check.
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=100))).await;

    // Stop the load; publishes in hand finish (the daemon is up now).
    let _ = load_phase.send(Phase::Stop);
    let give_up_timer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let _ = give_up_tx.send(true);
    });
    let mut acks = Vec::new();
    for task in publisher_tasks {
        acks.extend(task.await.context("publisher panicked")??);
    }
    give_up_timer.abort();
    for task in reader_tasks {
        task.await.context("reader panicked")??;
    }
    eprintln!("soak: load stopped; letting clients catch up");
    let caught_up = settle(&database, &logs, Duration::from_secs(args.settle)).await;
    let _ = stop_clients.send(true);
    for task in client_tasks {
        let _ = task.await;
    }
    daemon.stop().await?;

    let stored = checker::read(&database).await?;
    let clients = clients::snapshot(&logs);
    let verdict = checker::check(&stored, &acks, &clients);
    let ok = verdict.clean()
        && caught_up
        && checkpoints_failed == 0
        && publish_stats.refused.load(Ordering::Relaxed) == 0;

    let notification_acks = acks
        .iter()
        .filter(|a| matches!(a.target, Target::Users(_)))
        .count();
    let summary = json!({
        "scenario": "soak",
        "seconds": started.elapsed().as_secs(),
        "restarts": daemon.restarts,
        "slowest_restart_ms": daemon.slowest_restart.as_millis() as u64,
        "clients": clients.len(),
        "publishes_acknowledged": acks.len(),
        "notification_publishes": notification_acks,
        "broadcast_publishes": acks.len() - notification_acks,
        "acknowledged_as_duplicate": acks.iter().filter(|a| a.duplicate).count(),
        "publish_retries": publish_stats.retries.load(Ordering::Relaxed),
        "publishes_refused": publish_stats.refused.load(Ordering::Relaxed),
        "stored_notifications": stored.notifications,
        "stored_broadcasts": stored.broadcasts,
        "rest_reads": read_stats.marked.load(Ordering::Relaxed),
        "read_frames": clients.iter().map(|c| c.reads_sent).sum::<u64>(),
        "reconnects": clients.iter().map(|c| c.reconnects).sum::<u64>(),
        "stalls": clients.iter().map(|c| c.stalls).sum::<u64>(),
        "client_deliveries": clients.iter().map(deliveries).sum::<u64>(),
        "global_reasked": clients.iter().map(|c| c.global.reasked).sum::<u64>(),
        "caught_up": caught_up,
        "checkpoints": checkpoints,
        "checkpoints_failed": checkpoints_failed,
        "verdict": verdict.to_json(),
    });
    print_figures(&summary);
    for example in &verdict.examples {
        eprintln!("soak: FAIL {example}");
    }
    if !caught_up {
        eprintln!(
            "soak: FAIL clients had not caught up {} s after the load stopped",
            args.settle
        );
    }
    println!("{summary}");
    if ok && temporary {
        let _ = std::fs::remove_dir_all(&work);
    } else if !ok {
        eprintln!("soak: database and informd.log kept in {}", work.display());
    }
    Ok(ok)
}

/// Users' clients (every fourth user has a second tab), then anonymous ones.
fn client_specs(args: &SoakArgs) -> Vec<ClientSpec> {
    let topic = |k: usize| (args.topics > 0).then(|| publishers::topic_name(k % args.topics));
    let mut specs = Vec::new();
    for k in 0..args.users {
        let user = Some(publishers::user_name(k));
        specs.push(ClientSpec {
            user: user.clone(),
            topic: topic(k),
        });
        if k % 4 == 0 {
            specs.push(ClientSpec {
                user,
                topic: topic(k + 1),
            });
        }
    }
    for k in 0..args.anonymous {
        specs.push(ClientSpec {
            user: None,
            topic: topic(k),
        });
    }
    specs
}

fn deliveries(log: &ClientLog) -> u64 {
    [&log.notifications, &log.global, &log.topic_log]
        .iter()
        .map(|s| s.seen.values().map(|n| u64::from(*n)).sum::<u64>())
        .sum()
}

async fn wait_for_welcomes(logs: &Logs, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let clients = clients::snapshot(logs);
        let waiting = clients
            .iter()
            .filter(|c| c.badge.is_none() && c.user.is_some())
            .count();
        if waiting == 0 {
            // Anonymous clients have no badge; give them a moment too.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{waiting} clients got no welcome within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every client has every stored seq of its streams and the stored badge, or the
/// time runs out; the database is read while the daemon runs (SQLite WAL allows it).
async fn settle(database: &std::path::Path, logs: &Logs, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(stored) = checker::read(database).await {
            let clients = clients::snapshot(logs);
            if clients.iter().all(|c| caught_up(&stored, c)) {
                return true;
            }
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Says which clients are behind the database at a failed checkpoint.
async fn report_behind(database: &std::path::Path, logs: &Logs) {
    let Ok(stored) = checker::read(database).await else {
        return;
    };
    for client in clients::snapshot(logs) {
        if !caught_up(&stored, &client) {
            let user = client.user.as_deref().unwrap_or("anonymous");
            let stored_badge = client
                .user
                .as_ref()
                .and_then(|u| stored.user_state.get(u))
                .map(|s| s.1);
            eprintln!(
                "soak: FAIL checkpoint: {user} behind (has user seq {}, global {}, badge {:?}; \
                 stored badge {stored_badge:?})",
                client.notifications.contiguous(),
                client.global.contiguous(),
                client.badge
            );
        }
    }
}

fn caught_up(stored: &checker::Stored, client: &ClientLog) -> bool {
    let topic_last = |t: &str| stored.topic_state.get(t).copied().unwrap_or(0);
    let user_ok = match &client.user {
        Some(user) => {
            let (last, unread) = stored.user_state.get(user).copied().unwrap_or((0, 0));
            client.notifications.contiguous() >= last && client.badge == Some(unread)
        }
        None => true,
    };
    // A `match`, not `Option::is_none_or`, which needs a newer Rust than informd's 1.80.
    let topic_ok = match client.topic.as_deref() {
        Some(t) => client.topic_log.contiguous() >= topic_last(t),
        None => true,
    };
    user_ok && topic_ok && client.global.contiguous() >= topic_last("global")
}

fn print_figures(summary: &serde_json::Value) {
    eprintln!("soak figures:");
    if let Some(map) = summary.as_object() {
        for (name, value) in map {
            eprintln!("  {name:28} {value}");
        }
    }
}
