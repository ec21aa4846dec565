//! gRPC services of `meridian.v1`: nodes' heartbeat stream, catalog/DDL, routes, who
//! leads (membership), and the services for nodes: elections and a namespaced KV.

pub mod catalog;
pub mod election;
pub mod kv;
pub mod membership;
pub mod node;
pub mod route;

use crate::error::ServerError;
use meridian_model::TableName;

/// Builds a validated table name from request fields.
pub(crate) fn table_name(
    catalog: &str,
    schema: &str,
    table: &str,
) -> Result<TableName, ServerError> {
    Ok(TableName::new(catalog, schema, table)?)
}
