//! The series API: a cluster's recent history (`GET .../history?prefix=node/`), one point
//! per step over the last minutes, for charts and for operators asking "since when?".
//! Series names are listed in `schedule::history`.

use super::AppState;
use crate::error::ServerError;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/clusters/{cluster}/history", get(history))
}

/// Query of `GET .../history`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    /// Only series whose names start with this (`node/`, `shard/12/`, `cluster/`).
    #[serde(default)]
    prefix: String,
}

async fn history(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Value>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let (step_ms, series) = s.scheduling.history(c.id, &q.prefix);
    // Points are kept in the server's monotonic time; answers carry wall-clock time.
    let wall_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let offset = wall_now.saturating_sub(s.meta.now_ms());
    let series: Vec<Value> = series
        .into_iter()
        .map(|one| {
            let points: Vec<Value> = one
                .points
                .into_iter()
                .map(|(t, v)| json!([t + offset, v]))
                .collect();
            json!({ "name": one.name, "points": points })
        })
        .collect();
    Ok(Json(json!({ "step_ms": step_ms, "series": series })))
}
