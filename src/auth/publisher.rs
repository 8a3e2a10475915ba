//! Publisher keys: the shared secrets backend services present to `POST /publish`.
//!
//! Keys are compared as SHA-256 digests with a constant-time equality, so neither the content
//! nor the length of a configured key leaks through response timing.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The configured keys, kept only as digests.
pub struct PublisherKeys {
    digests: Vec<[u8; 32]>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl PublisherKeys {
    pub fn new(keys: &[String]) -> PublisherKeys {
        PublisherKeys {
            digests: keys.iter().map(|k| digest(k)).collect(),
        }
    }

    /// The index of the key `presented` matches (used to key the rate limit), if any. Every
    /// configured key is compared, whichever matches.
    pub fn check(&self, presented: &str) -> Option<usize> {
        let presented = digest(presented);
        let mut found = None;
        for (index, key) in self.digests.iter().enumerate() {
            if bool::from(key.ct_eq(&presented)) {
                found = Some(index);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_keys_match() {
        let keys = PublisherKeys::new(&["alpha".into(), "beta".into()]);
        assert_eq!(keys.check("beta"), Some(1));
        assert_eq!(keys.check("alph"), None);
        assert_eq!(keys.check(""), None);
    }
}
