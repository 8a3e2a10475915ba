//! Reading and changing a user's preferences: the store keeps them, this node's [`Mutes`]
//! answer from memory, and the other nodes hear of each change through [`super::sync`].

use std::sync::Arc;

use super::sync::{self, Announcer};
use super::{Mutes, Preferences};
use crate::config::Config;
use crate::store::{Store, StoreError};

/// The preferences of every user, as this node knows them, and the way to change them.
pub struct PreferenceService {
    store: Arc<dyn Store>,
    mutes: Arc<Mutes>,
    /// Tells the other nodes that a user's preferences changed; `None` with one node.
    announcer: Option<Announcer>,
}

impl PreferenceService {
    /// Loads every user's preferences, and with a Redis broker starts listening for the other
    /// nodes' changes. Must run inside an actix system.
    pub async fn start(
        config: &Config,
        store: Arc<dyn Store>,
    ) -> Result<PreferenceService, StoreError> {
        let mutes = Arc::new(Mutes::default());
        mutes.replace_all(store.all_preferences().await?);
        log::info!("preferences: {} users have some", mutes.len());
        let announcer = sync::start(config, store.clone(), mutes.clone());
        Ok(PreferenceService {
            store,
            mutes,
            announcer,
        })
    }

    /// What publishing and the sessions consult.
    pub fn mutes(&self) -> &Arc<Mutes> {
        &self.mutes
    }

    /// The user's preferences (empty when they have none).
    pub fn get(&self, user: &str) -> Preferences {
        self.mutes.get(user)
    }

    /// Replaces the user's preferences: stored first, then in force on this node at once, and
    /// on the others as soon as the broker carries the news.
    pub async fn set(&self, user: &str, preferences: Preferences) -> Result<(), StoreError> {
        self.store.set_preferences(user, &preferences).await?;
        self.mutes.set(user, Some(preferences));
        if let Some(announcer) = &self.announcer {
            announcer.changed(user);
        }
        Ok(())
    }
}
