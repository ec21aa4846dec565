//! Runtime settings over HTTP, like `pd-ctl config`: `GET .../config` shows every setting
//! (in force, from the file, overridden or not) with maintenance mode and paused
//! schedulers; `PUT .../config` sets one, `DELETE .../config/{key}` goes back to the
//! file's value. Changes are stored, logged as events, and answered with warnings when the
//! value puts something at risk.

use super::{body, AppState};
use crate::error::ServerError;
use crate::events::About;
use crate::meta::detached;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use meridian_scheduler::{SettingValue, SETTINGS};
use serde::Deserialize;
use serde_json::{json, Value};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/clusters/{cluster}/config", get(show).put(set))
        .route("/api/v1/clusters/{cluster}/config/{key}", delete(reset))
}

fn value_json(v: Option<SettingValue>) -> Value {
    match v {
        Some(SettingValue::Count(x)) => json!(x),
        Some(SettingValue::Number(x)) | Some(SettingValue::Optional(Some(x))) => json!(x),
        Some(SettingValue::Flag(x)) => json!(x),
        Some(SettingValue::Optional(None)) | None => Value::Null,
    }
}

#[utoipa::path(get, path = "/api/v1/clusters/{cluster}/config", tag = "settings", params(("cluster" = String, Path, description = "Cluster name")),
    responses((status = 200, description = "`{\"cluster\", \"settings\": [{\"key\", \"value\", \"file_value\", \"overridden\", \"about\"}], \"maintenance\", \"paused_schedulers\"}`", body = Object)))]
async fn show(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
) -> Result<Json<Value>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let view = s.scheduling.settings(c.id);
    let settings: Vec<Value> = SETTINGS
        .iter()
        .map(|info| {
            json!({
                "key": info.key,
                "value": value_json(view.current.get(info.key)),
                "file_value": value_json(view.started.get(info.key)),
                "overridden": view.overrides.contains_key(info.key),
                "about": info.about,
            })
        })
        .collect();
    let (maintenance, schedulers) = s.scheduling.schedulers(c.id);
    let paused: Vec<String> = schedulers
        .into_iter()
        .filter(|st| st.paused)
        .map(|st| st.name)
        .collect();
    Ok(Json(json!({
        "cluster": c.config().name,
        "settings": settings,
        "maintenance": maintenance,
        "paused_schedulers": paused,
    })))
}

/// Body of `PUT .../config`: the value as text (`"0.5"`, `"none"`, `"on"`) or as JSON.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SetBody {
    key: String,
    /// JSON or text (`"0.5"`, `"none"`, `"on"`).
    value: Value,
}

#[utoipa::path(put, path = "/api/v1/clusters/{cluster}/config", tag = "settings", params(("cluster" = String, Path, description = "Cluster name")), request_body = SetBody,
    responses((status = 200, description = "`{\"key\", \"value\", \"warnings\": [..]}`", body = Object)))]
async fn set(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
    req: Result<Json<SetBody>, JsonRejection>,
) -> Result<Response, Response> {
    let b = body(req)?;
    let c = s
        .meta
        .cluster(&cluster)
        .map_err(IntoResponse::into_response)?;
    let text = match &b.value {
        Value::String(t) => t.clone(),
        Value::Null => "none".into(),
        other => other.to_string(),
    };
    let (scheduling, id, key) = (s.scheduling.clone(), c.id, b.key.clone());
    let warnings = detached(async move { scheduling.set_setting(id, &key, &text).await })
        .await
        .map_err(IntoResponse::into_response)?;
    let value = value_json(s.scheduling.settings(c.id).current.get(&b.key));
    let mut message = format!("setting {} = {value}", b.key);
    for w in &warnings {
        tracing::warn!(cluster = %c.id, key = %b.key, "{w}");
        message = format!("{message}. WARNING: {w}");
    }
    c.event("admin", message.to_string(), About::default());
    Ok(Json(json!({ "key": b.key, "value": value, "warnings": warnings })).into_response())
}

#[utoipa::path(delete, path = "/api/v1/clusters/{cluster}/config/{key}", tag = "settings",
    params(("cluster" = String, Path, description = "Cluster name"), ("key" = String, Path, description = "Setting key, e.g. `scheduler.hot_threshold`")),
    responses((status = 200, description = "`{\"key\", \"value\"}`: back to the configuration file's value", body = Object)))]
async fn reset(
    State(s): State<AppState>,
    Path((cluster, key)): Path<(String, String)>,
) -> Result<Json<Value>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let (scheduling, id, k) = (s.scheduling.clone(), c.id, key.clone());
    detached(async move { scheduling.reset_setting(id, &k).await }).await?;
    let value = value_json(s.scheduling.settings(c.id).current.get(&key));
    c.event(
        "admin",
        format!("setting {key} reset to the configuration file's {value}"),
        About::default(),
    );
    Ok(Json(json!({ "key": key, "value": value })))
}
