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
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/clusters/{cluster}/config", get(show).put(set))
        .route("/api/v1/clusters/{cluster}/config/{key}", delete(reset))
}

/// A setting's value as JSON: a number (counts as integers) or a flag; `null` for an
/// optional setting that is off (`none`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(super) enum SettingJson {
    /// A count or a number.
    Number(SettingNumber),
    /// A flag.
    Flag(bool),
}

/// A count (written as an integer) or a number.
#[derive(Serialize, ToSchema)]
#[schema(value_type = f64)]
pub(super) struct SettingNumber(serde_json::Number);

impl std::fmt::Display for SettingJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SettingJson::Number(SettingNumber(n)) => write!(f, "{n}"),
            SettingJson::Flag(b) => write!(f, "{b}"),
        }
    }
}

/// The JSON of a setting's value (`None`: off, or not a setting).
fn value_json(v: Option<SettingValue>) -> Option<SettingJson> {
    match v? {
        SettingValue::Count(x) => Some(SettingJson::Number(SettingNumber(x.into()))),
        SettingValue::Number(x) | SettingValue::Optional(Some(x)) => {
            // Not finite: `null`, as serde_json writes such a number.
            serde_json::Number::from_f64(x).map(|n| SettingJson::Number(SettingNumber(n)))
        }
        SettingValue::Flag(x) => Some(SettingJson::Flag(x)),
        SettingValue::Optional(None) => None,
    }
}

/// `value_json` as text, for messages (`null` when off).
fn value_text(v: &Option<SettingJson>) -> String {
    v.as_ref()
        .map_or_else(|| "null".into(), ToString::to_string)
}

/// The answer of `GET .../config`.
#[derive(Serialize, ToSchema)]
pub(super) struct SettingsAnswer {
    /// The cluster's name.
    cluster: String,
    /// Every setting, in the documented order.
    settings: Vec<SettingState>,
    /// Maintenance mode: only essential schedulers run.
    maintenance: bool,
    /// The schedulers paused by an admin.
    paused_schedulers: Vec<String>,
}

/// One setting.
#[derive(Serialize, ToSchema)]
pub(super) struct SettingState {
    /// Its key (`scheduler.hot_threshold`...).
    key: &'static str,
    /// The value in force.
    value: Option<SettingJson>,
    /// The configuration file's value.
    file_value: Option<SettingJson>,
    /// Whether `value` was set at runtime (`PUT .../config`).
    overridden: bool,
    /// What it does.
    about: &'static str,
}

#[utoipa::path(get, path = "/api/v1/clusters/{cluster}/config", tag = "settings", params(("cluster" = String, Path, description = "Cluster name")),
    responses((status = 200, description = "Every setting, with maintenance mode and the paused schedulers", body = SettingsAnswer)))]
async fn show(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
) -> Result<Json<SettingsAnswer>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let view = s.scheduling.settings(c.id);
    let settings = SETTINGS
        .iter()
        .map(|info| SettingState {
            key: info.key,
            value: value_json(view.current.get(info.key)),
            file_value: value_json(view.started.get(info.key)),
            overridden: view.overrides.contains_key(info.key),
            about: info.about,
        })
        .collect();
    let (maintenance, schedulers) = s.scheduling.schedulers(c.id);
    let paused: Vec<String> = schedulers
        .into_iter()
        .filter(|st| st.paused)
        .map(|st| st.name)
        .collect();
    Ok(Json(SettingsAnswer {
        cluster: c.config().name,
        settings,
        maintenance,
        paused_schedulers: paused,
    }))
}

/// Body of `PUT .../config`: the value as text (`"0.5"`, `"none"`, `"on"`) or as JSON.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SetBody {
    key: String,
    /// JSON or text (`"0.5"`, `"none"`, `"on"`).
    value: Value,
}

/// The answer of `PUT .../config`.
#[derive(Serialize, ToSchema)]
pub(super) struct SettingSet {
    /// The key set.
    key: String,
    /// Its value now.
    value: Option<SettingJson>,
    /// What the value puts at risk (empty: nothing).
    warnings: Vec<String>,
}

/// The answer of `DELETE .../config/{key}`.
#[derive(Serialize, ToSchema)]
pub(super) struct SettingReset {
    /// The key reset.
    key: String,
    /// Its value now: the configuration file's.
    value: Option<SettingJson>,
}

#[utoipa::path(put, path = "/api/v1/clusters/{cluster}/config", tag = "settings", params(("cluster" = String, Path, description = "Cluster name")), request_body = SetBody,
    responses((status = 200, description = "Set, with warnings when the value puts something at risk", body = SettingSet)))]
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
    let mut message = format!("setting {} = {}", b.key, value_text(&value));
    for w in &warnings {
        tracing::warn!(cluster = %c.id, key = %b.key, "{w}");
        message = format!("{message}. WARNING: {w}");
    }
    c.event("admin", message, About::default());
    Ok(Json(SettingSet {
        key: b.key,
        value,
        warnings,
    })
    .into_response())
}

#[utoipa::path(delete, path = "/api/v1/clusters/{cluster}/config/{key}", tag = "settings",
    params(("cluster" = String, Path, description = "Cluster name"), ("key" = String, Path, description = "Setting key, e.g. `scheduler.hot_threshold`")),
    responses((status = 200, description = "Back to the configuration file's value", body = SettingReset)))]
async fn reset(
    State(s): State<AppState>,
    Path((cluster, key)): Path<(String, String)>,
) -> Result<Json<SettingReset>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let (scheduling, id, k) = (s.scheduling.clone(), c.id, key.clone());
    detached(async move { scheduling.reset_setting(id, &k).await }).await?;
    let value = value_json(s.scheduling.settings(c.id).current.get(&key));
    c.event(
        "admin",
        format!(
            "setting {key} reset to the configuration file's {}",
            value_text(&value)
        ),
        About::default(),
    );
    Ok(Json(SettingReset { key, value }))
}
