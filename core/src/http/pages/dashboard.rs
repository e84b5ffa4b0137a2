//! The dashboard: a member's links (create, revoke, page through) and API tokens.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::accounts::{self, AccountError};
use crate::http::extract::WebUser;
use crate::links::{self, LinkError, LinkView, NewLink};
use crate::store::LinkFilter;
use crate::validate;

use super::*;

#[derive(Deserialize)]
pub(super) struct DashboardQuery {
    #[serde(default)]
    pub(super) before: Option<i64>,
    /// The link the create form just made: the browser that submitted the form
    /// gives it the secret it made (`dashboard.js`).
    #[serde(default)]
    pub(super) created: Option<String>,
}

/// A link as the dashboard shows it: the API view plus a readable schedule. Its
/// `url` has no secret: the browser adds the one it knows (`dashboard.js`).
#[derive(Serialize)]
pub(super) struct DashboardLink {
    #[serde(flatten)]
    pub(super) view: LinkView,
    pub(super) when: Option<String>,
    /// The link the create form just made.
    pub(super) created: bool,
}

#[derive(Default)]
pub(super) struct DashboardExtras<'a> {
    pub(super) error: Option<String>,
    pub(super) form_title: &'a str,
    pub(super) form_description: &'a str,
    pub(super) new_token: Option<String>,
    pub(super) token_error: Option<String>,
    pub(super) created: Option<&'a str>,
}

pub(super) async fn render_dashboard(
    state: &AppState,
    user: &WebUser,
    before: Option<i64>,
    extras: DashboardExtras<'_>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let policy = state.policy.get(&state.store).await?;
    let (items, next) = links::list(
        &state.store,
        &user.account,
        LinkFilter::All,
        before,
        DASHBOARD_PAGE_SIZE,
    )
    .await
    .map_err(PageError::internal)?;
    let views: Vec<DashboardLink> = items
        .iter()
        .map(|l| {
            let view = LinkView::new(l, state.public_url());
            DashboardLink {
                when: view.schedule.as_ref().map(|s| s.describe()),
                created: extras.created == Some(view.id.as_str()),
                view,
            }
        })
        .collect();
    let tokens: Vec<crate::accounts::TokenInfo> = state
        .store
        .tokens_of(user.account.id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let mut ctx = base_context(Some(user));
    ctx.insert("links", &views);
    ctx.insert("next_cursor", &next);
    ctx.insert("tokens", &tokens);
    ctx.insert(
        "can_create",
        &(user.account.is_admin() || policy.member_link_creation),
    );
    ctx.insert("error", &extras.error);
    ctx.insert("form_title", extras.form_title);
    ctx.insert("form_description", extras.form_description);
    ctx.insert("new_token", &extras.new_token);
    ctx.insert("token_error", &extras.token_error);
    let mut modules = state.plugins.dashboard_modules(state.plugin_deps()).await;
    if user.account.is_admin() {
        modules.extend(state.plugins.admin_modules(state.plugin_deps()).await);
    }
    ctx.insert(
        "plugin_modules",
        &serde_json::to_string(&modules).unwrap_or_else(|_| "[]".into()),
    );
    ctx.insert("plugin_limits", &super::plugin_frame_limits(state));
    Ok((status, render(state, "pages/dashboard.html", &ctx)).into_response())
}

pub(super) async fn dashboard(
    State(state): State<AppState>,
    user: WebUser,
    axum::extract::Query(query): axum::extract::Query<DashboardQuery>,
) -> Response {
    render_dashboard(
        &state,
        &user,
        query.before,
        DashboardExtras {
            created: query.created.as_deref(),
            ..Default::default()
        },
        StatusCode::OK,
    )
    .await
    .unwrap_or_else(|e| page_error(&state, e))
}

#[derive(Deserialize)]
pub(super) struct CreateLinkForm {
    #[serde(default)]
    pub(super) csrf: String,
    #[serde(default)]
    pub(super) title: String,
    #[serde(default)]
    pub(super) description: String,
    #[serde(default)]
    pub(super) guests_need_approval: Option<String>,
    #[serde(default)]
    pub(super) members_need_approval: Option<String>,
    #[serde(default)]
    pub(super) max_participants: Option<String>,
}

pub(super) async fn dashboard_create_link(
    State(state): State<AppState>,
    user: WebUser,
    PageForm(form): PageForm<CreateLinkForm>,
) -> Response {
    if !session_csrf_matches(&user, &form.csrf) {
        return page_error(&state, PageError::csrf());
    }
    let result = async {
        let policy = state.policy.get(&state.store).await?;
        let max_participants = match form.max_participants.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(v) => Some(v.parse::<i32>().map_err(|_| {
                LinkError::Invalid(validate::Invalid::new(
                    "max_participants",
                    "must be a whole number between 1 and 32",
                ))
            })?),
        };
        let input = NewLink {
            title: form.title.clone(),
            description: Some(form.description.clone()),
            schedule: None,
            guests_need_approval: Some(form.guests_need_approval.is_some()),
            members_need_approval: Some(form.members_need_approval.is_some()),
            max_participants,
        };
        links::create(
            &state.store,
            &policy,
            &user.account,
            input,
            state.clock.now(),
        )
        .await
    }
    .await;
    match result {
        Ok(link) => {
            state.metrics.links_created.inc();
            let created = format!("/dashboard?created={}", link.public_id);
            crate::plugins::emit(
                state.plugin_deps(),
                crate::plugins::Event::LinkCreated(link),
            );
            Redirect::to(&created).into_response()
        }
        Err(err) => {
            let (status, message) = match &err {
                LinkError::Invalid(invalid) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    capitalize(&invalid.to_string()),
                ),
                LinkError::CreationDisabled => {
                    (StatusCode::FORBIDDEN, capitalize(&err.to_string()))
                }
                _ => return page_error(&state, PageError::internal(err)),
            };
            let extras = DashboardExtras {
                error: Some(message),
                form_title: &form.title,
                form_description: &form.description,
                ..Default::default()
            };
            render_dashboard(&state, &user, None, extras, status)
                .await
                .unwrap_or_else(|e| page_error(&state, e))
        }
    }
}

pub(super) async fn dashboard_revoke_link(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    PageForm(form): PageForm<CsrfForm>,
) -> Response {
    if !session_csrf_matches(&user, &form.csrf) {
        return page_error(&state, PageError::csrf());
    }
    let now = state.clock.now();
    match links::revoke(&state.store, &user.account, &id, now).await {
        Ok(link) => {
            if link.revoked_at == Some(now) {
                crate::plugins::emit(
                    state.plugin_deps(),
                    crate::plugins::Event::LinkRevoked(link),
                );
            }
            Redirect::to("/dashboard").into_response()
        }
        Err(LinkError::NotFound) => page_error(
            &state,
            PageError::new(
                StatusCode::NOT_FOUND,
                "Link not found",
                "This link does not exist or is not yours.",
            ),
        ),
        Err(err) => page_error(&state, PageError::internal(err)),
    }
}

#[derive(Deserialize)]
pub(super) struct CreateTokenForm {
    #[serde(default)]
    pub(super) csrf: String,
    #[serde(default)]
    pub(super) name: String,
}

pub(super) async fn dashboard_create_token(
    State(state): State<AppState>,
    user: WebUser,
    PageForm(form): PageForm<CreateTokenForm>,
) -> Response {
    if !session_csrf_matches(&user, &form.csrf) {
        return page_error(&state, PageError::csrf());
    }
    let extras =
        match accounts::issue_token(&state.store, user.account.id, &form.name, state.clock.now())
            .await
        {
            Ok(issued) => DashboardExtras {
                new_token: Some(issued.secret.expose().to_string()),
                ..Default::default()
            },
            Err(AccountError::Invalid(invalid)) => DashboardExtras {
                token_error: Some(capitalize(&invalid.to_string().replacen(
                    "name",
                    "token name",
                    1,
                ))),
                ..Default::default()
            },
            Err(err) => return page_error(&state, PageError::internal(err)),
        };
    let status = if extras.token_error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::CREATED
    };
    let mut response = render_dashboard(&state, &user, None, extras, status)
        .await
        .unwrap_or_else(|e| page_error(&state, e));
    // The page shows a secret: never cache it.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

pub(super) async fn dashboard_revoke_token(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    PageForm(form): PageForm<CsrfForm>,
) -> Response {
    if !session_csrf_matches(&user, &form.csrf) {
        return page_error(&state, PageError::csrf());
    }
    let Ok(id) = id.parse::<i64>() else {
        return page_error(
            &state,
            PageError::new(
                StatusCode::NOT_FOUND,
                "Token not found",
                "This token does not exist.",
            ),
        );
    };
    match state
        .store
        .revoke_token(user.account.id, id, state.clock.now())
        .await
    {
        Ok(Some(_)) => Redirect::to("/dashboard").into_response(),
        Ok(None) => page_error(
            &state,
            PageError::new(
                StatusCode::NOT_FOUND,
                "Token not found",
                "This token does not exist.",
            ),
        ),
        Err(err) => page_error(&state, PageError::internal(err)),
    }
}
