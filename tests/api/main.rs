//! Behaviour tests: each starts the real server on a random port with its own database (a
//! SQLite file, or a fresh PostgreSQL database when `INFORMD_TEST_POSTGRES` is set) and talks
//! to it over real HTTP and WebSocket connections.

// A test that fails to set up should panic right there.
#![allow(clippy::unwrap_used)]

mod daemon;
mod helpers;

mod attacks;
mod auth;
mod browser_assets;
mod cluster;
mod concurrency;
mod escalation;
mod frontdoor;
mod grouping;
mod inbox;
mod lifecycle;
mod metrics;
mod operator;
mod postgres;
mod preferences;
mod priority;
mod publish;
mod redis;
mod resume;
mod retention;
mod slow_client;
mod websocket;
