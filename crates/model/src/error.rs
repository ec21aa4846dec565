//! Errors raised by model validation.

/// Why a value was refused by the model's invariants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// A name (cluster, node, catalog, schema, table, column) is not acceptable.
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// What the name names ("table", "schema", ...).
        kind: &'static str,
        /// The name as given (truncated if very long).
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A partition rule is not acceptable.
    #[error("invalid partition rule: {0}")]
    InvalidPartitionRule(String),
    /// A table definition is not acceptable.
    #[error("invalid table definition: {0}")]
    InvalidDefinition(String),
    /// A cluster configuration is not acceptable.
    #[error("invalid cluster config: {0}")]
    InvalidClusterConfig(String),
}
