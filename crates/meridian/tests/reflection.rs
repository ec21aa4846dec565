//! gRPC server reflection: a generic tool (grpcurl) can list and describe Meridian's API.

mod common;

use common::*;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_every_service_and_describes_them() {
    let server = start(memory_config()).await;
    let channel = meridian_client::connect_channel(&[server.grpc_addr.to_string()], None)
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let ask = |m: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    };
    let requests = vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(
            "meridian.v1.CatalogService".into(),
        )),
        ask(MessageRequest::FileContainingSymbol(
            "meridian.v1.NoSuchThing".into(),
        )),
    ];
    let mut answers = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("a service list first");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in [
        "meridian.v1.NodeService",
        "meridian.v1.CatalogService",
        "meridian.v1.RouteService",
        "meridian.v1.MembershipService",
        "meridian.v1.ElectionService",
        "meridian.v1.KvService",
    ] {
        assert!(names.iter().any(|n| n == s), "{s} missing from {names:?}");
    }
    let Some(MessageResponse::FileDescriptorResponse(files)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("the file defining CatalogService");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    // An unknown symbol ends the stream with NOT_FOUND.
    let e = answers.message().await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    server.shutdown().await;
}
