//! Server configuration: one struct with documented serde defaults, loaded from a TOML file,
//! then `MERIDIAN_*` environment variables, then command-line flags (the binary applies
//! flags last).

use meridian_scheduler::{ControllerConfig, LivenessConfig, SchedulerConfig};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Which store holds the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// Embedded redb file under `data_dir` (the default).
    #[default]
    Redb,
    /// In memory: nothing survives a restart (tests only).
    Memory,
    /// etcd (see [`EtcdSettings`]): several servers share it, one leads (elected on etcd),
    /// the others follow and forward. The highly available deployment (docs/deploy.md).
    Etcd,
}

/// How a server reaches etcd and campaigns there (`store = "etcd"`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdSettings {
    /// Client addresses of the etcd members (`host:port`). Default `["127.0.0.1:2379"]`.
    pub endpoints: Vec<String>,
    /// Prefix of every key Meridian writes (keys start with `/meridian/v1/`), so that
    /// several deployments can share one etcd. Default empty.
    pub namespace: String,
    /// TTL of the leader's etcd lease, in whole seconds (etcd's minimum is 2 with its
    /// default timing). A leader that dies is replaced about this long after; a leader cut
    /// off from etcd stops leading before it. An etcd leader election (1-2 s with etcd's
    /// defaults) stalls renewals, so at 2 s it can cost Meridian its leader: a takeover,
    /// which nodes ride out on their longer leases. Default 2.
    pub election_ttl_s: u64,
    /// How long one etcd request may take, in ms. Default 3000.
    pub request_timeout_ms: u64,
}

impl Default for EtcdSettings {
    fn default() -> Self {
        Self {
            endpoints: vec!["127.0.0.1:2379".into()],
            namespace: String::new(),
            election_ttl_s: 2,
            request_timeout_ms: 3000,
        }
    }
}

/// Limits of the services for database nodes (`ElectionService`, `KvService`), section
/// `[node_services]`. A request over a size limit is INVALID_ARGUMENT; over a quota or the
/// rate, RESOURCE_EXHAUSTED; either way it changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeServicesConfig {
    /// Longest KV key, in bytes. Default 1024 (at most 4096).
    pub max_key_bytes: usize,
    /// Largest KV value and election value, in bytes. Default 65536 (at most 1 MiB; an
    /// election value is also never more than 64 KiB).
    pub max_value_bytes: usize,
    /// Most keys in one KV namespace. Default 10,000.
    pub max_keys_per_namespace: u64,
    /// Most bytes (keys plus values) in one KV namespace. Default 16 MiB.
    pub max_bytes_per_namespace: u64,
    /// Requests per second allowed per KV namespace and per election (token bucket refill
    /// rate; may be fractional). Default 1000.
    pub requests_per_second: f64,
    /// Requests allowed at once above the rate (token bucket size). Default 2000.
    pub burst: u32,
    /// Shortest election lease a campaign may ask for, in ms. Default 500.
    pub min_ttl_ms: u64,
    /// Longest election lease a campaign may ask for, in ms. Default 300,000 (5 min).
    pub max_ttl_ms: u64,
}

impl Default for NodeServicesConfig {
    fn default() -> Self {
        Self {
            max_key_bytes: 1024,
            max_value_bytes: 64 * 1024,
            max_keys_per_namespace: 10_000,
            max_bytes_per_namespace: 16 << 20,
            requests_per_second: 1000.0,
            burst: 2000,
            min_ttl_ms: 500,
            max_ttl_ms: 300_000,
        }
    }
}

impl NodeServicesConfig {
    /// Refuses limits the store cannot honour or that make no sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_key_bytes == 0 || self.max_key_bytes > 4096 {
            return Err(format!(
                "node_services.max_key_bytes = {} must be within 1..=4096",
                self.max_key_bytes
            ));
        }
        if self.max_value_bytes == 0 || self.max_value_bytes > meridian_store::MAX_VALUE_LEN {
            return Err(format!(
                "node_services.max_value_bytes = {} must be within 1..={}",
                self.max_value_bytes,
                meridian_store::MAX_VALUE_LEN
            ));
        }
        if !(self.requests_per_second.is_finite() && self.requests_per_second > 0.0) {
            return Err(format!(
                "node_services.requests_per_second = {} must be a positive number",
                self.requests_per_second
            ));
        }
        if self.burst == 0 {
            return Err("node_services.burst must be at least 1".into());
        }
        if self.min_ttl_ms == 0 || self.min_ttl_ms > self.max_ttl_ms {
            return Err(format!(
                "node_services.min_ttl_ms = {} must be at least 1 and at most max_ttl_ms = {}",
                self.min_ttl_ms, self.max_ttl_ms
            ));
        }
        Ok(())
    }
}

/// Configuration of a Meridian server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Directory of the embedded store (`meridian.redb` inside it). Default `./meridian-data`.
    pub data_dir: PathBuf,
    /// Which store to use. Default `redb`.
    pub store: StoreKind,
    /// etcd settings, used when `store = "etcd"`.
    pub etcd: EtcdSettings,
    /// This server's name in logs, `/health` and the election. Default `meridian-<grpc
    /// port>`.
    pub name: String,
    /// The gRPC address other servers and clients use to reach this one, if not
    /// `grpc_addr` (e.g. when listening on `0.0.0.0`).
    pub advertise_grpc_addr: Option<String>,
    /// The HTTP address others use to reach this one, if not `http_addr`.
    pub advertise_http_addr: Option<String>,
    /// gRPC listen address (nodes, DDL, routes). Default `127.0.0.1:7700`.
    pub grpc_addr: SocketAddr,
    /// HTTP listen address (admin API, `/metrics`, `/health`). Default `127.0.0.1:7701`.
    pub http_addr: SocketAddr,
    /// Node liveness: heartbeat interval, suspect/offline thresholds, grace period.
    pub liveness: LivenessConfig,
    /// Scheduler tuning: balance tolerance and hysteresis, repair delay, hot-shard threshold,
    /// how far behind a follower failover may promote (`max_promote_lag`).
    pub scheduler: SchedulerConfig,
    /// Operator controller: concurrency limits, step timeouts, history length.
    pub operators: ControllerConfig,
    /// How long a node has to answer an instruction, in ms. Default 5000.
    pub instruction_timeout_ms: u64,
    /// Period of the liveness and scheduling loop, in ms. Default 100.
    pub schedule_interval_ms: u64,
    /// A full scheduling pass (view of every shard, every scheduler) runs on the tick where
    /// a node changes state; while operators run, as often as a tenth of a core allows
    /// (every tick in a small cluster); and otherwise at this period, in ms. Default 1000.
    pub full_schedule_interval_ms: u64,
    /// Step of each cluster's history (the series API, the dashboard's charts, the load
    /// trends the hot-shard scheduler uses), in ms; 120 steps are kept. Default 5000 (the
    /// last 10 minutes).
    pub history_step_ms: u64,
    /// Largest gRPC message accepted, in bytes. Default 4 MiB.
    pub max_message_bytes: usize,
    /// Most tables one `RouteTables` request may name. Default 10,000.
    pub max_route_batch: usize,
    /// Limits of the election and KV services for database nodes.
    pub node_services: NodeServicesConfig,
    /// A file of `ROLE TOKEN` lines (roles `node`, `reader`, `admin`): every gRPC and HTTP
    /// call must then carry a token of a role allowed to make it (see `crate::auth`).
    /// Default none: everything open.
    pub tokens_file: Option<PathBuf>,
    /// TLS on both ports (`[tls] cert_file`, `key_file`, and `client_ca_file` to require
    /// client certificates). Default none: plain TCP.
    pub tls: Option<crate::tls::TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("meridian-data"),
            store: StoreKind::Redb,
            etcd: EtcdSettings::default(),
            name: String::new(),
            advertise_grpc_addr: None,
            advertise_http_addr: None,
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 7700)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 7701)),
            liveness: LivenessConfig::default(),
            scheduler: SchedulerConfig::default(),
            operators: ControllerConfig::default(),
            instruction_timeout_ms: 5000,
            schedule_interval_ms: 100,
            full_schedule_interval_ms: 1000,
            history_step_ms: 5000,
            max_message_bytes: 4 << 20,
            max_route_batch: 10_000,
            node_services: NodeServicesConfig::default(),
            tokens_file: None,
            tls: None,
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`ServerConfig`].
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// An environment variable has an invalid value.
    #[error("invalid environment variable {name}={value:?}: {message}")]
    Env {
        /// Variable name.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why it was refused.
        message: String,
    },
}

impl ServerConfig {
    /// Loads defaults, then the TOML file if given, then `MERIDIAN_DATA_DIR`,
    /// `MERIDIAN_GRPC_ADDR`, `MERIDIAN_HTTP_ADDR` from the environment.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.into(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.into(),
                    message: e.to_string(),
                })?
            }
            None => ServerConfig::default(),
        };
        if let Ok(v) = std::env::var("MERIDIAN_DATA_DIR") {
            config.data_dir = PathBuf::from(v);
        }
        for (name, slot) in [
            ("MERIDIAN_GRPC_ADDR", &mut config.grpc_addr),
            ("MERIDIAN_HTTP_ADDR", &mut config.http_addr),
        ] {
            if let Ok(value) = std::env::var(name) {
                *slot = value
                    .parse()
                    .map_err(|e: std::net::AddrParseError| ConfigError::Env {
                        name,
                        value: value.clone(),
                        message: e.to_string(),
                    })?;
            }
        }
        Ok(config)
    }
}

impl ServerConfig {
    /// The server's name: `name`, or `meridian-<grpc port>`.
    pub fn server_name(&self) -> String {
        if self.name.is_empty() {
            format!("meridian-{}", self.grpc_addr.port())
        } else {
            self.name.clone()
        }
    }

    /// The gRPC address to announce, given the bound one (the configured port may be 0).
    pub fn advertised_grpc(&self, bound: SocketAddr) -> String {
        self.advertise_grpc_addr
            .clone()
            .unwrap_or_else(|| bound.to_string())
    }

    /// The HTTP address to announce, given the bound one.
    pub fn advertised_http(&self, bound: SocketAddr) -> String {
        self.advertise_http_addr
            .clone()
            .unwrap_or_else(|| bound.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<ServerConfig, ConfigError> {
        let dir = tempfile::tempdir().map_err(|source| ConfigError::Read {
            path: "tempdir".into(),
            source,
        })?;
        let path = dir.path().join("meridian.toml");
        std::fs::write(&path, text).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        ServerConfig::load(Some(&path))
    }

    #[test]
    fn a_typo_in_any_section_is_refused_with_its_name() {
        for (text, typo) in [
            ("[liveness]\nofline_after_ms = 3000\n", "ofline_after_ms"),
            ("[scheduler]\nrepair_delay = 1\n", "repair_delay"),
            ("[operators]\nhistory = 5\n", "history"),
            ("[operators.limits]\nper_nod = 1\n", "per_nod"),
            ("[etcd]\nendpoint = [\"a:1\"]\n", "endpoint"),
            ("[node_services]\nmax_key_size = 10\n", "max_key_size"),
            ("grpc_adr = \"127.0.0.1:1\"\n", "grpc_adr"),
        ] {
            match load_text(text) {
                Err(ConfigError::Parse { message, .. }) => {
                    assert!(message.contains(typo), "{typo}: {message}")
                }
                other => panic!("{typo} accepted: {other:?}"),
            }
        }
    }

    #[test]
    fn the_sections_take_their_documented_keys() {
        let text =
            "store = \"etcd\"\n[etcd]\nendpoints = [\"10.0.0.1:2379\"]\nelection_ttl_s = 3\n\
                    [liveness]\noffline_after_ms = 7000\n[operators.limits]\nper_node = 3\n\
                    [node_services]\nmax_value_bytes = 1000\nrequests_per_second = 0.5\n";
        let config = load_text(text).expect("valid config");
        assert_eq!(config.store, StoreKind::Etcd);
        assert_eq!(config.etcd.endpoints, ["10.0.0.1:2379"]);
        assert_eq!(config.etcd.election_ttl_s, 3);
        assert_eq!(config.liveness.offline_after_ms, 7000);
        assert_eq!(config.operators.limits.per_node, 3);
        assert_eq!(config.node_services.max_value_bytes, 1000);
        assert_eq!(config.node_services.requests_per_second, 0.5);
        assert_eq!(config.node_services.max_key_bytes, 1024, "defaults stay");
        assert!(config.node_services.validate().is_ok());
    }

    #[test]
    fn node_service_limits_the_store_cannot_honour_are_refused_with_their_key() {
        let base = NodeServicesConfig::default();
        assert!(base.validate().is_ok());
        for (bad, key) in [
            (
                NodeServicesConfig {
                    max_key_bytes: 4097,
                    ..base.clone()
                },
                "max_key_bytes",
            ),
            (
                NodeServicesConfig {
                    max_value_bytes: meridian_store::MAX_VALUE_LEN + 1,
                    ..base.clone()
                },
                "max_value_bytes",
            ),
            (
                NodeServicesConfig {
                    requests_per_second: 0.0,
                    ..base.clone()
                },
                "requests_per_second",
            ),
            (
                NodeServicesConfig {
                    burst: 0,
                    ..base.clone()
                },
                "burst",
            ),
            (
                NodeServicesConfig {
                    min_ttl_ms: 10_000,
                    max_ttl_ms: 1_000,
                    ..base.clone()
                },
                "min_ttl_ms",
            ),
        ] {
            let e = bad.validate().expect_err(key);
            assert!(e.contains(key), "{key}: {e}");
        }
    }
}

#[cfg(test)]
mod doc_examples {
    use super::ServerConfig;

    /// Every ```toml block of the docs is a config the server accepts.
    #[test]
    fn the_config_examples_in_the_docs_load() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut checked = 0;
        for doc in ["docs/configuration.md", "docs/deploy.md", "README.md"] {
            let text = std::fs::read_to_string(root.join(doc)).expect("doc readable");
            let mut blocks = text.split("```toml\n").skip(1);
            for block in blocks.by_ref() {
                let body = block.split("```").next().unwrap_or_default();
                if let Err(e) = toml::from_str::<ServerConfig>(body) {
                    panic!("{doc}: example does not load: {e}\n{body}");
                }
                checked += 1;
            }
        }
        assert!(checked >= 2, "found {checked} examples");
    }
}

#[cfg(test)]
mod reference_tests {
    use super::ServerConfig;

    /// Every key of the config struct, as `(section, key)` (section "" at the top level,
    /// `a.b` for nested tables).
    fn keys(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
        for (k, v) in table {
            match v {
                toml::Value::Table(t) => {
                    let section = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    keys(&section, t, out);
                }
                _ => out.push((prefix.to_string(), k.clone())),
            }
        }
    }

    #[test]
    fn the_configuration_reference_documents_every_key() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/configuration.md"
        ))
        .expect("docs/configuration.md");
        // Optional sections count too: a default leaves them out of the TOML.
        let config = ServerConfig {
            tls: Some(crate::tls::TlsConfig {
                client_ca_file: Some("ca.pem".into()),
                ..Default::default()
            }),
            tokens_file: Some("tokens".into()),
            ..Default::default()
        };
        let config = toml::Table::try_from(config).expect("serializable");
        let mut all = Vec::new();
        keys("", &config, &mut all);
        assert!(all.len() > 20, "{all:?}");
        let rows: Vec<&str> = doc.lines().filter(|l| l.starts_with("| `")).collect();
        let missing: Vec<String> = all
            .iter()
            .filter(|(section, key)| {
                let named = |row: &&str| {
                    row.contains(&format!("`{key}`"))
                        || row.contains(&format!("] {key}`"))
                        || row.contains(&format!("`{key} "))
                };
                if section.is_empty() {
                    !rows.iter().any(|r| !r.starts_with("| `[") && named(r))
                } else {
                    !rows
                        .iter()
                        .any(|r| r.starts_with(&format!("| `[{section}]")) && named(r))
                }
            })
            .map(|(s, k)| {
                if s.is_empty() {
                    k.clone()
                } else {
                    format!("[{s}] {k}")
                }
            })
            .collect();
        assert!(
            missing.is_empty(),
            "docs/configuration.md does not document {missing:?}"
        );
    }
}
