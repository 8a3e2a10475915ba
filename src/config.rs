//! Configuration: one plain struct, layered from built-in defaults, an optional TOML file,
//! `INFORMD_*` environment variables and CLI flags (later layers win).
//!
//! The struct is passed to [`crate::startup::Application`] explicitly, never stored in a global,
//! so tests can run many differently configured servers in one process. Secrets are wrapped in
//! [`SecretString`] so that a `{:?}` of the config can never print them.

use std::path::{Path, PathBuf};

use figment::{
    providers::{Env, Format, Serialized, Toml},
    Figment,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};

use crate::priority::CommitPriority;

/// The development JWT secret used when none is configured. Anyone can mint tokens with it.
pub const DEV_JWT_SECRET: &str = "informd-development-secret-do-not-use-in-production";
/// The development publisher key used when none is configured.
pub const DEV_PUBLISH_KEY: &str = "informd-dev-publish-key";

/// Keys whose values are text. Their environment variables are taken verbatim (a secret
/// `0123` stays `0123`), not parsed the way figment parses other values.
pub const TEXT_KEYS: &[&str] = &[
    "listen",
    "database",
    "broker",
    "jwt_secret",
    "jwt_algorithm",
    "jwt_public_key_file",
    "jwt_audience",
    "jwt_issuer",
    "publish_keys",
    "allowed_origins",
    "cookie_name",
    "topic_prefixes",
    "metrics_listen",
    "trusted_proxies",
    "broker_prefix",
    "escalation_webhook",
    "escalation_secret",
    "commit_priority",
];

/// Keys whose values are numbers or booleans.
pub const TYPED_KEYS: &[&str] = &[
    "jwt_leeway_secs",
    "allow_anonymous",
    "heartbeat_secs",
    "max_frame_bytes",
    "inbound_rate",
    "outbound_queue",
    "max_sessions_per_user",
    "topic_history_max",
    "topic_history_days",
    "retention_days",
    "shutdown_grace_secs",
    "publish_rate",
    "max_publish_bytes",
    "idempotency_ttl_secs",
    "replay_max",
    "workers",
    "hub_shards",
    "write_timeout_secs",
    "demo",
    "escalation_after_secs",
];

/// A database or broker URL for a log line or an error: its password (in the authority or as
/// a `password=` parameter) replaced by `***` (`redis://:***@host:6379`); a file path is
/// shown as it is.
pub fn redact_url(database: &str) -> String {
    let Some((scheme, rest)) = database.split_once("://") else {
        return database.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    // The last `@` ends the user information: a password may itself hold an `@`.
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                        format!("{name}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Refuses `allowed_origins` entries that can never equal a browser's `Origin` (no scheme, a
/// path, a pattern), and `*` beside other entries, where a list was clearly meant.
fn check_origins(origins: &[String]) -> Result<(), ConfigError> {
    let setting = "set allowed_origins (INFORMD_ALLOWED_ORIGINS, comma-separated) to origins \
                   such as https://blog.example, or to * alone for any origin";
    if origins.len() > 1 && origins.iter().any(|o| o == "*") {
        return Err(ConfigError(format!(
            "allowed_origins mixes * with origins ({}): * allows every origin, so the list \
             would mean nothing; {setting}",
            origins.join(", ")
        )));
    }
    for origin in origins.iter().filter(|o| *o != "*") {
        let host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"));
        let why = match host {
            None => Some("it has no http:// or https:// scheme"),
            Some(host) if host.trim_end_matches('/').is_empty() => Some("it names no host"),
            Some(host) if host.trim_end_matches('/').contains('/') => Some("an origin has no path"),
            Some(host) if host.contains('*') => Some("patterns are not supported"),
            Some(host) if host.contains(char::is_whitespace) => Some("it contains a space"),
            Some(_) => None,
        };
        if let Some(why) = why {
            return Err(ConfigError(format!(
                "allowed_origins entry {origin:?} can never match a browser's Origin ({why}); \
                 {setting}"
            )));
        }
    }
    Ok(())
}

/// Shortest secret or publisher key that draws no warning: 256 bits, as HS256 wants.
const MIN_SECRET_BYTES: usize = 32;

/// Shortest `escalation_secret` accepted: a guessable key would let anyone forge escalations.
const MIN_ESCALATION_SECRET_BYTES: usize = 16;

/// Most clock skew `jwt_leeway_secs` may allow.
const MAX_LEEWAY_SECS: u64 = 3600;

/// Everything informd can be told. Field docs are the config reference in README.md.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP and WebSocket server binds, `host:port`.
    pub listen: String,
    /// `sqlite://path` (or a bare file path) or `postgres://…`.
    pub database: String,
    /// `memory` (single node) or `redis://…` (many nodes).
    pub broker: String,
    /// Namespace of every Redis channel and key, so deployments can share one Redis.
    #[serde(deserialize_with = "text")]
    pub broker_prefix: String,
    /// HS256 shared secret; `None` means the development secret (with a loud warning).
    #[serde(
        serialize_with = "serialize_secret",
        deserialize_with = "optional_secret"
    )]
    pub jwt_secret: Option<SecretString>,
    /// `HS256` (default), `RS256`, `ES256` or `EdDSA`.
    pub jwt_algorithm: String,
    /// PEM public key for the asymmetric algorithms.
    pub jwt_public_key_file: Option<PathBuf>,
    /// Required `aud` claim, when set.
    #[serde(deserialize_with = "optional_text")]
    pub jwt_audience: Option<String>,
    /// Required `iss` claim, when set.
    #[serde(deserialize_with = "optional_text")]
    pub jwt_issuer: Option<String>,
    /// Clock skew tolerated between the site's backend and informd on `exp`, `nbf` and `iat`.
    pub jwt_leeway_secs: u64,
    /// Keys backend services present to `POST /publish`; empty means the development key. A
    /// key that is given must not be blank (an empty key would let anyone publish).
    #[serde(
        deserialize_with = "secret_list",
        serialize_with = "serialize_secrets",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub publish_keys: Vec<SecretString>,
    /// Browser origins allowed to connect and call the REST API. Empty: same origin only;
    /// `*`: any origin.
    #[serde(deserialize_with = "list")]
    pub allowed_origins: Vec<String>,
    /// Whether a handshake without a token gets an anonymous, broadcast-only session.
    pub allow_anonymous: bool,
    /// Cookie that may carry the user's JWT.
    #[serde(deserialize_with = "text")]
    pub cookie_name: String,
    /// Seconds between server pings; a session silent for two intervals is closed at the next
    /// ping (so after two to three intervals).
    pub heartbeat_secs: u64,
    /// Largest inbound WebSocket frame, bytes (larger: close 1009).
    pub max_frame_bytes: usize,
    /// Inbound frames per second a session may send (burst: twice that).
    pub inbound_rate: u32,
    /// Frames queued for one session before it is closed with 1013.
    pub outbound_queue: usize,
    /// Live sessions one user may hold at once on one node.
    pub max_sessions_per_user: usize,
    /// Topic prefixes anyone may subscribe to (`global` always).
    #[serde(deserialize_with = "list")]
    pub topic_prefixes: Vec<String>,
    /// Broadcasts kept per topic for replay.
    pub topic_history_max: u64,
    /// Days a broadcast is kept for replay.
    pub topic_history_days: u64,
    /// Days a notification is kept before it is pruned.
    pub retention_days: u64,
    /// Seconds a shutdown may take before in-flight work is abandoned.
    pub shutdown_grace_secs: u64,
    /// Publish requests per second per key (burst: twice that); 0 disables the limit.
    pub publish_rate: u32,
    /// Largest `POST /publish` body, bytes (larger: 413).
    pub max_publish_bytes: usize,
    /// Seconds an `Idempotency-Key` is remembered.
    pub idempotency_ttl_secs: u64,
    /// Most events replayed for one `since`; older ones are reported as `complete:false`.
    pub replay_max: u64,
    /// HTTP worker threads, and as many session threads; 0 means one per core.
    pub workers: usize,
    /// Hub shards (threads holding sessions); 0 means one per core.
    pub hub_shards: usize,
    /// Seconds one write to a client may take. A client that does not take its bytes in time
    /// (it stopped reading) is closed with 1013, so it cannot hold its session, or a shutdown.
    pub write_timeout_secs: u64,
    /// Serve the demo page at `/` and hand out demo tokens. Unset: on only while no
    /// `jwt_secret` is configured (a production daemon serves no demo). See [`Config::demo_on`].
    pub demo: Option<bool>,
    /// Serve `GET /metrics` only on this `host:port`, not on `listen`; unset: on `listen`.
    pub metrics_listen: Option<String>,
    /// Proxies (addresses or CIDR ranges, e.g. `127.0.0.1`, `10.0.0.0/8`) whose
    /// `X-Forwarded-For` names the real client in logs; empty: the TCP peer is the client.
    #[serde(deserialize_with = "list")]
    pub trusted_proxies: Vec<String>,
    /// Where notifications still unread `escalation_after_secs` after publishing, whose user
    /// had no live session since, are POSTed (an `http://` or `https://` URL); unset: never.
    #[serde(deserialize_with = "optional_text")]
    pub escalation_webhook: Option<String>,
    /// Seconds a notification must stay unread, its user offline, before it is escalated.
    pub escalation_after_secs: u64,
    /// Key of the `X-Informd-Signature` HMAC over each escalation body; required with
    /// `escalation_webhook`.
    #[serde(
        serialize_with = "serialize_secret",
        deserialize_with = "optional_secret"
    )]
    pub escalation_secret: Option<SecretString>,
    /// `normal`, or `realtime`: the SQLite writer's threads run in Linux's realtime class, so
    /// a publish does not wait for a core behind a fan-out (needs `CAP_SYS_NICE` or
    /// `RLIMIT_RTPRIO`). See [`Config::commit_priority()`].
    #[serde(deserialize_with = "text")]
    pub commit_priority: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            database: "sqlite://informd.db".into(),
            broker: "memory".into(),
            broker_prefix: "informd".into(),
            jwt_secret: None,
            jwt_algorithm: "HS256".into(),
            jwt_public_key_file: None,
            jwt_audience: None,
            jwt_issuer: None,
            jwt_leeway_secs: 30,
            publish_keys: Vec::new(),
            allowed_origins: Vec::new(),
            allow_anonymous: true,
            cookie_name: "informd_token".into(),
            heartbeat_secs: 25,
            max_frame_bytes: 16 * 1024,
            inbound_rate: 20,
            outbound_queue: 512,
            max_sessions_per_user: 16,
            topic_prefixes: vec!["article:".into()],
            topic_history_max: 1000,
            topic_history_days: 7,
            retention_days: 90,
            shutdown_grace_secs: 10,
            publish_rate: 0,
            max_publish_bytes: 1024 * 1024,
            idempotency_ttl_secs: 24 * 3600,
            replay_max: 1000,
            workers: 0,
            hub_shards: 0,
            write_timeout_secs: 10,
            demo: None,
            metrics_listen: None,
            trusted_proxies: Vec::new(),
            escalation_webhook: None,
            escalation_after_secs: 900,
            escalation_secret: None,
            commit_priority: "normal".into(),
        }
    }
}

/// A configuration that could not be loaded or makes no sense; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Loads defaults, then `file` (if given), then `INFORMD_*` variables, then `overrides`
    /// (CLI flags, as a partial TOML-like map).
    pub fn load(file: Option<&Path>, overrides: &[(&str, String)]) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        for key in TEXT_KEYS {
            if let Ok(value) = std::env::var(format!("INFORMD_{}", key.to_uppercase())) {
                figment = figment.merge(Serialized::default(key, value));
            }
        }
        figment = figment.merge(Env::prefixed("INFORMD_").only(TYPED_KEYS));
        for (key, value) in overrides {
            figment = figment.merge(Serialized::default(key, value));
        }
        let config: Config = figment.extract().map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Rejects values that would only fail later, with the key's name in the message.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("heartbeat_secs", self.heartbeat_secs as usize),
            ("max_frame_bytes", self.max_frame_bytes),
            ("inbound_rate", self.inbound_rate as usize),
            ("outbound_queue", self.outbound_queue),
            ("max_sessions_per_user", self.max_sessions_per_user),
            ("topic_history_max", self.topic_history_max as usize),
            ("max_publish_bytes", self.max_publish_bytes),
            ("replay_max", self.replay_max as usize),
            ("write_timeout_secs", self.write_timeout_secs as usize),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError(format!("{key} must be greater than 0")));
            }
        }
        if self
            .jwt_secret
            .as_ref()
            .is_some_and(|s| s.expose_secret().trim().is_empty())
        {
            return Err(ConfigError(
                "jwt_secret is empty: anyone could sign a token with an empty key. Set \
                 jwt_secret (INFORMD_JWT_SECRET) to a long random string shared with the site's \
                 backend, or leave it unset for the development secret"
                    .into(),
            ));
        }
        if self
            .publish_keys
            .iter()
            .any(|k| k.expose_secret().is_empty())
        {
            return Err(ConfigError(
                "publish_keys holds an empty key: anyone could publish with it. Give one or more \
                 non-empty keys in publish_keys (INFORMD_PUBLISH_KEYS, comma-separated), or \
                 leave it unset for the development key"
                    .into(),
            ));
        }
        check_origins(&self.allowed_origins)?;
        self.check_escalation()?;
        crate::http::peer::TrustedProxies::parse(&self.trusted_proxies).map_err(ConfigError)?;
        if self.jwt_leeway_secs > MAX_LEEWAY_SECS {
            return Err(ConfigError(format!(
                "jwt_leeway_secs must be at most {MAX_LEEWAY_SECS}"
            )));
        }
        match self.jwt_algorithm.as_str() {
            "HS256" => {}
            "RS256" | "ES256" | "EdDSA" => {
                if self.jwt_public_key_file.is_none() {
                    return Err(ConfigError(format!(
                        "jwt_algorithm {} needs jwt_public_key_file",
                        self.jwt_algorithm
                    )));
                }
            }
            other => {
                return Err(ConfigError(format!(
                    "jwt_algorithm {other:?} is not one of HS256, RS256, ES256, EdDSA"
                )))
            }
        }
        if self.demo == Some(true) && self.jwt_algorithm != "HS256" {
            return Err(ConfigError(format!(
                "demo = true needs jwt_algorithm HS256: the demo page signs its visitors' tokens, \
                 and with {} informd holds only the public key. Set demo = false",
                self.jwt_algorithm
            )));
        }
        if self.broker != "memory"
            && !self.broker.starts_with("redis://")
            && !self.broker.starts_with("rediss://")
        {
            return Err(ConfigError(format!(
                "broker {:?} is not supported: set broker (INFORMD_BROKER) to \"memory\" (one \
                 node) or a redis:// or rediss:// URL (several nodes)",
                redact_url(&self.broker)
            )));
        }
        self.check_commit_priority()?;
        if self.broker_prefix.is_empty()
            || self
                .broker_prefix
                .contains(|c: char| c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError(format!(
                "broker_prefix {:?} must be a non-empty name without spaces, such as \"informd\"; \
                 set broker_prefix (INFORMD_BROKER_PREFIX)",
                self.broker_prefix
            )));
        }
        Ok(())
    }

    /// How the store's writer is scheduled; [`Config::validate`] has checked the value.
    pub fn commit_priority(&self) -> CommitPriority {
        if self.commit_priority == "realtime" {
            CommitPriority::Realtime
        } else {
            CommitPriority::Normal
        }
    }

    /// Refuses a `commit_priority` informd does not know, and `realtime` where there is no
    /// writer thread of informd's own to move: with PostgreSQL the commit runs in the database
    /// server.
    fn check_commit_priority(&self) -> Result<(), ConfigError> {
        match self.commit_priority.as_str() {
            "normal" => Ok(()),
            "realtime" => match crate::store::Backend::of(&self.database) {
                Ok(crate::store::Backend::Postgres) => Err(ConfigError(
                    "commit_priority = \"realtime\" applies to the SQLite writer only: with \
                     PostgreSQL the commit runs in the database server. Set commit_priority \
                     (INFORMD_COMMIT_PRIORITY) to \"normal\""
                        .into(),
                )),
                _ => Ok(()),
            },
            other => Err(ConfigError(format!(
                "commit_priority {other:?} is not one of \"normal\", \"realtime\": set \
                 commit_priority (INFORMD_COMMIT_PRIORITY)"
            ))),
        }
    }

    /// Refuses a webhook that is not an http(s) URL, or that has no signing secret to go with
    /// it: the receiver could not tell informd's POSTs from anyone else's.
    fn check_escalation(&self) -> Result<(), ConfigError> {
        if self.escalation_after_secs == 0 {
            return Err(ConfigError(
                "escalation_after_secs must be greater than 0".into(),
            ));
        }
        let Some(webhook) = &self.escalation_webhook else {
            return Ok(());
        };
        let host = webhook
            .strip_prefix("https://")
            .or_else(|| webhook.strip_prefix("http://"))
            .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
        let usable =
            matches!(host, Some(host) if !host.is_empty() && !host.contains(char::is_whitespace));
        if !usable {
            return Err(ConfigError(format!(
                "escalation_webhook {:?} is not an http:// or https:// URL with a host; set \
                 escalation_webhook (INFORMD_ESCALATION_WEBHOOK) to the site's receiving view, \
                 such as https://blog.example/informd/escalate, or leave it unset",
                redact_url(webhook)
            )));
        }
        let secret = self
            .escalation_secret
            .as_ref()
            .map_or("", |s| s.expose_secret().trim());
        if secret.len() < MIN_ESCALATION_SECRET_BYTES {
            return Err(ConfigError(format!(
                "escalation_secret is {}: with escalation_webhook set, informd signs every POST \
                 with it, and the site must refuse unsigned ones. Set escalation_secret \
                 (INFORMD_ESCALATION_SECRET) to a random string of at least \
                 {MIN_ESCALATION_SECRET_BYTES} bytes shared with the site",
                if secret.is_empty() {
                    "missing or empty"
                } else {
                    "too short"
                }
            )));
        }
        Ok(())
    }

    /// The origin rule in force, for the start-up log.
    pub fn origin_mode(&self) -> String {
        match self.allowed_origins.as_slice() {
            [] => "same origin only (a browser's Origin must match the Host it connects to)"
                .to_string(),
            [any] if any == "*" => "ANY origin (allowed_origins = *)".to_string(),
            listed => format!("only {}", listed.join(", ")),
        }
    }

    /// The HS256 secret in force: the configured one, or the development one.
    pub fn jwt_secret(&self) -> &str {
        self.jwt_secret
            .as_ref()
            .map(|s| s.expose_secret())
            .unwrap_or(DEV_JWT_SECRET)
    }

    /// The publisher keys in force: the configured ones, or the development one.
    pub fn publish_keys(&self) -> Vec<String> {
        if self.publish_keys.is_empty() {
            vec![DEV_PUBLISH_KEY.to_string()]
        } else {
            self.publish_keys
                .iter()
                .map(|k| k.expose_secret().to_string())
                .collect()
        }
    }

    /// What is insecure about this configuration, one warning a line (empty when none).
    pub fn development_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.jwt_algorithm == "HS256" && self.jwt_secret.is_none() {
            warnings.push(
                "no jwt_secret configured: using the DEVELOPMENT secret; anyone can mint user \
                 tokens. Set INFORMD_JWT_SECRET before exposing this server."
                    .to_string(),
            );
        }
        if let Some(secret) = &self.jwt_secret {
            let len = secret.expose_secret().len();
            if len < MIN_SECRET_BYTES {
                warnings.push(format!(
                    "jwt_secret is only {len} bytes: an HS256 secret should be at least \
                     {MIN_SECRET_BYTES} random bytes, or it can be guessed offline from any token"
                ));
            }
        }
        let short_keys = self
            .publish_keys
            .iter()
            .filter(|k| k.expose_secret().len() < MIN_SECRET_BYTES)
            .count();
        if short_keys > 0 {
            warnings.push(format!(
                "{short_keys} of publish_keys is shorter than {MIN_SECRET_BYTES} bytes: use long \
                 random keys"
            ));
        }
        if self.publish_keys.is_empty() {
            warnings.push(format!(
                "no publish_keys configured: using the DEVELOPMENT key {DEV_PUBLISH_KEY:?}; anyone \
                 can publish. Set INFORMD_PUBLISH_KEYS before exposing this server."
            ));
        }
        warnings
    }

    /// Whether the demo page and its token endpoint are served: `demo` when set, otherwise
    /// only while informd runs on the development secret.
    pub fn demo_on(&self) -> bool {
        self.demo
            .unwrap_or(self.jwt_secret.is_none() && self.jwt_algorithm == "HS256")
    }

    /// Seconds a session may be silent before it is closed: two missed heartbeats.
    pub fn idle_timeout_secs(&self) -> u64 {
        self.heartbeat_secs.saturating_mul(2)
    }
}

/// A scalar read as text. The environment provider types values by their look, so a secret
/// `12345` or a key `true` arrives as a number or a boolean; they are text all the same.
#[derive(Deserialize)]
#[serde(untagged)]
enum Text {
    String(String),
    Integer(i128),
    Float(f64),
    Bool(bool),
}

impl From<Text> for String {
    fn from(text: Text) -> String {
        match text {
            Text::String(s) => s,
            Text::Integer(n) => n.to_string(),
            Text::Float(f) => f.to_string(),
            Text::Bool(b) => b.to_string(),
        }
    }
}

fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Text::deserialize(deserializer)?.into())
}

fn optional_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Text>::deserialize(deserializer)?.map(String::from))
}

fn optional_secret<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SecretString>, D::Error> {
    Ok(optional_text(deserializer)?.map(SecretString::from))
}

/// Accepts a list either as a TOML array or as one comma-separated string (the environment).
fn list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: From<String>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Text),
        Many(Vec<Text>),
    }
    let items: Vec<String> = match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(s) => String::from(s)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        OneOrMany::Many(v) => v.into_iter().map(String::from).collect(),
    };
    Ok(items.into_iter().map(T::from).collect())
}

/// [`list`] for secrets. Unlike other lists, blank items are kept, for [`Config::validate`] to
/// refuse: `INFORMD_PUBLISH_KEYS=` set to nothing is a mistake, not a wish for no key.
fn secret_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<SecretString>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Text),
        Many(Vec<Text>),
    }
    let items: Vec<String> = match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(s) => String::from(s).split(',').map(String::from).collect(),
        OneOrMany::Many(v) => v.into_iter().map(String::from).collect(),
    };
    Ok(items
        .into_iter()
        .map(|k| SecretString::from(k.trim().to_string()))
        .collect())
}

fn serialize_secret<S: serde::Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(s) => serializer.serialize_some(s.expose_secret()),
        None => serializer.serialize_none(),
    }
}

fn serialize_secrets<S: serde::Serializer>(
    secrets: &[SecretString],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(secrets.iter().map(|s| s.expose_secret()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_logged_without_their_password() {
        assert_eq!(
            redact_url("redis://:hunter2@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(
            redact_url("postgres://informd:p@ss@db/informd"),
            "postgres://informd:***@db/informd"
        );
        assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(redact_url("sqlite://informd.db"), "sqlite://informd.db");
        assert_eq!(
            redact_url("/var/lib/a@b/informd.db"),
            "/var/lib/a@b/informd.db"
        );
    }

    #[test]
    fn defaults_are_valid_and_warn_about_development_secrets() {
        let config = Config::default();
        assert!(config.validate().is_ok());
        assert_eq!(config.development_warnings().len(), 2);
        assert_eq!(config.publish_keys(), vec![DEV_PUBLISH_KEY.to_string()]);
    }

    #[test]
    fn lists_come_from_comma_separated_strings() -> Result<(), Box<dyn std::error::Error>> {
        let config = Config::load(
            None,
            &[
                ("publish_keys", "key-a, key-b".into()),
                ("topic_prefixes", "article:, ,forum:".into()),
                ("allowed_origins", "https://x.example".into()),
            ],
        )?;
        assert_eq!(config.publish_keys(), vec!["key-a", "key-b"]);
        assert_eq!(config.topic_prefixes, vec!["article:", "forum:"]);
        assert_eq!(config.allowed_origins, vec!["https://x.example"]);
        Ok(())
    }

    #[test]
    fn empty_secrets_are_refused_and_short_ones_warned_about() {
        for blank in ["", "   "] {
            let err = Config::load(None, &[("jwt_secret", blank.into())]).unwrap_err();
            assert!(err.to_string().contains("jwt_secret is empty"), "{err}");
        }
        for keys in ["", "good-key,,other", " , "] {
            let err = Config::load(None, &[("publish_keys", keys.into())]).unwrap_err();
            assert!(err.to_string().contains("publish_keys"), "{err}");
            assert!(err.to_string().contains("holds an empty key"), "{err}");
        }
        let config = Config {
            jwt_secret: Some("short".to_string().into()),
            publish_keys: vec!["also-short".to_string().into()],
            ..Config::default()
        };
        let warnings = config.development_warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("jwt_secret is only 5 bytes"));
        assert!(warnings[1].contains("1 of publish_keys is shorter"));
    }

    #[test]
    fn asymmetric_algorithms_need_a_key_file() {
        let err = Config::load(None, &[("jwt_algorithm", "RS256".into())]).unwrap_err();
        assert!(err.to_string().contains("jwt_public_key_file"));
    }

    #[test]
    fn every_key_is_read_from_the_environment() -> Result<(), Box<dyn std::error::Error>> {
        let with_every_key = Config {
            publish_keys: vec!["k".to_string().into()],
            ..Config::default()
        };
        let value = serde_json::to_value(with_every_key)?;
        let mut fields: Vec<&str> = value
            .as_object()
            .ok_or("not an object")?
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut known: Vec<&str> = TEXT_KEYS.iter().chain(TYPED_KEYS).copied().collect();
        fields.sort_unstable();
        known.sort_unstable();
        assert_eq!(fields, known);
        Ok(())
    }

    #[test]
    fn the_demo_is_on_by_default_only_on_the_development_secret() {
        assert!(Config::default().demo_on());
        let production = Config {
            jwt_secret: Some("a-real-secret".to_string().into()),
            ..Config::default()
        };
        assert!(!production.demo_on());
        assert!(Config {
            demo: Some(true),
            ..production
        }
        .demo_on());
        assert!(!Config {
            demo: Some(false),
            ..Config::default()
        }
        .demo_on());
        let err = Config {
            jwt_algorithm: "RS256".into(),
            jwt_public_key_file: Some("k.pem".into()),
            demo: Some(true),
            ..Config::default()
        }
        .validate()
        .unwrap_err();
        assert!(err
            .to_string()
            .contains("demo = true needs jwt_algorithm HS256"));
    }

    #[test]
    fn commit_priority_is_normal_or_realtime_and_realtime_only_on_sqlite() -> Result<(), ConfigError>
    {
        assert_eq!(Config::default().commit_priority(), CommitPriority::Normal);
        let realtime = Config {
            commit_priority: "realtime".into(),
            ..Config::default()
        };
        realtime.validate()?;
        assert_eq!(realtime.commit_priority(), CommitPriority::Realtime);
        let err = Config {
            commit_priority: "fast".into(),
            ..Config::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("commit_priority \"fast\" is not one of"),
            "{err}"
        );
        assert!(err.contains("INFORMD_COMMIT_PRIORITY"), "{err}");
        let err = Config {
            database: "postgres://postgres@127.0.0.1/informd".into(),
            ..realtime
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("applies to the SQLite writer only"), "{err}");
        Ok(())
    }

    #[test]
    fn leeway_is_bounded() {
        let config = Config {
            jwt_leeway_secs: 100_000,
            ..Config::default()
        };
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("jwt_leeway_secs must be at most"));
    }

    #[test]
    fn an_escalation_webhook_needs_http_and_a_secret() -> Result<(), ConfigError> {
        let secret = "a-long-escalation-secret";
        let config = Config::load(
            None,
            &[
                ("escalation_webhook", "https://blog.example/escalate".into()),
                ("escalation_secret", secret.into()),
            ],
        )?;
        assert_eq!(config.escalation_after_secs, 900);
        assert!(!format!("{config:?}").contains(secret));
        for (webhook, secret, says) in [
            (
                "https://blog.example/e",
                "",
                "escalation_secret is missing or empty",
            ),
            (
                "https://blog.example/e",
                "short",
                "escalation_secret is too short",
            ),
            (
                "ftp://u:pw@blog.example/e",
                secret,
                "\"ftp://u:***@blog.example/e\"",
            ),
            (
                "blog.example/e",
                secret,
                "is not an http:// or https:// URL",
            ),
            ("http://", secret, "is not an http:// or https:// URL"),
        ] {
            let err = Config::load(
                None,
                &[
                    ("escalation_webhook", webhook.into()),
                    ("escalation_secret", secret.into()),
                ],
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains(says), "{webhook}: {err}");
            assert!(!err.contains("pw@"), "{err}");
        }
        Ok(())
    }

    #[test]
    fn debug_output_never_shows_secrets() -> Result<(), Box<dyn std::error::Error>> {
        let config = Config::load(None, &[("jwt_secret", "hunter2-secret".into())])?;
        assert!(!format!("{config:?}").contains("hunter2"));
        Ok(())
    }
}
