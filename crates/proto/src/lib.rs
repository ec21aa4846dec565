//! Meridian's gRPC API, package `meridian.v1`, generated at build time by protox +
//! tonic-prost-build (no system protoc), plus conversions to and from the domain model.

#![warn(missing_docs)]

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod generated {
    tonic::include_proto!("meridian.v1");
}

pub mod convert;

/// The encoded `FileDescriptorSet` of the API, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/meridian_descriptor.bin"));

pub use generated::*;
