//! The `informd` command line: `serve`, `migrate`, `token` and `publish`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::startup::Application;

/// informd: notification push service (per-user inboxes and site-wide broadcasts over
/// WebSocket).
#[derive(Debug, Parser)]
#[command(name = "informd", version, about)]
pub struct Cli {
    /// TOML configuration file (INFORMD_* variables and flags override it).
    #[arg(long, global = true, env = "INFORMD_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Create the database if needed and apply migrations, then exit.
    Migrate(DatabaseArg),
    /// Mint a user token with the configured key (for development and testing).
    Token(TokenArgs),
    /// Post an event to a running server.
    Publish(PublishArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (overrides `listen`).
    #[arg(long)]
    pub listen: Option<String>,
    #[command(flatten)]
    pub database: DatabaseArg,
    /// Fan-out between nodes: `memory` (one node) or `redis://…` (several nodes on one
    /// database) (overrides `broker`).
    #[arg(long)]
    pub broker: Option<String>,
}

#[derive(Debug, Args)]
pub struct DatabaseArg {
    /// SQLite file, `sqlite:` URL, or `postgres://…` URL (overrides `database`).
    #[arg(long)]
    pub database: Option<String>,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user id (JWT `sub`).
    #[arg(long)]
    pub sub: String,
    /// How long the token is valid, e.g. `30m`, `1h`, `7d`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// A private topic (or `prefix*`) the token grants; repeatable.
    #[arg(long = "topic")]
    pub topics: Vec<String>,
    /// PEM private key, for RS256, ES256 and EdDSA.
    #[arg(long)]
    pub private_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Server base URL; defaults to the configured `listen` address.
    #[arg(long)]
    pub url: Option<String>,
    /// Publisher key; defaults to the first configured one.
    #[arg(long, env = "INFORMD_PUBLISH_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Recipient user id; repeatable. Makes a notification.
    #[arg(long, required_unless_present = "topic")]
    pub to: Vec<String>,
    /// Notification kind (`like`, `reply`, `follow`, …).
    #[arg(long, default_value = "system")]
    pub kind: String,
    /// Broadcast to this topic instead of notifying users.
    #[arg(long, conflicts_with = "to")]
    pub topic: Option<String>,
    /// Actor object, as JSON.
    #[arg(long)]
    pub actor: Option<String>,
    /// Subject object, as JSON.
    #[arg(long)]
    pub subject: Option<String>,
    /// Data object, as JSON.
    #[arg(long)]
    pub data: Option<String>,
    /// Group: while the recipient has an unread notification of it, this event updates it.
    #[arg(long, conflicts_with = "topic")]
    pub group: Option<String>,
    /// Idempotency-Key header.
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let mut overrides = Vec::new();
            if let Some(listen) = args.listen {
                overrides.push(("listen", listen));
            }
            if let Some(database) = args.database.database {
                overrides.push(("database", database));
            }
            if let Some(broker) = args.broker {
                overrides.push(("broker", broker));
            }
            let config = Config::load(cli.config.as_deref(), &overrides)?;
            actix_web::rt::System::new().block_on(async move {
                Application::build(config).await?.run_until_stopped().await
            })
        }
        Command::Migrate(args) => {
            let overrides: Vec<_> = args.database.map(|d| ("database", d)).into_iter().collect();
            let config = Config::load(cli.config.as_deref(), &overrides)?;
            runtime()?.block_on(crate::store::migrate(&config.database))?;
            println!("migrated {}", crate::config::redact_url(&config.database));
            Ok(())
        }
        Command::Token(args) => {
            let config = Config::load(cli.config.as_deref(), &[])?;
            if config.jwt_algorithm == "HS256" && config.jwt_secret.is_none() {
                eprintln!(
                    "informd token: warning: signed with the DEVELOPMENT secret, which only a \
                     server without jwt_secret accepts; set INFORMD_JWT_SECRET to the server's \
                     secret to mint a token for it"
                );
            }
            let pem = args
                .private_key
                .as_ref()
                .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
                .transpose()?;
            let token = crate::auth::mint(
                &config,
                &args.sub,
                args.ttl.as_secs(),
                args.topics,
                pem.as_deref(),
            )?;
            println!("{token}");
            Ok(())
        }
        Command::Publish(args) => {
            let config = Config::load(cli.config.as_deref(), &[])?;
            runtime()?.block_on(publish(&config, args))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn json_object(flag: &str, text: Option<&str>) -> anyhow::Result<Option<Value>> {
    let Some(text) = text else { return Ok(None) };
    let value: Value =
        serde_json::from_str(text).with_context(|| format!("--{flag} is not valid JSON"))?;
    if !value.is_object() {
        bail!("--{flag} must be a JSON object");
    }
    Ok(Some(value))
}

async fn publish(config: &Config, args: PublishArgs) -> anyhow::Result<()> {
    let mut event = Map::new();
    match &args.topic {
        Some(topic) => {
            event.insert("topic".into(), json!(topic));
        }
        None => {
            event.insert("to".into(), json!(args.to));
            event.insert("kind".into(), json!(args.kind));
            for (name, text) in [("actor", &args.actor), ("subject", &args.subject)] {
                if let Some(value) = json_object(name, text.as_deref())? {
                    event.insert(name.into(), value);
                }
            }
            if let Some(group) = &args.group {
                event.insert("group".into(), json!(group));
            }
        }
    }
    if let Some(data) = json_object("data", args.data.as_deref())? {
        event.insert("data".into(), data);
    }
    let base = args.url.unwrap_or_else(|| {
        let listen = config.listen.replace("0.0.0.0", "127.0.0.1");
        format!("http://{listen}")
    });
    let key = match args.key {
        Some(key) => key,
        None => config
            .publish_keys()
            .into_iter()
            .next()
            .context("no publisher key configured")?,
    };
    let mut request = reqwest::Client::new()
        .post(format!("{}/publish", base.trim_end_matches('/')))
        .bearer_auth(key)
        .json(&Value::Object(event));
    if let Some(idempotency_key) = &args.idempotency_key {
        request = request.header("Idempotency-Key", idempotency_key);
    }
    let response = request.send().await.context("posting to the server")?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    println!("{body}");
    if !status.is_success() {
        bail!("the server answered {status}");
    }
    Ok(())
}
