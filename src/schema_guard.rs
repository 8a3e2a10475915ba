//! Stops a node whose database a newer informd has migrated while the node ran.
//!
//! Nodes of different versions must not write to one database at once: a newer schema can
//! change what a row means (on PostgreSQL, since its migration 5, a folded notification's
//! position is in `moved_seq`, and an older node would keep moving `seq`). A node already
//! refuses to start on a database migrated past it (sqlx reports the migration it does not
//! know). This covers the node that was running when the newer version migrated: it checks
//! every few seconds, and when the database holds a migration it does not know, it stops
//! (gracefully, then exits non-zero), so an upgrade that missed one node does not leave it
//! writing the old way. Under supervisor, its restarts then fail at the start, where the
//! operator sees why.

use std::sync::Arc;
use std::time::Duration;

use crate::startup::Stopper;
use crate::store::Store;

/// How often a node looks for a migration it does not know: an upgrade's window of mixed
/// writes is at most this long, for one small query per node.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

/// Checks the database's schema every [`CHECK_EVERY`] until it finds a migration this build
/// does not know, then stops the node through `stopper`.
pub fn spawn(store: Arc<dyn Store>, stopper: Stopper) {
    actix_web::rt::spawn(async move {
        let mut ticks = tokio::time::interval(CHECK_EVERY);
        ticks.tick().await; // The start has just checked (the migrations ran).
        loop {
            ticks.tick().await;
            match store.newer_schema().await {
                Ok(None) => {}
                Ok(Some(version)) => {
                    let reason = format!(
                        "the database has schema migration {version}, which this informd ({}) \
                         does not know: a newer version migrated it. Stopping, so as not to \
                         write to it the old way; run the newer version on every node (README, \
                         \"Upgrading several nodes\")",
                        env!("CARGO_PKG_VERSION")
                    );
                    log::error!("{reason}");
                    stopper.fail(reason);
                    return;
                }
                // The database unreachable: /readyz says so, and the next tick looks again.
                Err(e) => log::debug!("schema check: {e}"),
            }
        }
    });
}
