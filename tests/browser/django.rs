//! docs/django.md, run: `tests/django/run_guide.py` copies the guide's Python blocks into a
//! Django project and uses them against the real informd (token view, context processor and
//! template, publishing from a signal after the commit with an Idempotency-Key); then the page
//! snippet Django rendered is opened in Chromium and must go live and follow the badge.
//! informd escalates the author's notification (the author never connects) to the guide's
//! receiving view, served by the harness on [`free_port`]: the view checks the signature and
//! sends the email.
//!
//! Needs `tests/django/.venv` (Django, PyJWT, requests), made by `scripts/deps/python.sh`.

use std::path::Path;
use std::process::Command;

use crate::daemon::Daemon;
use crate::{browser_dir, one_browser, run_scenario};

#[test]
fn the_django_guide_runs_against_a_live_informd() {
    let _one = one_browser();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = repo.join("tests/django/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/deps/python.sh",
        python.display()
    );
    let dir = tempfile::TempDir::new().unwrap();
    let django_port = free_port();
    let escalation_secret = "guide-escalation-secret-0123456789";
    let daemon = Daemon::start_with(
        dir.path(),
        false,
        0,
        &[
            (
                "INFORMD_ESCALATION_WEBHOOK",
                format!("http://127.0.0.1:{django_port}/notifications/escalate/"),
            ),
            ("INFORMD_ESCALATION_SECRET", escalation_secret.to_string()),
            ("INFORMD_ESCALATION_AFTER_SECS", "1".to_string()),
        ],
    );
    let page = dir.path().join("guide-page.html");
    let output = Command::new(&python)
        .arg(repo.join("tests/django/run_guide.py"))
        .current_dir(browser_dir())
        .env("INFORMD_URL", daemon.url(""))
        .env("INFORMD_JWT_SECRET", daemon.jwt_secret())
        .env("INFORMD_PUBLISH_KEY", daemon.publish_key())
        .env("GUIDE_PAGE_OUT", &page)
        .env("INFORMD_ESCALATION_SECRET", escalation_secret)
        .env("DJANGO_PORT", django_port.to_string())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success() && stdout.contains("django guide: passed"),
        "docs/django.md failed against informd:\n{stdout}\n{}\ninformd log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        daemon.log_tail(20)
    );
    // The guide's first user (the author) has primary key 1.
    run_scenario(
        "django_guide_snippet",
        daemon,
        dir.path(),
        &[
            ("GUIDE_PAGE", page.display().to_string()),
            ("GUIDE_USER", "1".to_string()),
        ],
    );
}

/// A port nothing listens on now, for the harness's Django server.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}
