//! User tokens: verification with jsonwebtoken, and minting for development (`informd token`).
//!
//! `sub` and `exp` are required; `nbf` is honoured; `aud` and `iss` are required to match when
//! configured; an `iat` in the future is refused. Only the configured algorithm is accepted, so
//! `alg: none` and algorithm-confusion tokens fail like any forged one. Error messages say what
//! was wrong with the token, never the token itself.

use std::fs;
use std::time::Duration;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError};
use crate::model::check_user_id;

/// The claims informd reads. `topics` lists private topics (or `prefix*` patterns) the user may
/// subscribe to beyond the public prefixes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    #[serde(deserialize_with = "subject")]
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
}

/// The `sub` claim, which must be text. A site that signs its numeric user id as a number
/// is told so in words, not with "the token is malformed".
fn subject<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(sub) => Ok(sub),
        serde_json::Value::Number(n) => Err(serde::de::Error::custom(format!(
            "sub must be a string like \"{n}\", got a number"
        ))),
        _ => Err(serde::de::Error::custom("sub must be a string")),
    }
}

/// The `aud` claim: one audience or several (both are valid JWT).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// A verified user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    /// Unix seconds after which the session must end: `exp` plus the configured leeway, the
    /// same instant the handshake would start refusing the token.
    pub expires_at: u64,
    pub topics: Vec<String>,
}

/// The longest a session may run on one token before it must refresh. Far beyond any real
/// token's life; it bounds the arithmetic on a validly signed but absurd `exp` (near
/// `u64::MAX`), which would otherwise overflow when turned into a deadline.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl Identity {
    /// How long from `now_secs` (Unix seconds) until the session must end, at most
    /// [`MAX_TOKEN_LIFETIME`]: safe to add to any `Instant`.
    pub fn expires_in(&self, now_secs: u64) -> Duration {
        Duration::from_secs(self.expires_at.saturating_sub(now_secs)).min(MAX_TOKEN_LIFETIME)
    }

    /// Whether the token's `topics` claim grants `topic`.
    pub fn may_subscribe(&self, topic: &str) -> bool {
        self.topics
            .iter()
            .any(|allowed| match allowed.strip_suffix('*') {
                Some(prefix) => topic.starts_with(prefix),
                None => allowed == topic,
            })
    }
}

/// Why a token was refused; the message is safe to show the client and to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's algorithm is not the configured one")]
    WrongAlgorithm,
    #[error("the token's audience is not accepted")]
    WrongAudience,
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the token lacks a required claim: {0}")]
    MissingClaim(&'static str),
    #[error("the token's subject is invalid: {0}")]
    BadSubject(String),
    /// Signed, but a claim has the wrong type.
    #[error("the token's claims are invalid: {0}")]
    BadClaims(String),
    #[error("the token is malformed")]
    Malformed,
}

/// A claims decoding error without serde's position suffix, which means nothing to the site.
fn claims_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// Verifies user tokens with the configured algorithm and key.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    leeway: u64,
}

fn algorithm(name: &str) -> Result<Algorithm, ConfigError> {
    match name {
        "HS256" => Ok(Algorithm::HS256),
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        "EdDSA" => Ok(Algorithm::EdDSA),
        other => Err(ConfigError(format!("unsupported jwt_algorithm {other:?}"))),
    }
}

impl Verifier {
    /// Builds the verifier, reading the public key file for asymmetric algorithms.
    pub fn from_config(config: &Config) -> Result<Verifier, ConfigError> {
        let alg = algorithm(&config.jwt_algorithm)?;
        let key = match alg {
            Algorithm::HS256 => DecodingKey::from_secret(config.jwt_secret().as_bytes()),
            _ => {
                let path = config.jwt_public_key_file.as_ref().ok_or_else(|| {
                    ConfigError(format!("jwt_algorithm {alg:?} needs jwt_public_key_file"))
                })?;
                let pem = fs::read(path).map_err(|e| {
                    ConfigError(format!("jwt_public_key_file {}: {e}", path.display()))
                })?;
                let key = match alg {
                    Algorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
                    Algorithm::ES256 => DecodingKey::from_ec_pem(&pem),
                    _ => DecodingKey::from_ed_pem(&pem),
                };
                key.map_err(|e| {
                    ConfigError(format!("jwt_public_key_file {}: {e}", path.display()))
                })?
            }
        };
        let mut validation = Validation::new(alg);
        validation.leeway = config.jwt_leeway_secs;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match &config.jwt_audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &config.jwt_issuer {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".into());
        }
        if config.jwt_audience.is_some() {
            validation.required_spec_claims.insert("aud".into());
        }
        Ok(Verifier {
            key,
            validation,
            leeway: config.jwt_leeway_secs,
        })
    }

    /// Checks a token and returns who it is for.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data =
            decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm => AuthError::WrongAlgorithm,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::MissingRequiredClaim(claim) => {
                    AuthError::MissingClaim(match claim.as_str() {
                        "exp" => "exp",
                        "sub" => "sub",
                        "aud" => "aud",
                        "iss" => "iss",
                        _ => "unknown",
                    })
                }
                ErrorKind::Json(e) => AuthError::BadClaims(claims_message(e)),
                _ => AuthError::Malformed,
            })?;
        let claims = data.claims;
        if let Some(iat) = claims.iat {
            if iat > now_secs() + self.leeway {
                return Err(AuthError::NotYetValid);
            }
        }
        check_user_id(&claims.sub).map_err(AuthError::BadSubject)?;
        Ok(Identity {
            user: claims.sub,
            expires_at: claims.exp.saturating_add(self.leeway),
            topics: claims.topics,
        })
    }
}

/// Unix seconds, now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Mints a token for `sub` valid for `ttl_secs`, signed with the configured HS256 secret or
/// with `private_key_pem` for the asymmetric algorithms.
pub fn mint(
    config: &Config,
    sub: &str,
    ttl_secs: u64,
    topics: Vec<String>,
    private_key_pem: Option<&[u8]>,
) -> Result<String, ConfigError> {
    check_user_id(sub).map_err(|m| ConfigError(format!("sub {m}")))?;
    let alg = algorithm(&config.jwt_algorithm)?;
    let key = match alg {
        Algorithm::HS256 => EncodingKey::from_secret(config.jwt_secret().as_bytes()),
        _ => {
            let pem = private_key_pem.ok_or_else(|| {
                ConfigError(format!(
                    "jwt_algorithm {alg:?} signs with a private key: pass --private-key FILE"
                ))
            })?;
            match alg {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(pem),
                Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
                _ => EncodingKey::from_ed_pem(pem),
            }
            .map_err(|e| ConfigError(format!("private key: {e}")))?
        }
    };
    let now = now_secs();
    let claims = Claims {
        sub: sub.to_string(),
        exp: now + ttl_secs,
        iat: Some(now),
        nbf: None,
        aud: config.jwt_audience.clone().map(Audience::One),
        iss: config.jwt_issuer.clone(),
        topics,
    };
    encode(&Header::new(alg), &claims, &key).map_err(|e| ConfigError(format!("signing: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::default()
    }

    #[test]
    fn minted_tokens_verify() -> Result<(), Box<dyn std::error::Error>> {
        let token = mint(&config(), "42", 60, vec!["private:42".into()], None)?;
        let identity = Verifier::from_config(&config())?.verify(&token)?;
        assert_eq!(identity.user, "42");
        assert!(identity.may_subscribe("private:42"));
        assert!(!identity.may_subscribe("private:43"));
        Ok(())
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let mut other = config();
        other.jwt_secret = Some("another-secret".to_string().into());
        let token = mint(&other, "42", 60, vec![], None)?;
        let err = Verifier::from_config(&config())?.verify(&token);
        assert_eq!(err, Err(AuthError::BadSignature));
        Ok(())
    }

    #[test]
    fn an_unsigned_token_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        // header {"alg":"none","typ":"JWT"}, claims {"sub":"42","exp":9999999999}
        let token = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.\
                     eyJzdWIiOiI0MiIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert!(Verifier::from_config(&config())?.verify(token).is_err());
        Ok(())
    }

    #[test]
    fn an_absurd_exp_gives_a_bounded_lifetime() -> Result<(), Box<dyn std::error::Error>> {
        let claims = serde_json::json!({"sub": "42", "exp": u64::MAX});
        let key = EncodingKey::from_secret(config().jwt_secret().as_bytes());
        let token = encode(&Header::new(Algorithm::HS256), &claims, &key)?;
        let identity = Verifier::from_config(&config())?.verify(&token)?;
        assert_eq!(identity.expires_at, u64::MAX);
        assert_eq!(identity.expires_in(now_secs()), MAX_TOKEN_LIFETIME);
        // Adding it to an instant must not overflow.
        let _deadline = std::time::Instant::now() + identity.expires_in(0);
        Ok(())
    }

    #[test]
    fn prefix_grants_match_by_prefix() {
        let identity = Identity {
            user: "1".into(),
            expires_at: 0,
            topics: vec!["team:7:*".into()],
        };
        assert!(identity.may_subscribe("team:7:general"));
        assert!(!identity.may_subscribe("team:8:general"));
    }
}
