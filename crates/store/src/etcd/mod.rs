//! etcd as Meridian's store, for highly available deployments: [`EtcdBackend`] (a
//! [`KvBackend`](crate::KvBackend) on etcd's v3 API) and [`election`] (one leader among
//! several Meridian servers, with terms and fenced writes).
//!
//! The gRPC client is generated from `proto/etcd.proto`, the project's own description of
//! the part of etcd's API it uses, compiled by protox: no protoc, no etcd client crate.
//!
//! etcd's limits shape this module: a transaction takes at most [`MAX_TXN_OPS`] operations
//! (etcd's default `--max-txn-ops`), may not write one key twice, and a request is at most
//! about 1.5 MiB (`--max-request-bytes`). Batches are deduplicated here (the last write of a
//! key wins, as in every backend) and refused with a precise error when still too large, so
//! callers split big writes into steps that are safe to resume.

pub mod backend;
pub mod election;
pub mod local;

pub use backend::{EtcdBackend, EtcdConfig, Fence};
pub use election::{Candidate, LeaderInfo, Leadership, LeaseValidity};
pub use local::LocalEtcd;

/// Generated client code for the etcd v3 API subset.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub(crate) mod pb {
    tonic::include_proto!("etcdserverpb");
}

/// The most operations one etcd transaction branch may hold (etcd's default).
pub const MAX_TXN_OPS: usize = 128;
/// The largest request etcd accepts by default (1.5 MiB), less room for framing.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024 - 4096;

/// The smallest key greater than every key starting with `prefix` (etcd's `range_end` for
/// a prefix); `[0]` (every key from `prefix` on) when no such key exists.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
