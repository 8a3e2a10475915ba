//! Browser tests: the real informd binary, and Debian's Chromium driven by playwright-core
//! (`tests/browser/scenarios.mjs`, one scenario per test). The scenario prints `@@restart`
//! when it wants informd killed and started again on the same port and database; this side
//! does it and answers `restarted` on the scenario's stdin.
//!
//! Needs `node`, `/usr/bin/chromium` and `tests/browser/node_modules` (all installed by
//! `scripts/deps/browser.sh`); a test fails with a message naming what is missing.

// A test that fails to set up should panic right there.
#![allow(clippy::unwrap_used)]

mod daemon;
mod django;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use daemon::Daemon;

/// One Chromium at a time: the machine is small, and timing-sensitive scenarios (takeover
/// within a second or two) should not compete with each other.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Fails with what to run when something the scenarios need is missing.
fn check_prerequisites() {
    let fix = "run scripts/deps/browser.sh (it installs chromium, node and the npm packages)";
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: {fix}"
    );
    assert!(
        Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "node is missing: {fix}"
    );
    assert!(
        browser_dir()
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "tests/browser/node_modules/playwright-core is missing: {fix}"
    );
}

/// How a scenario's informd is configured.
#[derive(Clone, Copy, PartialEq)]
enum Setup {
    /// A configured JWT secret and publisher key, leeway 0 (tokens end at `exp`); no demo.
    Site,
    /// `informd serve` with nothing configured: the development secret, and the demo page.
    Demo,
}

/// Runs scenario `name` against a fresh informd; panics with its output when it fails.
fn scenario(name: &str, setup: Setup) {
    let _one = one_browser();
    let dir = tempfile::TempDir::new().unwrap();
    let daemon = Daemon::start(dir.path(), setup == Setup::Demo, 0);
    run_scenario(name, daemon, dir.path(), &[]);
}

/// Waits for the browser to be free; held for the whole test, informd's start included.
fn one_browser() -> std::sync::MutexGuard<'static, ()> {
    ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs scenario `name` against `daemon` (whose database is in `dir`), with `env` added.
/// The caller holds [`one_browser`].
fn run_scenario(name: &str, mut daemon: Daemon, dir: &Path, env: &[(&str, String)]) {
    check_prerequisites();
    let demo = daemon.is_demo();
    let mut node = Command::new("node")
        .arg("scenarios.mjs")
        .arg(name)
        .current_dir(browser_dir())
        .env("INFORMD_URL", daemon.url(""))
        .env("INFORMD_TEST_JWT_SECRET", daemon.jwt_secret())
        .env("INFORMD_TEST_PUBLISH_KEY", daemon.publish_key())
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn node");
    let mut stdin = node.stdin.take().unwrap();
    let stdout = BufReader::new(node.stdout.take().unwrap());
    let mut output = Vec::new();
    for line in stdout.lines().map_while(Result::ok) {
        println!("{line}");
        if line.trim() == "@@restart" {
            let port = daemon.port;
            daemon.kill();
            daemon = Daemon::start(dir, demo, port);
            writeln!(stdin, "restarted").unwrap();
        }
        output.push(line);
    }
    let status = node.wait().unwrap();
    assert!(
        status.success(),
        "scenario {name} failed ({status}); informd log:\n{}",
        daemon.log_tail(40)
    );
    assert!(
        output.iter().any(|l| l.contains("passed")),
        "scenario {name} did not report passing: {output:?}"
    );
}

#[test]
fn three_tabs_share_one_socket() {
    scenario("three_tabs_share_one_socket", Setup::Site);
}

/// [`scenario`] against an informd that replays at most 3 events per `since`.
fn scenario_with_short_replays(name: &str, setup: Setup) {
    let _one = one_browser();
    let dir = tempfile::TempDir::new().unwrap();
    let settings = [("INFORMD_REPLAY_MAX", "3".to_string())];
    let daemon = Daemon::start_with(dir.path(), setup == Setup::Demo, 0, &settings);
    run_scenario(name, daemon, dir.path(), &[]);
}

#[test]
fn an_incomplete_replay_is_reported_to_the_page() {
    scenario_with_short_replays("incomplete_replay_is_reported", Setup::Site);
}

#[test]
fn the_demo_reloads_its_list_after_an_incomplete_replay() {
    scenario_with_short_replays("demo_reloads_after_an_incomplete_replay", Setup::Demo);
}

#[test]
fn tabs_close_one_by_one_leader_first() {
    scenario("tabs_close_one_by_one", Setup::Site);
}

#[test]
fn leader_tab_crash_is_taken_over_with_nothing_lost() {
    scenario("leader_tab_crashes", Setup::Site);
}

#[test]
fn two_users_in_one_browser_do_not_share_a_socket() {
    scenario("two_users_do_not_share", Setup::Site);
}

#[test]
fn mark_all_read_reaches_every_tab() {
    scenario("mark_all_read_reaches_every_tab", Setup::Site);
}

#[test]
fn server_restart_goes_offline_and_resumes() {
    scenario("server_restart", Setup::Site);
}

#[test]
fn token_is_refreshed_before_it_expires() {
    scenario("token_refreshed_before_exp", Setup::Site);
}

#[test]
fn close_4001_gets_a_new_token_and_resumes() {
    scenario("token_expired_4001_reconnects", Setup::Site);
}

#[test]
fn close_1008_stops_and_reports_offline() {
    scenario("policy_close_stops", Setup::Site);
}

#[test]
fn tabs_fall_back_to_their_own_socket_without_locks_or_broadcastchannel() {
    scenario("fallback_without_sharing_apis", Setup::Site);
}

#[test]
fn a_tab_rendered_earlier_gets_what_it_missed_once() {
    scenario("late_tab_with_rendered_seq", Setup::Site);
}

#[test]
fn a_tab_rendered_before_the_leaders_start_makes_it_replay_from_there() {
    scenario("late_tab_older_than_the_leader", Setup::Site);
}

#[test]
fn broadcasts_reach_the_tabs_that_asked() {
    scenario("broadcasts_and_topics", Setup::Site);
}

#[test]
fn the_client_loads_as_an_es_module_from_another_origin() {
    scenario("es_module_from_another_origin", Setup::Site);
}

#[test]
fn demo_page_like_raises_the_badge_in_another_tab() {
    scenario("demo_page", Setup::Demo);
}

#[test]
fn demo_page_groups_likes_into_one_item() {
    scenario("demo_grouped_likes", Setup::Demo);
}

#[test]
fn demo_page_render_to_connect_gap() {
    scenario("demo_render_to_connect_gap", Setup::Demo);
}

#[test]
fn demo_page_mutes_and_unmutes_likes_on_the_post() {
    scenario("demo_mute_likes", Setup::Demo);
}
