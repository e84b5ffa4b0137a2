//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Confab API", description = "Call links, accounts and tokens. Errors always have the shape {\"error\":{\"code\",\"message\"}}."),
    paths(
        super::links::list_links, super::links::create_link, super::links::show_link, super::links::update_link,
        super::links::delete_link, super::links::revoke_link, super::links::rotate_link,
        super::users::me, super::users::list_users, super::users::create_user,
        super::users::list_tokens, super::users::create_token, super::users::revoke_token,
        super::policy::show_policy, super::policy::update_policy,
        super::plugins::list_plugins, super::plugins::show_plugin, super::plugins::enable_plugin,
        super::plugins::disable_plugin, super::plugins::reload_plugin,
        super::mail::mail_status,
    ),
    modifiers(&BearerToken),
    tags((name = "links", description = "Call links"), (name = "users"), (name = "tokens", description = "API tokens for scripting"), (name = "admin"))
)]
pub struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("cf_…")
                    .build(),
            ),
        );
    }
}

pub fn router() -> Router<AppState> {
    let doc = ApiDoc::openapi().to_json().unwrap_or_else(|_| "{}".into());
    Router::new().route(
        "/api/v1/openapi.json",
        get(move || {
            let doc = doc.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    doc,
                )
            }
        }),
    )
}
