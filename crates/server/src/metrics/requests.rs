//! Request rate and latency: a tower layer on the gRPC server and an axum middleware on
//! the HTTP one.
//!
//! Labels stay bounded whatever clients send: a gRPC method is its full path only when the
//! API (or reflection) defines it, `other` otherwise; an HTTP route is the router's matched
//! template (`/api/v1/clusters/{cluster}/nodes`), never the raw path, `unmatched` when no
//! route matched; an unusual HTTP method is `other`.

use axum::extract::MatchedPath;
use axum::http::{Method, Request, Response};
use meridian_proto as pb;
use prost::Message as _;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::codegen::Bytes;

/// Every gRPC method this server defines, by full path, and whether it is unary.
fn grpc_methods() -> &'static HashMap<String, bool> {
    static METHODS: OnceLock<HashMap<String, bool>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let mut methods = HashMap::new();
        if let Ok(set) = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET) {
            for file in &set.file {
                for service in &file.service {
                    let full = match file.package() {
                        "" => service.name().to_string(),
                        package => format!("{package}.{}", service.name()),
                    };
                    for m in &service.method {
                        let unary = !m.client_streaming() && !m.server_streaming();
                        methods.insert(format!("/{full}/{}", m.name()), unary);
                    }
                }
            }
        }
        for reflection in ["grpc.reflection.v1", "grpc.reflection.v1alpha"] {
            methods.insert(
                format!("/{reflection}.ServerReflection/ServerReflectionInfo"),
                false,
            );
        }
        methods
    })
}

/// Starts a zero series of every gRPC method (calls answered OK; latency of unary ones),
/// so the families exist before the first call.
pub(crate) fn register_grpc_methods() {
    for (method, unary) in grpc_methods() {
        metrics::counter!("meridian_grpc_requests_total", "method" => method.clone(), "code" => "OK")
            .increment(0);
        if *unary {
            let _ = metrics::histogram!("meridian_grpc_request_duration_seconds", "method" => method.clone());
        }
    }
}

/// Starts the series of the scrape route itself (`GET /metrics` answered 200) at 0, so the
/// HTTP families exist before the first request; other routes' series appear with their
/// first request.
pub(crate) fn register_http_scrape() {
    metrics::counter!("meridian_http_requests_total", "method" => "GET", "route" => "/metrics", "status" => "200")
        .increment(0);
    let _ = metrics::histogram!("meridian_http_request_duration_seconds", "method" => "GET", "route" => "/metrics");
}

/// Adds [`GrpcMetrics`] to a tonic server (outermost, so refused calls count too).
#[derive(Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// Counts every gRPC call by method and status code when it ends
/// (`meridian_grpc_requests_total`) and times unary ones
/// (`meridian_grpc_request_duration_seconds`).
#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B> tower::Service<Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<Request<B>, Response = Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let path = req.uri().path();
        let (method, unary) = match grpc_methods().get_key_value(path) {
            Some((m, unary)) => (m.as_str(), *unary),
            None => ("other", false),
        };
        let call = Call {
            method,
            unary,
            started: Instant::now(),
        };
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            // A trailers-only answer (an error before any message) has its status in the
            // head; otherwise the status comes in the trailers at the end of the body.
            if let Some(code) = response.headers().get("grpc-status") {
                call.finish(code.as_bytes());
                return Ok(response);
            }
            let (head, body) = response.into_parts();
            if http_body::Body::is_end_stream(&body) {
                call.finish(b"0");
                return Ok(Response::from_parts(head, body));
            }
            let body = tonic::body::Body::new(MeteredBody {
                inner: body,
                call: Some(call),
            });
            Ok(Response::from_parts(head, body))
        })
    }
}

/// One gRPC call being answered.
struct Call {
    method: &'static str,
    unary: bool,
    started: Instant,
}

impl Call {
    /// Records the call with its `grpc-status` value.
    fn finish(self, status: &[u8]) {
        let code = std::str::from_utf8(status)
            .ok()
            .and_then(|s| s.parse::<i32>().ok())
            .map_or("Unknown", code_name);
        metrics::counter!("meridian_grpc_requests_total", "method" => self.method, "code" => code)
            .increment(1);
        if self.unary {
            metrics::histogram!("meridian_grpc_request_duration_seconds", "method" => self.method)
                .record(self.started.elapsed().as_secs_f64());
        }
    }
}

/// The name of a gRPC status code, as gRPC's own tools print it (`OK`, `NotFound`...).
fn code_name(code: i32) -> &'static str {
    use tonic::Code as C;
    match C::from_i32(code) {
        C::Ok => "OK",
        C::Cancelled => "Canceled",
        C::Unknown => "Unknown",
        C::InvalidArgument => "InvalidArgument",
        C::DeadlineExceeded => "DeadlineExceeded",
        C::NotFound => "NotFound",
        C::AlreadyExists => "AlreadyExists",
        C::PermissionDenied => "PermissionDenied",
        C::ResourceExhausted => "ResourceExhausted",
        C::FailedPrecondition => "FailedPrecondition",
        C::Aborted => "Aborted",
        C::OutOfRange => "OutOfRange",
        C::Unimplemented => "Unimplemented",
        C::Internal => "Internal",
        C::Unavailable => "Unavailable",
        C::DataLoss => "DataLoss",
        C::Unauthenticated => "Unauthenticated",
    }
}

/// A response body that records its call when the trailers pass, the body ends or the
/// client goes away (`Canceled`).
struct MeteredBody {
    inner: tonic::body::Body,
    call: Option<Call>,
}

impl http_body::Body for MeteredBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    if let Some(call) = this.call.take() {
                        let status = trailers.get("grpc-status").map(|v| v.as_bytes());
                        call.finish(status.unwrap_or(b"0"));
                    }
                }
            }
            Poll::Ready(Some(Err(status))) => {
                if let Some(call) = this.call.take() {
                    call.finish((status.code() as i32).to_string().as_bytes());
                }
            }
            Poll::Ready(None) => {
                if let Some(call) = this.call.take() {
                    call.finish(b"0");
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.finish(b"1");
        }
    }
}

/// Counts every HTTP request by method, route template and status
/// (`meridian_http_requests_total`) and times it until the response head
/// (`meridian_http_request_duration_seconds`).
pub async fn http_metrics(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = http_method(req.method());
    let response = next.run(req).await;
    metrics::counter!("meridian_http_requests_total", "method" => method, "route" => route.clone(), "status" => response.status().as_u16().to_string())
        .increment(1);
    metrics::histogram!("meridian_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A bounded label for an HTTP method.
fn http_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}
