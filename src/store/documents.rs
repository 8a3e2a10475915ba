//! How a preferences document is kept in a row: JSON text, the same for every backend.

use super::StoreError;
use crate::preferences::Preferences;

/// The text stored for `preferences`.
pub fn encode(preferences: &Preferences) -> Result<String, StoreError> {
    serde_json::to_string(preferences)
        .map_err(|e| StoreError::Database(sqlx::Error::Encode(e.into())))
}

/// The preferences a stored text holds.
pub fn decode(text: &str) -> Result<Preferences, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Database(sqlx::Error::Decode(e.into())))
}

/// Every `(user_id, document)` row, decoded.
pub fn decode_all(rows: Vec<(String, String)>) -> Result<Vec<(String, Preferences)>, StoreError> {
    rows.into_iter()
        .map(|(user, text)| Ok((user, decode(&text)?)))
        .collect()
}
