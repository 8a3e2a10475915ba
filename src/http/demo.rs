//! The demo: a blog page at `GET /` with a bell, rendered from `templates/` with minijinja, and
//! the two endpoints it needs, `GET /demo/token` (a token for any user) and `POST /demo/send`
//! (publish a like, reply, follow or announcement as another reader).
//!
//! All three answer 404 unless [`crate::config::Config::demo_on`]: by default only while
//! informd runs on the development secret, because anyone who can reach them can act as any
//! user. The page is what a site's own page does: it renders the badge and `seq` on the
//! server and hands that `seq` to informd.js as `since`.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use minijinja::{context, Environment};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::assets::asset;
use crate::auth::{mint, origin_allowed};
use crate::error::{not_found, ApiError};
use crate::model::{check_user_id, Notification};
use crate::state::AppState;

/// The visitor's user id when the page is opened without `?user=`.
const DEFAULT_USER: &str = "reader";
/// Lifetime of a demo token, and the bounds of `?ttl=`.
const TOKEN_TTL_SECS: u64 = 3600;
const MIN_TTL_SECS: u64 = 2;
/// Notifications rendered with the page.
const LATEST: u64 = 10;
/// The other readers the panel can act as: id and display name.
const PEOPLE: &[(&str, &str)] = &[
    ("alice", "Alice Martin"),
    ("bob", "Bob Okafor"),
    ("carol", "Carol Nguyen"),
];
/// The article every like and reply is about.
const ARTICLE: (&str, &str) = ("42", "Ten years of hand-written badges");
/// The group of the article's likes, which the page's "mute likes" control mutes.
const ARTICLE_LIKES: &str = "like:article:42";

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // A template that does not parse is a bug caught by every test that opens the page.
        if let Err(e) = env.add_template("demo.html", include_str!("../../templates/demo.html")) {
            log::error!("templates/demo.html: {e}");
        }
        env
    })
}

/// A stable colour for an avatar, from the person's id.
fn hue(text: &str) -> u32 {
    text.chars().fold(0u32, |h, c| {
        (h.wrapping_mul(31).wrapping_add(c as u32)) % 360
    })
}

fn initials(name: &str) -> String {
    name.split_whitespace()
        .take(2)
        .filter_map(|w| w.chars().next())
        .flat_map(char::to_uppercase)
        .collect()
}

fn display_name(user: &str) -> String {
    PEOPLE
        .iter()
        .find(|(id, _)| *id == user)
        .map(|(_, name)| name.to_string())
        .unwrap_or_else(|| {
            let mut chars = user.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        })
}

/// "3 minutes ago", as the page's script writes it too.
fn ago(created_at: &str) -> String {
    let Ok(then) = chrono::DateTime::parse_from_rfc3339(created_at) else {
        return String::new();
    };
    let seconds = (chrono::Utc::now() - then.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    let minutes = (seconds as f64 / 60.0).round() as i64;
    let hours = (minutes as f64 / 60.0).round() as i64;
    let days = (hours as f64 / 24.0).round() as i64;
    match () {
        _ if seconds < 45 => "just now".into(),
        _ if minutes == 1 => "a minute ago".into(),
        _ if minutes < 60 => format!("{minutes} minutes ago"),
        _ if hours == 1 => "an hour ago".into(),
        _ if hours < 24 => format!("{hours} hours ago"),
        _ if days == 1 => "yesterday".into(),
        _ => format!("{days} days ago"),
    }
}

fn raw(value: &Option<Box<serde_json::value::RawValue>>) -> Value {
    value
        .as_ref()
        .and_then(|v| serde_json::from_str(v.get()).ok())
        .unwrap_or(Value::Null)
}

/// A notification as the dropdown shows it. (Plain fields, not `serde_json::Value`: with
/// `arbitrary_precision` its numbers do not survive the trip into a template.)
#[derive(Serialize)]
struct Item {
    id: i64,
    seq: i64,
    read: bool,
    /// Who it is from: one actor, or the group's ("Carol, Bob and 2 others").
    actor: String,
    /// Events it stands for.
    count: i64,
    initials: String,
    hue: u32,
    verb: String,
    object: Option<String>,
    excerpt: Option<String>,
    created_at: String,
    ago: String,
}

/// Someone the page shows: the visitor, or a reader the panel can act as.
#[derive(Serialize)]
struct Person {
    id: String,
    name: String,
    initials: String,
    hue: u32,
}

impl Person {
    fn new(id: &str, name: String) -> Person {
        Person {
            id: id.to_string(),
            initials: initials(&name),
            hue: hue(id),
            name,
        }
    }
}

/// What the page's script starts informd.js with.
#[derive(Serialize)]
struct Boot<'a> {
    user: &'a str,
    token: String,
    seq: i64,
    url: &'static str,
}

/// Who a notification is from, as the dropdown says it: "Carol, Bob and Alice" for a group
/// of three, "Carol, Bob and 2 others" for more. `demo.js` writes it the same way.
fn who(names: &[&str], count: i64) -> String {
    if names.is_empty() {
        return "Someone".into();
    }
    let count = usize::try_from(count).unwrap_or(0).max(names.len());
    let (shown, others) = if count > names.len() {
        let shown = &names[..names.len().min(2)];
        (shown, count - shown.len())
    } else {
        (names, 0)
    };
    let mut parts: Vec<String> = shown.iter().map(|n| n.to_string()).collect();
    match others {
        0 => {}
        1 => parts.push("1 other".into()),
        n => parts.push(format!("{n} others")),
    }
    match parts.as_slice() {
        [init @ .., last] if !init.is_empty() => format!("{} and {last}", init.join(", ")),
        _ => parts.concat(),
    }
}

/// The "mute likes on this post" control: the group it mutes, and whether it is muted now.
#[derive(Serialize)]
struct ArticleLikes {
    group: &'static str,
    muted: bool,
}

impl ArticleLikes {
    fn of(state: &AppState, user: &str) -> ArticleLikes {
        let preferences = state.preferences.get(user);
        ArticleLikes {
            group: ARTICLE_LIKES,
            muted: preferences.muted_groups.iter().any(|g| g == ARTICLE_LIKES),
        }
    }
}

fn item(n: &Notification) -> Item {
    let actor = raw(&n.actor);
    let actors: Vec<Value> = n
        .actors
        .iter()
        .filter_map(|a| serde_json::from_str(a.get()).ok())
        .collect();
    let names: Vec<&str> = actors
        .iter()
        .filter_map(|a| a["name"].as_str().or(a["id"].as_str()))
        .collect();
    let subject = raw(&n.subject);
    let data = raw(&n.data);
    let actor_id = actor["id"].as_str().unwrap_or("?");
    let actor_name = actor["name"].as_str().unwrap_or(actor_id);
    let verb = match n.kind.as_str() {
        "like" => "liked",
        "reply" => "replied to",
        "follow" => "started following you",
        other => other,
    };
    let object = match n.kind.as_str() {
        "follow" => None,
        _ => subject["title"].as_str(),
    };
    Item {
        id: n.id,
        seq: n.seq,
        read: n.read,
        actor: who(&names, n.count),
        count: n.count,
        initials: initials(actor_name),
        hue: hue(actor_id),
        verb: verb.to_string(),
        object: object.map(String::from),
        excerpt: data["excerpt"].as_str().map(String::from),
        created_at: n.created_at.clone(),
        ago: ago(&n.created_at),
    }
}

#[derive(Deserialize)]
struct PageQuery {
    user: Option<String>,
}

/// `GET /`: the blog page, with the visitor's badge, `seq` and latest notifications.
pub async fn page(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !state.config.demo_on() {
        return Ok(not_found());
    }
    let query = web::Query::<PageQuery>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or(PageQuery { user: None });
    let user = query.user.unwrap_or_else(|| DEFAULT_USER.to_string());
    check_user_id(&user).map_err(|message| ApiError::InvalidQuery {
        name: "user",
        message: format!("user {message}"),
    })?;
    // The badge and seq first: a notification committed after this is replayed by `since`.
    let badge = state.store.user_state(&user).await?;
    let latest = state
        .store
        .list_notifications(&user, Some(badge.seq + 1), LATEST, false)
        .await?;
    let token = mint(&state.config, &user, TOKEN_TTL_SECS, vec![], None)
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let name = display_name(&user);
    let version = |file: &str| asset(file).map(|a| a.etag.trim_matches('"').to_string());
    let html = templates()
        .get_template("demo.html")
        .and_then(|template| {
            template.render(context! {
                unread => badge.unread,
                seq => badge.seq,
                notifications => latest.iter().map(item).collect::<Vec<_>>(),
                me => Person::new(&user, name),
                people => PEOPLE.iter().map(|(id, name)| Person::new(id, name.to_string())).collect::<Vec<_>>(),
                boot => Boot { user: &user, token, seq: badge.seq, url: "/inform" },
                css_version => version("demo.css"),
                js_version => version("informd.js"),
                demo_js_version => version("demo.js"),
                likes => ArticleLikes::of(&state, &user),
            })
        })
        .map_err(|e| ApiError::Unavailable(format!("rendering the demo page: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(html))
}

#[derive(Deserialize)]
struct TokenQuery {
    user: String,
    ttl: Option<u64>,
}

/// `GET /demo/token?user=ID[&ttl=SECONDS]`: `{"token","user","exp"}`, a token for any user.
pub async fn token(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !state.config.demo_on() {
        return Ok(not_found());
    }
    let query = web::Query::<TokenQuery>::from_query(req.query_string()).map_err(|e| {
        ApiError::InvalidQuery {
            name: "user",
            message: e.to_string(),
        }
    })?;
    check_user_id(&query.user).map_err(|message| ApiError::InvalidQuery {
        name: "user",
        message: format!("user {message}"),
    })?;
    let ttl = query
        .ttl
        .unwrap_or(TOKEN_TTL_SECS)
        .clamp(MIN_TTL_SECS, TOKEN_TTL_SECS);
    let token = mint(&state.config, &query.user, ttl, vec![], None)
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let exp = chrono::Utc::now().timestamp() as u64 + ttl;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({"token": token, "user": query.user, "exp": exp})))
}

/// The body of `POST /demo/send`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Send {
    /// Who acts: one of [`PEOPLE`].
    #[serde(rename = "as")]
    actor: String,
    /// `like`, `reply`, `follow` or `announce`.
    kind: String,
    /// The recipient of a like, reply or follow.
    to: Option<String>,
    /// The text of an announcement.
    message: Option<String>,
}

/// `POST /demo/send`: publishes what the panel asked for, through the same path as
/// `POST /publish`, and answers with its result.
pub async fn send(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !state.config.demo_on() {
        return Ok(not_found());
    }
    if !origin_allowed(&state.config.allowed_origins, req.headers()) {
        return Err(ApiError::ForbiddenOrigin);
    }
    let send: Send =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let Some((actor_id, actor_name)) = PEOPLE.iter().find(|(id, _)| *id == send.actor) else {
        return Err(ApiError::InvalidField {
            field: "as".into(),
            message: "must be alice, bob or carol".into(),
        });
    };
    let actor = json!({"id": actor_id, "name": actor_name, "avatar": null});
    let article =
        json!({"type": "article", "id": ARTICLE.0, "title": ARTICLE.1, "url": "/#article-42"});
    let to = send.to.unwrap_or_else(|| DEFAULT_USER.to_string());
    let event = match send.kind.as_str() {
        // Likes of the article fold into one notification while it is unread.
        "like" => json!({
            "to": [to], "kind": "like", "actor": actor, "subject": article,
            "group": ARTICLE_LIKES
        }),
        "reply" => json!({
            "to": [to], "kind": "reply", "actor": actor, "subject": article,
            "data": {"excerpt": "Same here: our badge drifted every time a laptop slept."}
        }),
        "follow" => json!({"to": [to], "kind": "follow", "actor": actor}),
        "announce" => json!({
            "topic": "global",
            "data": {"message": send.message.unwrap_or_default(), "from": actor_name}
        }),
        _ => {
            return Err(ApiError::InvalidField {
                field: "kind".into(),
                message: "must be like, reply, follow or announce".into(),
            })
        }
    };
    let body = serde_json::to_vec(&event).map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let answer = state
        .publisher
        .publish(&body, None, state.online.as_ref())
        .await?;
    Ok(HttpResponse::Ok().json(answer))
}

#[cfg(test)]
mod tests {
    use super::who;

    #[test]
    fn a_group_names_three_and_counts_the_rest() {
        assert_eq!(who(&["Alice"], 1), "Alice");
        assert_eq!(who(&["Bob", "Alice"], 2), "Bob and Alice");
        assert_eq!(who(&["Carol", "Bob", "Alice"], 3), "Carol, Bob and Alice");
        assert_eq!(who(&["Dan", "Carol", "Bob"], 4), "Dan, Carol and 2 others");
        assert_eq!(who(&["Dan", "Carol", "Bob"], 5), "Dan, Carol and 3 others");
        assert_eq!(who(&["Alice"], 2), "Alice and 1 other");
        assert_eq!(who(&[], 1), "Someone");
    }
}
