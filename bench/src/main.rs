//! informd-bench: a load generator that drives a running informd through its public API only,
//! as browsers (WebSocket sessions) and backend services (`POST /publish`) would.
//!
//! Scenarios: `idle` (hold sessions, measure the server's memory per session), `fanout`
//! (`global` broadcasts to every session) and `targeted` (notifications to random users).
//! `soak` is different: it starts informd itself and kills it again and again under load
//! (see [`soak`]).
//! Every scenario checks that each delivery arrived exactly once, prints its figures, exits
//! non-zero if a connection failed or a delivery was lost or doubled, and prints one JSON
//! summary line last.

mod clients;
mod fanout;
mod idle;
mod preferences;
mod probe;
mod publish_probe;
mod publisher;
mod readers;
mod report;
mod server_usage;
mod soak;
mod targeted;

use std::net::Ipv4Addr;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "informd-bench", about = "Load generator for informd")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    scenario: Scenario,
}

/// Settings every scenario shares.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Base URL of the informd server.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Base URL to publish to, when not `url`: another node of the same deployment, so that
    /// every delivery crosses the broker.
    #[arg(long, global = true)]
    pub publish_url: Option<String>,
    /// HS256 secret the server verifies user tokens with.
    #[arg(
        long,
        global = true,
        env = "INFORMD_JWT_SECRET",
        hide_env_values = true,
        default_value = "informd-development-secret-do-not-use-in-production"
    )]
    pub secret: String,
    /// Publisher key.
    #[arg(
        long,
        global = true,
        env = "INFORMD_PUBLISH_KEY",
        hide_env_values = true,
        default_value = "informd-dev-publish-key"
    )]
    pub key: String,
    /// Spread client sockets over these loopback addresses, e.g. `127.0.0.2-127.0.0.40`.
    #[arg(long, global = true, value_parser = parse_ip_range)]
    pub source_ips: Option<IpRange>,
    /// PID of the server, to read its memory (`idle`) and CPU time (`fanout`) from /proc.
    #[arg(long, global = true)]
    pub pid: Option<u32>,
    /// Handshakes in flight at once while connecting.
    #[arg(long, global = true, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Seconds to wait for outstanding deliveries once publishing is done.
    #[arg(long, global = true, default_value_t = 30)]
    pub drain_timeout: u64,
    /// Run the generator's session readers this many nice steps below the default priority
    /// (0 to 19), as if the browsers they stand for ran on other machines: the server and the
    /// publish probe then no longer queue for a core behind them. Publishers and the probe
    /// keep the default priority.
    #[arg(long, global = true, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub readers_nice: i32,
}

impl Common {
    /// Where publishes go: `publish_url`, or the node the clients use.
    pub fn publish_base(&self) -> &str {
        self.publish_url.as_deref().unwrap_or(&self.url)
    }
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Hold N authenticated sessions open; report the server's RSS growth per session.
    Idle {
        #[arg(long)]
        clients: usize,
        /// Seconds to hold the sessions before checking they are all still alive.
        #[arg(long, default_value_t = 5)]
        hold: u64,
    },
    /// Broadcast E events on `global` to N sessions at R events/s (0: unpaced).
    Fanout {
        #[arg(long)]
        clients: usize,
        #[arg(long)]
        events: usize,
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// The topic to broadcast on; every session subscribes to it first (a public prefix,
        /// such as `article:1`), unless it is `global`.
        #[arg(long, default_value = "global")]
        topic: String,
        /// Also time durable targeted publishes sent at this rate (per second) from a thread
        /// of their own while the broadcasts go out and are delivered; 0: none.
        #[arg(long, default_value_t = 0.0)]
        probe_rate: f64,
        /// Begin publishing at this wall-clock instant (Unix time in ms), once the sessions
        /// are connected, rather than at once: generators in separate processes then publish
        /// in a phase set by whoever starts them, not by when their sessions happened to settle.
        #[arg(long)]
        start_at: Option<u64>,
    },
    /// Notify random connected users E times at R notifications/s (0: unpaced).
    Targeted {
        #[arg(long)]
        clients: usize,
        #[arg(long)]
        events: usize,
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Events per `POST /publish` (1: a single object, more: an array).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Publish requests in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Give each event one of N groups (`bench:<i mod N>`): every event after a
        /// recipient's first of a group folds into that notification (nothing is read).
        #[arg(long)]
        group: Option<usize>,
        /// Give this many users preferences first (the connected ones first), none of which
        /// mute the run's events: the publish path then consults a full table.
        #[arg(long, default_value_t = 0)]
        preferences: usize,
    },
    /// Start informd, SIGKILL and restart it repeatedly under a mixed publish and read load
    /// with clients connected; then check nothing acknowledged was lost or doubled.
    Soak(soak::SoakArgs),
}

impl Scenario {
    /// Sessions the scenario opens.
    fn clients(&self) -> usize {
        match self {
            Scenario::Idle { clients, .. }
            | Scenario::Fanout { clients, .. }
            | Scenario::Targeted { clients, .. } => *clients,
            Scenario::Soak(args) => args.users + args.users / 4 + args.anonymous + 1,
        }
    }
}

/// An inclusive range of IPv4 addresses.
#[derive(Debug, Clone)]
pub struct IpRange(pub Vec<Ipv4Addr>);

fn parse_ip_range(text: &str) -> Result<IpRange, String> {
    let (first, last) = text.split_once('-').unwrap_or((text, text));
    let first: Ipv4Addr = first.trim().parse().map_err(|e| format!("{first}: {e}"))?;
    let last: Ipv4Addr = last.trim().parse().map_err(|e| format!("{last}: {e}"))?;
    let (a, b) = (u32::from(first), u32::from(last));
    if b < a || b - a > 65_535 {
        return Err("the range must run upwards and hold at most 65536 addresses".into());
    }
    Ok(IpRange((a..=b).map(Ipv4Addr::from).collect()))
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let readers_nice = cli.common.readers_nice;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(move || lower_current_thread(readers_nice))
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("informd-bench: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("informd-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Lowers the calling thread's priority by `nice` steps (Linux: the nice value is per thread).
fn lower_current_thread(nice: i32) {
    if nice == 0 {
        return;
    }
    let thread = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(thread), nice) {
        eprintln!("informd-bench: cannot lower a reader thread's priority to nice {nice}: {e}");
    }
}

/// Runs the scenario; `Ok(false)` when it ran but something was lost, doubled or refused.
async fn run(cli: Cli) -> anyhow::Result<bool> {
    let limit = rlimit::increase_nofile_limit(u64::MAX).context("raising the open-file limit")?;
    eprintln!("open-file limit: {limit}");
    let needed = cli.scenario.clients() as u64;
    if needed + 64 > limit {
        bail!("{needed} clients need more open files than the limit of {limit}");
    }
    let summary = match cli.scenario {
        Scenario::Soak(args) => return soak::run(&cli.common.secret, &cli.common.key, args).await,
        Scenario::Idle { clients, hold } => idle::run(&cli.common, clients, hold).await?,
        Scenario::Fanout {
            clients,
            events,
            rate,
            topic,
            probe_rate,
            start_at,
        } => {
            let shape = fanout::Shape {
                clients,
                events,
                rate,
                topic,
                probe_rate,
                start_at,
            };
            fanout::run(&cli.common, shape).await?
        }
        Scenario::Targeted {
            clients,
            events,
            rate,
            batch,
            concurrency,
            group,
            preferences,
        } => {
            preferences::install(&cli.common, preferences, clients, targeted::user).await?;
            let shape = targeted::Shape {
                clients,
                events,
                rate,
                batch: batch.max(1),
                concurrency: concurrency.max(1),
                groups: group.map(|n| n.max(1)),
            };
            targeted::run(&cli.common, shape).await?
        }
    };
    let ok = summary.ok();
    println!("{}", summary.json());
    Ok(ok)
}
