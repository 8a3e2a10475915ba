//! Per-user preferences: the kinds, groups and topics a user has muted.
//!
//! The document ([`Preferences`]) is stored by the [`crate::store`] and kept whole in memory on
//! every node ([`Mutes`]), so that a publish decides who is muted without asking the database
//! once per recipient. [`PreferenceService`] writes a change through to the store, applies it
//! to this node's [`Mutes`] at once, and tells the other nodes to read it again
//! ([`sync`]). Publishing ([`crate::publish`]) drops muted recipients before the store sees
//! the events; sessions ([`crate::session`]) drop broadcasts of muted topics.

mod document;
mod mutes;
mod service;
mod sync;

pub use document::{parse_preferences, Preferences, MAX_MUTED};
pub use mutes::Mutes;
pub use service::PreferenceService;
