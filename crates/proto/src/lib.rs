//! Meridian's gRPC API, package `meridian.v1`, generated at build time by protox +
//! tonic-prost-build (no system protoc), plus conversions to and from the domain model.

#![warn(missing_docs)]

#[allow(missing_docs, clippy::all, clippy::pedantic)]
mod generated {
    tonic::include_proto!("meridian.v1");
}

pub mod convert;

pub use generated::*;
