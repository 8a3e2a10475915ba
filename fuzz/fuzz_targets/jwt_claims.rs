//! User tokens (`src/auth/`): the `Authorization` header, then the claims of a token that is
//! validly signed with the configured secret, so the fuzzer gets past the signature and
//! reaches the claims handling (the absurd `exp` of issue 6 was such a token).
//!
//! Input: the first byte picks the verifier (plain, or with `aud` and `iss` required); the
//! rest, up to the first `\n`, is an `Authorization` header value whose bearer token is
//! verified as sent; after it comes a claims JSON that is signed and verified.
//!
//! Beyond "no panic": an accepted identity has a valid `sub`, a lifetime that fits in an
//! `Instant` (the session adds it to one), and its `topics` grant only what they list.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use informd::auth::{bearer, now_secs, Identity, Verifier, MAX_TOKEN_LIFETIME};
use informd::config::Config;
use informd::model::check_user_id;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

struct Keys {
    plain: Verifier,
    strict: Verifier,
    signing: EncodingKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let plain = Config::default();
        let mut strict = Config::default();
        strict.jwt_audience = Some("informd".into());
        strict.jwt_issuer = Some("https://example.test".into());
        Keys {
            signing: EncodingKey::from_secret(plain.jwt_secret().as_bytes()),
            plain: Verifier::from_config(&plain).expect("the default verifier"),
            strict: Verifier::from_config(&strict).expect("the strict verifier"),
        }
    })
}

fn check(identity: &Identity) {
    assert!(
        check_user_id(&identity.user).is_ok(),
        "sub {:?}",
        identity.user
    );
    for now in [0, now_secs(), u64::MAX] {
        let lifetime = identity.expires_in(now);
        assert!(lifetime <= MAX_TOKEN_LIFETIME);
        let _deadline = Instant::now() + lifetime;
        let _deadline = tokio::time::Instant::now() + lifetime;
    }
    assert!(
        !identity.may_subscribe("") || identity.topics.iter().any(|t| t.is_empty() || t == "*")
    );
    for topic in &identity.topics {
        match topic.strip_suffix('*') {
            Some(prefix) => assert!(identity.may_subscribe(&format!("{prefix}x"))),
            None => assert!(identity.may_subscribe(topic)),
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&pick, rest)) = input.split_first() else {
        return;
    };
    let keys = keys();
    let verifier = if pick & 1 == 0 {
        &keys.plain
    } else {
        &keys.strict
    };
    let text = String::from_utf8_lossy(rest);
    let (header, claims) = text.split_once('\n').unwrap_or((&text, ""));
    if let Some(token) = bearer(header) {
        assert!(!token.is_empty() && token.trim() == token);
        if let Ok(identity) = verifier.verify(token) {
            check(&identity);
        }
    }
    let Ok(claims) = RawValue::from_string(claims.to_string()) else {
        return;
    };
    let Ok(token) = encode(&Header::new(Algorithm::HS256), &claims, &keys.signing) else {
        return;
    };
    if let Ok(identity) = verifier.verify(&token) {
        check(&identity);
    }
});
