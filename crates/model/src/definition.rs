//! Table definitions: the columns, keys and options a database keeps in Meridian beside the
//! table's placement, versioned so that clients and nodes notice a change.
//!
//! Column types are one documented set ([`ColumnType`]), written in lowercase on every
//! interface (`"int64"`, `"timestamp_ms"`), so a node or client in any language reads them
//! the same way.

use crate::error::ModelError;
use crate::names::validate_name;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// The most columns one table may have.
pub const MAX_COLUMNS: usize = 4096;
/// The most bytes a definition may take, encoded as JSON (columns, defaults, options).
pub const MAX_DEFINITION_BYTES: usize = 256 * 1024;
/// The most bytes of one option value or column default.
pub const MAX_VALUE_BYTES: usize = 4096;

/// A column's type.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// true / false.
    Boolean,
    /// Signed integers of 8, 16, 32, 64 bits.
    Int8,
    /// See [`ColumnType::Int8`].
    Int16,
    /// See [`ColumnType::Int8`].
    Int32,
    /// See [`ColumnType::Int8`].
    Int64,
    /// Unsigned integers of 8, 16, 32, 64 bits.
    Uint8,
    /// See [`ColumnType::Uint8`].
    Uint16,
    /// See [`ColumnType::Uint8`].
    Uint32,
    /// See [`ColumnType::Uint8`].
    Uint64,
    /// IEEE 754 binary32.
    Float32,
    /// IEEE 754 binary64.
    Float64,
    /// UTF-8 text.
    String,
    /// Bytes.
    Binary,
    /// Days since the Unix epoch.
    Date,
    /// Seconds since the Unix epoch.
    TimestampS,
    /// Milliseconds since the Unix epoch.
    TimestampMs,
    /// Microseconds since the Unix epoch.
    TimestampUs,
    /// Nanoseconds since the Unix epoch.
    TimestampNs,
    /// A JSON document.
    Json,
}

impl ColumnType {
    /// Every type, in documentation order.
    pub const ALL: [ColumnType; 19] = [
        ColumnType::Boolean,
        ColumnType::Int8,
        ColumnType::Int16,
        ColumnType::Int32,
        ColumnType::Int64,
        ColumnType::Uint8,
        ColumnType::Uint16,
        ColumnType::Uint32,
        ColumnType::Uint64,
        ColumnType::Float32,
        ColumnType::Float64,
        ColumnType::String,
        ColumnType::Binary,
        ColumnType::Date,
        ColumnType::TimestampS,
        ColumnType::TimestampMs,
        ColumnType::TimestampUs,
        ColumnType::TimestampNs,
        ColumnType::Json,
    ];

    /// Its name on every interface (`"int64"`).
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Boolean => "boolean",
            ColumnType::Int8 => "int8",
            ColumnType::Int16 => "int16",
            ColumnType::Int32 => "int32",
            ColumnType::Int64 => "int64",
            ColumnType::Uint8 => "uint8",
            ColumnType::Uint16 => "uint16",
            ColumnType::Uint32 => "uint32",
            ColumnType::Uint64 => "uint64",
            ColumnType::Float32 => "float32",
            ColumnType::Float64 => "float64",
            ColumnType::String => "string",
            ColumnType::Binary => "binary",
            ColumnType::Date => "date",
            ColumnType::TimestampS => "timestamp_s",
            ColumnType::TimestampMs => "timestamp_ms",
            ColumnType::TimestampUs => "timestamp_us",
            ColumnType::TimestampNs => "timestamp_ns",
            ColumnType::Json => "json",
        }
    }

    /// The type named `name`, with the list of names in the error.
    pub fn parse(name: &str) -> Result<Self, ModelError> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|t| t.name()).collect();
                ModelError::InvalidDefinition(format!(
                    "unknown column type {name:?}: use one of {}",
                    names.join(", ")
                ))
            })
    }

    /// Whether a time index may have this type.
    pub fn is_timestamp(self) -> bool {
        matches!(
            self,
            ColumnType::TimestampS
                | ColumnType::TimestampMs
                | ColumnType::TimestampUs
                | ColumnType::TimestampNs
        )
    }
}

/// One column of a table.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// Its name, unique in the table.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub data_type: ColumnType,
    /// Whether it may hold no value.
    #[serde(default = "yes")]
    pub nullable: bool,
    /// The value a row gets when it names none, as text the database parses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

fn yes() -> bool {
    true
}

impl Column {
    /// A column without a default.
    pub fn new(name: impl Into<String>, data_type: ColumnType, nullable: bool) -> Self {
        Self {
            name: name.into(),
            data_type,
            nullable,
            default: None,
        }
    }
}

/// A table's definition. Empty (no columns, version 0) for a table created without one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDefinition {
    /// The columns, in order.
    #[serde(default)]
    pub columns: Vec<Column>,
    /// Columns of the primary key, in key order.
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// The time index column (a non-nullable timestamp), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_index: Option<String>,
    /// Table options (`ttl`, `compaction`, ...), passed to the database as given.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Bumped by every change (1 at creation with a definition; 0: none). Routes carry it so
    /// that clients notice a change.
    #[serde(default)]
    pub version: u64,
}

impl TableDefinition {
    /// Whether the table has no definition.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
            && self.primary_key.is_empty()
            && self.time_index.is_none()
            && self.options.is_empty()
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Checks that the columns a partition rule names are columns of this definition (when
    /// there is one).
    pub fn check_rule(&self, rule: &crate::PartitionRule) -> Result<(), ModelError> {
        if self.is_empty() {
            return Ok(());
        }
        let named: Vec<&String> = match rule {
            crate::PartitionRule::None => Vec::new(),
            crate::PartitionRule::Hash { columns, .. } => columns.iter().collect(),
            crate::PartitionRule::Range { column, .. } => vec![column],
        };
        match named.into_iter().find(|c| self.column(c).is_none()) {
            Some(c) => Err(ModelError::InvalidDefinition(format!(
                "the partition rule names column {c:?}, which the definition does not have"
            ))),
            None => Ok(()),
        }
    }

    /// Checks names, duplicates, keys, the time index and sizes. Every message names what
    /// is wrong and where.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::InvalidDefinition(m));
        if self.is_empty() {
            return Ok(());
        }
        if self.columns.is_empty() {
            return bad("a definition with keys or options needs columns".into());
        }
        if self.columns.len() > MAX_COLUMNS {
            return bad(format!(
                "{} columns: at most {MAX_COLUMNS}",
                self.columns.len()
            ));
        }
        let mut seen = HashSet::new();
        for c in &self.columns {
            validate_name("column", &c.name)?;
            if !seen.insert(c.name.as_str()) {
                return bad(format!("column {:?} is defined twice", c.name));
            }
            if c.default
                .as_ref()
                .is_some_and(|d| d.len() > MAX_VALUE_BYTES)
            {
                return bad(format!(
                    "the default of column {:?} is longer than {MAX_VALUE_BYTES} bytes",
                    c.name
                ));
            }
        }
        let mut keys = HashSet::new();
        for k in &self.primary_key {
            if self.column(k).is_none() {
                return bad(format!("primary key column {k:?} is not a column"));
            }
            if !keys.insert(k.as_str()) {
                return bad(format!("primary key names column {k:?} twice"));
            }
        }
        if let Some(t) = &self.time_index {
            match self.column(t) {
                None => return bad(format!("time index {t:?} is not a column")),
                Some(c) if !c.data_type.is_timestamp() => {
                    return bad(format!(
                        "time index {t:?} is a {} column: it must be a timestamp_* column",
                        c.data_type.name()
                    ))
                }
                Some(c) if c.nullable => {
                    return bad(format!("time index {t:?} must not be nullable"))
                }
                Some(_) => {}
            }
        }
        for (k, v) in &self.options {
            validate_name("option", k)?;
            if v.len() > MAX_VALUE_BYTES {
                return bad(format!(
                    "option {k:?} is longer than {MAX_VALUE_BYTES} bytes"
                ));
            }
        }
        let size = serde_json::to_vec(self)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_DEFINITION_BYTES {
            return bad(format!(
                "the definition takes {size} bytes: at most {MAX_DEFINITION_BYTES}"
            ));
        }
        Ok(())
    }
}

/// One change of a table's definition (ALTER TABLE).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DefinitionChange {
    /// Add a column at the end.
    AddColumn(Column),
    /// Drop a column (not one of the key, the time index or the partition rule).
    DropColumn(String),
    /// Set options (`Some`) or remove them (`None`).
    SetOptions(BTreeMap<String, Option<String>>),
}

impl DefinitionChange {
    /// The definition after this change, validated, at the next version. `rule` is the
    /// table's partition rule (its columns cannot be dropped).
    pub fn apply(
        &self,
        def: &TableDefinition,
        rule: &crate::PartitionRule,
    ) -> Result<TableDefinition, ModelError> {
        let bad = |m: String| Err(ModelError::InvalidDefinition(m));
        let mut next = def.clone();
        match self {
            DefinitionChange::AddColumn(c) => {
                if def.column(&c.name).is_some() {
                    return bad(format!("column {:?} already exists", c.name));
                }
                if !c.nullable && c.default.is_none() && !def.columns.is_empty() {
                    return bad(format!(
                        "a column added to existing rows must be nullable or have a default: {:?} is neither",
                        c.name
                    ));
                }
                next.columns.push(c.clone());
            }
            DefinitionChange::DropColumn(name) => {
                if def.column(name).is_none() {
                    return bad(format!("column {name:?} does not exist"));
                }
                if def.primary_key.contains(name) {
                    return bad(format!("column {name:?} is part of the primary key"));
                }
                if def.time_index.as_ref() == Some(name) {
                    return bad(format!("column {name:?} is the time index"));
                }
                let in_rule = match rule {
                    crate::PartitionRule::None => false,
                    crate::PartitionRule::Hash { columns, .. } => columns.contains(name),
                    crate::PartitionRule::Range { column, .. } => column == name,
                };
                if in_rule {
                    return bad(format!("column {name:?} partitions the table"));
                }
                next.columns.retain(|c| &c.name != name);
            }
            DefinitionChange::SetOptions(options) => {
                for (k, v) in options {
                    match v {
                        Some(v) => next.options.insert(k.clone(), v.clone()),
                        None => next.options.remove(k),
                    };
                }
            }
        }
        next.validate()?;
        next.version = def.version + 1;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, t: ColumnType, nullable: bool) -> Column {
        Column::new(name, t, nullable)
    }

    fn good() -> TableDefinition {
        TableDefinition {
            columns: vec![
                col("host", ColumnType::String, false),
                col("ts", ColumnType::TimestampMs, false),
                col("cpu", ColumnType::Float64, true),
            ],
            primary_key: vec!["host".into()],
            time_index: Some("ts".into()),
            options: BTreeMap::from([("ttl".into(), "7d".into())]),
            version: 1,
        }
    }

    #[test]
    fn a_good_definition_passes_and_bad_ones_say_what_is_wrong() {
        good().validate().unwrap();
        TableDefinition::default().validate().unwrap();
        type Change = Box<dyn Fn(&mut TableDefinition)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|d| d.columns.push(col("cpu", ColumnType::Int64, true))),
                "defined twice",
            ),
            (
                Box::new(|d| d.primary_key.push("nope".into())),
                "is not a column",
            ),
            (Box::new(|d| d.primary_key.push("host".into())), "twice"),
            (
                Box::new(|d| d.time_index = Some("cpu".into())),
                "must be a timestamp",
            ),
            (
                Box::new(|d| d.columns[1].nullable = true),
                "must not be nullable",
            ),
            (
                Box::new(|d| d.columns[0].name = "bad name".into()),
                "invalid column name",
            ),
            (
                Box::new(|d| {
                    d.options
                        .insert("big".into(), "x".repeat(5000))
                        .map(|_| ())
                        .unwrap_or(())
                }),
                "longer than",
            ),
            (
                Box::new(|d| {
                    d.columns = (0..MAX_COLUMNS + 1)
                        .map(|i| col(&format!("c{i}"), ColumnType::Int8, true))
                        .collect();
                    d.primary_key.clear();
                    d.time_index = None;
                }),
                "at most",
            ),
        ];
        for (change, expected) in cases {
            let mut d = good();
            change(&mut d);
            let err = d.validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{err} (expected {expected:?})");
        }
    }

    #[test]
    fn changes_apply_at_the_next_version_or_say_why_not() {
        let def = good();
        let rule = crate::PartitionRule::None;
        let added = DefinitionChange::AddColumn(col("mem", ColumnType::Float64, true))
            .apply(&def, &rule)
            .unwrap();
        assert_eq!(added.version, 2);
        assert_eq!(added.columns.len(), 4);
        let dropped = DefinitionChange::DropColumn("cpu".into())
            .apply(&added, &rule)
            .unwrap();
        assert_eq!(dropped.version, 3);
        assert!(dropped.column("cpu").is_none());
        let opts = DefinitionChange::SetOptions(BTreeMap::from([
            ("ttl".to_string(), None),
            ("compaction".to_string(), Some("twcs".to_string())),
        ]))
        .apply(&def, &rule)
        .unwrap();
        assert_eq!(
            opts.options,
            BTreeMap::from([("compaction".to_string(), "twcs".to_string())])
        );
        for (change, why) in [
            (
                DefinitionChange::AddColumn(col("cpu", ColumnType::Int8, true)),
                "already exists",
            ),
            (
                DefinitionChange::AddColumn(col("x", ColumnType::Int8, false)),
                "nullable or have a default",
            ),
            (DefinitionChange::DropColumn("host".into()), "primary key"),
            (DefinitionChange::DropColumn("ts".into()), "time index"),
            (
                DefinitionChange::DropColumn("nope".into()),
                "does not exist",
            ),
        ] {
            let err = change.apply(&def, &rule).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
        let hashed = crate::PartitionRule::Hash {
            count: 2,
            columns: vec!["cpu".into()],
        };
        let err = DefinitionChange::DropColumn("cpu".into())
            .apply(&def, &hashed)
            .unwrap_err()
            .to_string();
        assert!(err.contains("partitions the table"), "{err}");
    }

    #[test]
    fn types_parse_by_their_documented_names_only() {
        for t in ColumnType::ALL {
            assert_eq!(ColumnType::parse(t.name()).unwrap(), t);
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.name()));
        }
        let err = ColumnType::parse("varchar").unwrap_err().to_string();
        assert!(err.contains("unknown column type \"varchar\""), "{err}");
        assert!(err.contains("timestamp_ms"), "{err}");
    }
}
