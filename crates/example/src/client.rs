//! A client of the example database: rows go to their partition's leader through
//! Meridian's routes (the client crate's router), reads to the replicas a preference names.
//!
//! A node's "not leader", "not here" or "stale definition" answer, or a leader that cannot
//! be reached, means the cached route is out of date: the route is fetched again once and
//! the refused rows are sent again. What still fails is returned to the caller, with
//! [`ExampleError::is_retryable`] telling whether to try again later (a failover in
//! progress) or give up (a row that does not fit the table).

use crate::data::key_text;
use crate::wire::{
    ErrorCode, NodeError, PartitionRows, ReadReply, ReadRequest, Row, WriteAck, WriteBatch,
};
use meridian_client::{ClientError, MetaClient, ReadPreference, TableLocator};
use meridian_model::{PartitionRule, TableName};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one request to a node may take.
const NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ExampleError {
    /// Meridian refused or could not be reached.
    #[error("meridian: {0}")]
    Meta(#[from] ClientError),
    /// A node refused.
    #[error("{0}")]
    Node(#[from] NodeError),
    /// A node could not be reached, or answered nonsense.
    #[error("node {endpoint}: {message}")]
    Transport {
        /// The node.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// A partition has no leader now (a failover is in progress).
    #[error("partition {partition} of {table} has no leader now")]
    NoLeader {
        /// The table.
        table: String,
        /// The partition.
        partition: u32,
    },
}

impl ExampleError {
    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ExampleError::Meta(e) => e.code() != Some(tonic::Code::NotFound),
            ExampleError::Node(e) => e.retryable,
            ExampleError::Transport { .. } | ExampleError::NoLeader { .. } => true,
        }
    }

    /// Whether the answer means the route used was out of date.
    fn is_stale_route(&self) -> bool {
        match self {
            ExampleError::Node(e) => e.error.is_stale_route(),
            ExampleError::Transport { .. } | ExampleError::NoLeader { .. } => true,
            ExampleError::Meta(_) => false,
        }
    }
}

/// A client of the example database.
#[derive(Clone)]
pub struct ExampleClient {
    meta: MetaClient,
    http: reqwest::Client,
    /// The reader's zone: its followers are tried first.
    zone: String,
}

impl ExampleClient {
    /// A client using `meta` for routes (start its [`MetaClient::watch_routes`] for routes
    /// that follow failovers as they happen).
    pub fn new(meta: MetaClient) -> Self {
        Self {
            meta,
            http: reqwest::Client::new(),
            zone: String::new(),
        }
    }

    /// Reads try replicas in `zone` before the others (within the preference's order).
    pub fn in_zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = zone.into();
        self
    }

    /// The Meridian client underneath.
    pub fn meta(&self) -> &MetaClient {
        &self.meta
    }

    /// The columns whose values place a row (the rule's; a hash rule without columns
    /// places by primary key).
    async fn key_columns(
        &self,
        table: &TableName,
        rule: &PartitionRule,
    ) -> Result<Vec<String>, ExampleError> {
        Ok(match rule {
            PartitionRule::None => Vec::new(),
            PartitionRule::Hash { columns, .. } if !columns.is_empty() => columns.clone(),
            PartitionRule::Range { column, .. } => vec![column.clone()],
            PartitionRule::Hash { .. } => self
                .meta
                .get_table(table)
                .await?
                .definition
                .map(|d| d.primary_key)
                .unwrap_or_default(),
        })
    }

    /// Writes `rows` of `table`: one request per leader, each acknowledged only once the
    /// rows are on a majority of their shard's replicas. On a stale-route answer the route
    /// is fetched again and the refused rows sent once more.
    pub async fn write(
        &self,
        table: &TableName,
        rows: Vec<Row>,
    ) -> Result<Vec<WriteAck>, ExampleError> {
        let mut pending = rows;
        let mut acks = Vec::new();
        let mut last_stale = None;
        for _attempt in 0..2 {
            let route = self.meta.route(table).await?;
            let locator = TableLocator::new(&route);
            let columns = self.key_columns(table, locator.rule()).await?;
            let mut batches: BTreeMap<String, WriteBatch> = BTreeMap::new();
            let mut unplaced = Vec::new();
            for row in std::mem::take(&mut pending) {
                let key: Vec<String> = columns.iter().map(|c| key_text(&row, c)).collect();
                let key: Vec<&str> = key.iter().map(String::as_str).collect();
                let at = locator.locate(&key)?;
                let Some(leader) = at.leader.clone() else {
                    last_stale = Some(ExampleError::NoLeader {
                        table: table.to_string(),
                        partition: at.partition,
                    });
                    unplaced.push(row);
                    continue;
                };
                let batch = batches.entry(leader).or_insert_with(|| WriteBatch {
                    table_id: route.table_id,
                    definition_version: route.definition_version,
                    parts: Vec::new(),
                });
                match batch.parts.iter_mut().find(|p| p.partition == at.partition) {
                    Some(part) => part.rows.push(row),
                    None => batch.parts.push(PartitionRows {
                        partition: at.partition,
                        shard: at.shard,
                        rows: vec![row],
                    }),
                }
            }
            pending = unplaced;
            let sent =
                futures::future::join_all(batches.into_iter().map(|(leader, batch)| async move {
                    (self.send(&leader, &batch).await, batch)
                }))
                .await;
            for (result, batch) in sent {
                match result {
                    Ok(ack) => acks.push(ack),
                    Err(e) if e.is_stale_route() => {
                        // Parts acknowledged before the refusal are written again: rows
                        // are upserts by primary key, so that is harmless.
                        pending.extend(batch.parts.into_iter().flat_map(|p| p.rows));
                        last_stale = Some(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            if pending.is_empty() {
                return Ok(acks);
            }
            self.meta.invalidate(table);
        }
        Err(last_stale.unwrap_or_else(|| ExampleError::NoLeader {
            table: table.to_string(),
            partition: 0,
        }))
    }

    async fn send(&self, endpoint: &str, batch: &WriteBatch) -> Result<WriteAck, ExampleError> {
        self.post(endpoint, "/v1/write", batch).await
    }

    async fn post<B: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        path: &str,
        body: &B,
    ) -> Result<R, ExampleError> {
        let transport = |message: String| ExampleError::Transport {
            endpoint: endpoint.to_string(),
            message,
        };
        let resp = self
            .http
            .post(format!("http://{endpoint}{path}"))
            .timeout(NODE_TIMEOUT)
            .json(body)
            .send()
            .await
            .map_err(|e| transport(e.to_string()))?;
        if resp.status().is_success() {
            resp.json().await.map_err(|e| transport(e.to_string()))
        } else {
            let status = resp.status();
            match resp.json::<NodeError>().await {
                Ok(e) => Err(ExampleError::Node(e)),
                Err(_) => Err(transport(format!("answered {status}"))),
            }
        }
    }

    /// Reads the rows of `partition` of `table` from the first replica, in `preference`
    /// order, that answers.
    pub async fn read_partition(
        &self,
        table: &TableName,
        partition: u32,
        preference: ReadPreference,
    ) -> Result<ReadReply, ExampleError> {
        self.read(table, partition, None, preference).await
    }

    /// Reads the row of `table` whose partition key is `key` and primary key `primary`.
    pub async fn read_row(
        &self,
        table: &TableName,
        key: &[&str],
        primary: Vec<serde_json::Value>,
        preference: ReadPreference,
    ) -> Result<ReadReply, ExampleError> {
        let at = self.meta.locate(table, key).await?;
        self.read(table, at.partition, Some(primary), preference)
            .await
    }

    async fn read(
        &self,
        table: &TableName,
        partition: u32,
        key: Option<Vec<serde_json::Value>>,
        preference: ReadPreference,
    ) -> Result<ReadReply, ExampleError> {
        let mut last = None;
        for _attempt in 0..2 {
            let route = self.meta.route(table).await?;
            let locator = TableLocator::new(&route);
            let Some(at) = locator.partition(partition) else {
                return Err(ExampleError::Meta(ClientError::Malformed(format!(
                    "{table} has no partition {partition}"
                ))));
            };
            let req = ReadRequest {
                table_id: route.table_id,
                partition,
                shard: at.shard,
                key: key.clone(),
            };
            for endpoint in locator.read_targets_near(partition, preference, &self.zone) {
                match self.post(&endpoint, "/v1/read", &req).await {
                    Ok(reply) => return Ok(reply),
                    Err(e) => last = Some(e),
                }
            }
            self.meta.invalidate(table);
        }
        Err(last.unwrap_or_else(|| ExampleError::NoLeader {
            table: table.to_string(),
            partition,
        }))
    }
}

/// Whether `e` is a node's answer with `code`.
pub fn is_node_error(e: &ExampleError, code: ErrorCode) -> bool {
    matches!(e, ExampleError::Node(n) if n.error == code)
}
