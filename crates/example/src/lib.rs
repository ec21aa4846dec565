//! A worked example of a database on Meridian, small enough to read in one sitting.
//!
//! - [`ExampleNode`]: a database node. It joins through [`meridian_client::NodeAgent`],
//!   keeps rows in memory per shard and table partition, obeys Meridian's instructions
//!   (open, close, promote, demote, create, alter, drop), accepts writes only under the
//!   shard's write lease, replicates them to a majority of the shard's replicas before
//!   acknowledging, reports its log positions so Meridian promotes the most up-to-date
//!   follower, and serves reads from leaders and followers. Its data plane is HTTP + JSON
//!   ([`wire`]). `meridian example-node` runs one.
//! - [`ExampleClient`]: a client that routes rows to their partition's leader with
//!   Meridian's routes, retries once on a stale route, and reads by preference (followers
//!   first, say).
//!
//! `docs/integration.md` walks through it.
#![warn(missing_docs)]

pub mod client;
pub mod data;
pub mod node;
pub mod replication;
pub mod server;
pub mod wire;

pub use client::{ExampleClient, ExampleError};
pub use server::ExampleNode;
