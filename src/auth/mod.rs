//! Who is asking: users (a JWT signed by the site's backend), publishers (a shared key) and
//! browsers (their `Origin`).

mod jwt;
mod origin;
mod publisher;
mod token;

pub use jwt::{
    mint, now_secs, Audience, AuthError, Claims, Identity, Verifier, MAX_TOKEN_LIFETIME,
};
pub use origin::{host_of, origin_allowed, origin_matches, refusal_details};
pub use publisher::PublisherKeys;
pub use token::{bearer, token_from_parts, token_from_request, url_query_value};
