//! The HTTP surface: which path goes to which handler, CORS, and the access log.

pub mod assets;
mod body;
mod demo;
mod health;
mod inbox;
pub mod inform;
mod metrics;
pub mod peer;
mod preferences;
mod presence;
mod publish;

use actix_cors::Cors;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpResponse};

use crate::error::ApiError;

use crate::auth::{host_of, origin_allowed, origin_matches, refusal_details};
use crate::state::AppState;

/// CORS for the user APIs (the inbox, preferences): `allowed_origins` only, with these
/// methods.
fn user_api_cors(state: &AppState, methods: [Method; 2]) -> Cors {
    let allowed = state.config.allowed_origins.clone();
    Cors::default()
        .allowed_origin_fn(move |origin, head| {
            origin
                .to_str()
                .is_ok_and(|o| origin_matches(&allowed, o, host_of(&head.headers)))
        })
        .allowed_methods(methods)
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .supports_credentials()
        .max_age(3600)
}

/// Registers every route. `allowed_origins` feeds CORS for the user APIs.
pub fn routes(cfg: &mut web::ServiceConfig, state: &AppState) {
    cfg.service(resource("/inform", web::get().to(inform::not_a_handshake)))
        .service(resource("/inform/", web::get().to(inform::not_a_handshake)))
        .service(resource("/publish", web::post().to(publish::publish)))
        .service(resource("/api/presence", web::get().to(presence::presence)))
        .service(resource("/healthz", web::get().to(health::healthz)))
        // The browser client and the demo (404 while the demo is off).
        .service(resource("/static/{file}", web::get().to(assets::serve)))
        .service(resource("/", web::get().to(demo::page)))
        .service(resource("/demo/token", web::get().to(demo::token)))
        .service(resource("/demo/send", web::post().to(demo::send)))
        .service(resource("/readyz", web::get().to(health::readyz)))
        .configure(|cfg| {
            if state.config.metrics_listen.is_none() {
                cfg.service(resource("/metrics", web::get().to(metrics::metrics)));
            }
        })
        .service(
            web::scope("/api/notifications")
                .wrap(user_api_cors(state, [Method::GET, Method::POST]))
                // Outermost: a disallowed origin gets the JSON 403 before CORS sees it.
                .wrap(from_fn(refuse_foreign_origins))
                .service(resource("", web::get().to(inbox::list)))
                .service(resource("/unread", web::get().to(inbox::unread)))
                .service(resource("/read", web::post().to(inbox::mark_read))),
        )
        .service(
            web::scope("/api/preferences")
                .wrap(user_api_cors(state, [Method::GET, Method::PUT]))
                .wrap(from_fn(refuse_foreign_origins))
                .service(
                    web::resource("")
                        .route(web::get().to(preferences::get))
                        .route(web::put().to(preferences::put))
                        .default_service(web::to(|| async {
                            Err::<HttpResponse, _>(ApiError::MethodNotAllowed)
                        })),
                ),
        )
        .default_service(web::to(|| async { crate::error::not_found() }));
}

/// The routes of the `metrics_listen` address: `GET /metrics` and nothing else.
pub fn metrics_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/metrics", web::get().to(metrics::metrics)))
        .default_service(web::to(|| async { crate::error::not_found() }));
}

/// A path with one route; any other method gets a JSON 405.
fn resource(path: &str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(|| async {
            Err::<HttpResponse, _>(ApiError::MethodNotAllowed)
        }))
}

/// Middleware for the inbox API: browser requests from other origins end here with 403.
async fn refuse_foreign_origins(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return Ok(req.into_response(HttpResponse::from_error(ApiError::ForbiddenOrigin)));
    };
    if !origin_allowed(&state.config.allowed_origins, req.headers()) {
        let client = state.proxies.client(req.peer_addr(), req.headers());
        log::warn!(
            "{}",
            refusal_details(
                req.headers(),
                &state.config.origin_mode(),
                &peer::display(client)
            )
        );
        return Ok(req.into_response(HttpResponse::from_error(ApiError::ForbiddenOrigin)));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}
