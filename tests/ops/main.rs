//! Deployment tests: informd run the way the README's "Deploying" section says, from the files
//! we ship (supervisor/, nginx/, systemd/, Procfile), with real supervisord and nginx processes
//! in a temporary directory on random ports. scripts/deps/ops.sh installs what they need; a
//! test whose program is missing fails and says what to install.

// A test that fails to set up should panic right there.
#![allow(clippy::unwrap_used)]

// The behaviour tests' helpers: tokens, frames, WebSocket clients. Not every helper is used here.
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
mod render;
mod stack;

mod access;
mod drain;
mod grafana;
mod logs;
mod restart;
mod through_proxy;
mod units;
