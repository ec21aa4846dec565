//! The series API: a cluster's recent history (`GET .../history?prefix=node/`), one point
//! per step over the last minutes, for charts and for operators asking "since when?".
//! Series names are listed in `schedule::history`.

use super::AppState;
use crate::error::ServerError;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/clusters/{cluster}/history", get(history))
}

/// Query of `GET .../history`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    /// Only series whose names start with this (`node/`, `shard/12/`, `cluster/`).
    #[serde(default)]
    prefix: String,
}

/// The answer of `GET .../history`.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct HistoryAnswer {
    /// Time between two points of a series.
    step_ms: u64,
    /// The series asked for, by name.
    series: Vec<SeriesPoints>,
}

/// One series.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct SeriesPoints {
    /// Its name (`node/NAME/leaders`...: `schedule::history` lists them).
    name: String,
    /// `[unix_ms, value]` pairs, oldest first, gaps left out.
    points: Vec<(u64, f64)>,
}

#[utoipa::path(get, path = "/api/v1/clusters/{cluster}/history", tag = "history", params(("cluster" = String, Path, description = "Cluster name"), HistoryQuery),
    responses((status = 200, description = "The cluster's recent series", body = HistoryAnswer)))]
async fn history(
    State(s): State<AppState>,
    Path(cluster): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<HistoryAnswer>, ServerError> {
    let c = s.meta.cluster(&cluster)?;
    let (step_ms, series) = s.scheduling.history(c.id, &q.prefix);
    // Points are kept in the server's monotonic time; answers carry wall-clock time.
    let wall_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let offset = wall_now.saturating_sub(s.meta.now_ms());
    let series = series
        .into_iter()
        .map(|one| SeriesPoints {
            name: one.name,
            points: one
                .points
                .into_iter()
                .map(|(t, v)| (t + offset, v))
                .collect(),
        })
        .collect();
    Ok(Json(HistoryAnswer { step_ms, series }))
}
