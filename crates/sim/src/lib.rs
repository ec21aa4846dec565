//! Meridian's simulator.
//!
//! [`node`] is a simulated database node over real gRPC, built on `meridian_client::NodeAgent`:
//! it keeps shards and tables in memory, obeys instructions and reports synthetic load;
//! [`write`] is its data plane, accepting writes only under the shard's write lease.
//!
//! [`scenario`] is a deterministic discrete-event simulation of a cluster (simulated nodes,
//! a simulated clock, seeded latencies) driving the real scheduler crate: liveness tracker,
//! schedulers, operator controller and placement. It answers "how long is a shard without
//! a leader when a zone dies?" in seconds of wall time, reproducibly from a seed.
#![warn(missing_docs)]

pub mod node;
pub mod scenario;
pub mod write;
