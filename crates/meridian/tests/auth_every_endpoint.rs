//! Every endpoint, every role: each gRPC method of every service the server describes (from
//! its compiled descriptors) refuses a call without a token and one of a role it does not
//! allow, and each HTTP endpoint of the OpenAPI document does the same; refused calls
//! change nothing. (`auth.rs` shows the allowed calls working.)

mod common;

use bytes::{Buf, BufMut};
use common::*;
use prost::Message;
use reqwest::Method;
use serde_json::json;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Code;

/// Passes message bytes through as they are: an empty message is every request type's
/// default, and a refusal comes before any decoding.
#[derive(Clone, Copy)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// Every `/package.Service/Method` the server's descriptors define.
fn grpc_methods() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(meridian_proto::FILE_DESCRIPTOR_SET)
        .expect("descriptors decode");
    let mut out = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                out.push(format!(
                    "/{}.{}/{}",
                    file.package(),
                    service.name(),
                    method.name()
                ));
            }
        }
    }
    out
}

async fn call(channel: &tonic::transport::Channel, path: &str, token: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    let mut request = tonic::Request::new(Vec::new());
    if let Some(t) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let path = tonic::codegen::http::uri::PathAndQuery::try_from(path).expect("a path");
    // A refusal arrives at once; an allowed streaming call would not end: cut it short.
    match tokio::time::timeout(
        std::time::Duration::from_secs(3),
        grpc.unary(request, path, RawCodec),
    )
    .await
    {
        Ok(Ok(_)) => Code::Ok,
        Ok(Err(status)) => status.code(),
        Err(_) => Code::DeadlineExceeded,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grpc_method_refuses_missing_and_too_weak_tokens() {
    let (_dir, server) = start_with_tokens("admin adm-1\nreader rd-1\nnode nd-1\n").await;
    let channel = meridian_client::connect_channel(&[server.grpc_addr.to_string()], None)
        .await
        .unwrap();
    let methods = grpc_methods();
    assert!(methods.len() > 20, "{methods:?}");
    let mut refused = 0;
    for path in &methods {
        let open = path.starts_with("/meridian.v1.MembershipService/");
        let no_token = call(&channel, path, None).await;
        if open {
            assert_ne!(no_token, Code::Unauthenticated, "{path} is open to all");
            continue;
        }
        assert_eq!(no_token, Code::Unauthenticated, "{path} without a token");
        assert_eq!(
            call(&channel, path, Some("not-a-token")).await,
            Code::Unauthenticated,
            "{path} with an unknown token"
        );
        // What each role may do (`meridian_server::auth`): nodes their services, routes and
        // catalog reads; readers routes and catalog reads; changes to the catalog admins.
        let service = path.split('/').nth(1).unwrap_or_default();
        let method = path.rsplit('/').next().unwrap_or_default();
        let catalog_read = matches!(method, "GetTable" | "ListTables" | "ListSchemas");
        let node_ok = match service {
            "meridian.v1.CatalogService" => catalog_read,
            _ => true,
        };
        let reader_ok = match service {
            "meridian.v1.CatalogService" => catalog_read,
            "meridian.v1.RouteService" => true,
            _ => false,
        };
        for (token, allowed) in [("nd-1", node_ok), ("rd-1", reader_ok)] {
            let code = call(&channel, path, Some(token)).await;
            if allowed {
                assert!(
                    !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
                    "{path} with {token}: {code:?}"
                );
            } else {
                assert_eq!(code, Code::PermissionDenied, "{path} with {token}");
                refused += 1;
            }
        }
    }
    assert!(refused > 10, "{refused}");
    // Nothing refused changed anything.
    let c = server.meta.cluster("default").unwrap();
    assert_eq!(c.table_count(), 0);
    assert!(c.list_schemas("default").iter().all(|s| s == "public"));
    server.shutdown().await;
}

/// Every HTTP endpoint in the OpenAPI document, with every role: no token is 401 (except
/// what is open to all), a node token is 403 on the admin API, a reader token reads but
/// is 403 on every change; nothing refused changes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_endpoint_checks_every_role() {
    let (_dir, server) = start_with_tokens("admin adm-1\nreader rd-1\nnode nd-1\n").await;
    let base = format!("http://{}", server.http_addr);
    let (s, doc) = http_as(
        Method::GET,
        &format!("{base}/api/v1/openapi.json"),
        None,
        None,
    )
    .await;
    assert_eq!(s, 200, "the document is open to all: {doc}");
    let fill = |path: &str| {
        path.replace("{cluster}", "default")
            .replace("{node}", "n0")
            .replace("{shard}", "1")
            .replace("{id}", "1")
            .replace("{catalog}", "default")
            .replace("{schema}", "public")
            .replace("{table}", "t")
            .replace("{key}", "limits.per_node")
            .replace("{name}", "balance-leader")
            .replace("{action}", "pause")
    };
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        if !path.starts_with("/api/v1/") || path == "/api/v1/openapi.json" {
            continue;
        }
        for method in ops.as_object().unwrap().keys() {
            let Ok(method) = Method::from_bytes(method.to_uppercase().as_bytes()) else {
                continue;
            };
            let read = method == Method::GET;
            if path == "/api/v1/events/stream" {
                continue; // a stream: its refusals are the same middleware, checked below
            }
            let url = format!("{base}{}", fill(path));
            let body = (!read).then(|| json!({}));
            let (s, v) = http_as(method.clone(), &url, None, body.clone()).await;
            assert_eq!(s, 401, "{method} {path} without a token: {v}");
            let (s, v) = http_as(method.clone(), &url, Some("nd-1"), body.clone()).await;
            assert_eq!(s, 403, "{method} {path} with a node token: {v}");
            let (s, v) = http_as(method.clone(), &url, Some("rd-1"), body.clone()).await;
            if read && path != "/api/v1/backup" {
                assert!(
                    s != 401 && s != 403,
                    "{method} {path} with a reader token: {s} {v}"
                );
            } else {
                assert_eq!(s, 403, "{method} {path} with a reader token: {v}");
            }
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} endpoints in the document");
    // Nothing refused changed anything.
    let c = server.meta.cluster("default").unwrap();
    assert_eq!(c.table_count(), 0);
    assert!(server
        .scheduling
        .schedulers(c.id)
        .1
        .iter()
        .all(|s| !s.paused));
    server.shutdown().await;
}
