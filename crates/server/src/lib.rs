//! Meridian's server: the wiring of store, model and scheduler behind gRPC and HTTP.
//!
//! Where things enter:
//! - a heartbeat: [`grpc::node`] (the `Heartbeat` stream), into [`meta::Cluster`];
//! - DDL and routes: [`grpc::catalog`], [`grpc::route`], and the HTTP API in [`http`];
//! - scheduling: [`schedule`] runs liveness, the schedulers and the operator controller on
//!   a tick, and executes operator steps by sending instructions to nodes;
//! - keys are written by [`meta`] only (layout in `meridian_store::keys`);
//! - several servers on etcd: [`ha`] elects one leader and makes the others follow.
#![warn(missing_docs)]

pub mod auth;
pub mod backup;
pub mod config;
pub mod error;
pub mod events;
pub mod failpoint;
pub mod grpc;
pub mod ha;
pub mod http;
pub mod meta;
pub mod metrics;
pub mod schedule;
mod server;
pub mod tls;

pub use config::{NodeServicesConfig, ServerConfig, StoreKind};
pub use error::{Result, ServerError};
pub use ha::{HaServer, Role, RunningHa};
pub use server::{RunningServer, Server, ServingTerm};
pub use tls::TlsConfig;
