//! Bearer tokens with roles, checked on every gRPC and HTTP endpoint.
//!
//! With `--tokens FILE` (config `tokens_file`), a file of `ROLE TOKEN [NAME]` lines (the
//! name says who holds the token: admin actions in the event log name it), every call
//! must carry `authorization: Bearer TOKEN`: none (or an unknown token) is gRPC
//! `UNAUTHENTICATED` / HTTP 401, a token of too weak a role `PERMISSION_DENIED` / 403, and
//! the call changes nothing. Roles:
//!
//! - `node`: what a database node needs: the heartbeat stream, routes (to find its peers),
//!   the election and KV services for nodes, and catalog reads;
//! - `reader`: every read (catalog, routes, admin lists, `/metrics`, events);
//! - `admin`: everything.
//!
//! Open to all: `/health`, the API's OpenAPI document, the dashboard page itself (its API calls need a token), who
//! leads (`MembershipService`) and gRPC reflection. Without `--tokens`, everything is open,
//! as before, and the server warns at start when it listens beyond loopback.

use crate::error::{Result, ServerError};
use std::collections::HashMap;
use std::path::Path;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A database node.
    Node,
    /// Reads only.
    Reader,
    /// Everything.
    Admin,
}

impl Role {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "node" => Some(Role::Node),
            "reader" => Some(Role::Reader),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Its name in files and errors.
    pub fn name(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Reader => "reader",
            Role::Admin => "admin",
        }
    }
}

/// Who made a call: the name of its token in the tokens file, and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (its line's third word, else `ROLE token of line N`).
    pub name: String,
    /// Its role.
    pub role: Role,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.role.name())
    }
}

/// Who made a request, as the event log names it: the caller's token (with `--tokens`)
/// and the peer's address, whichever are known.
pub fn requester(caller: Option<&Caller>, peer: Option<std::net::SocketAddr>) -> String {
    match (caller, peer) {
        (Some(c), Some(p)) => format!("{c} from {p}"),
        (Some(c), None) => c.to_string(),
        (None, Some(p)) => format!("a caller at {p}"),
        (None, None) => "a caller".into(),
    }
}

/// The peer of a gRPC request, plain or TLS.
fn grpc_peer<B>(req: &axum::http::Request<B>) -> Option<std::net::SocketAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let ext = req.extensions();
    ext.get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|t| t.get_ref().remote_addr())
        })
}

/// Roles allowed to make a call; `None` from the rules below means open to all.
pub type Allowed = &'static [Role];

const ANY_TOKEN: Allowed = &[Role::Node, Role::Reader, Role::Admin];
const READERS: Allowed = &[Role::Reader, Role::Admin];
const NODES: Allowed = &[Role::Node, Role::Admin];
const ADMINS: Allowed = &[Role::Admin];

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No token, or one not in the file.
    Unauthenticated(String),
    /// A known token of a role that may not make this call.
    PermissionDenied(String),
}

/// The tokens of `--tokens FILE`.
#[derive(Debug, Default)]
pub struct Tokens {
    callers: HashMap<String, Caller>,
}

impl Tokens {
    /// Reads a file of `ROLE TOKEN [NAME]` lines (blank lines and `#` comments skipped); refuses
    /// an unknown role, a malformed line, a token used twice, or no token at all.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ServerError::InvalidArgument(format!("cannot read tokens file {}: {e}", path.display()))
        })?;
        Self::parse(&text).map_err(|e| {
            ServerError::InvalidArgument(format!("tokens file {}: {e}", path.display()))
        })
    }

    fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut callers = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(role), Some(token), name, None) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                return Err(format!("line {}: want `ROLE TOKEN [NAME]`", i + 1));
            };
            let role = Role::parse(role).ok_or_else(|| {
                format!(
                    "line {}: unknown role {role:?} (node, reader or admin)",
                    i + 1
                )
            })?;
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("line {}: a token is printable ASCII", i + 1));
            }
            let name = name.map_or_else(
                || format!("{} token of line {}", role.name(), i + 1),
                str::to_string,
            );
            if callers
                .insert(token.to_string(), Caller { name, role })
                .is_some()
            {
                return Err(format!("line {}: the token is listed twice", i + 1));
            }
        }
        if callers.is_empty() {
            return Err("no tokens: nobody could call the server".into());
        }
        Ok(Self { callers })
    }

    /// Checks an `authorization` header value against the roles `allowed`; the caller
    /// when it may.
    pub fn check(
        &self,
        authorization: Option<&str>,
        allowed: Allowed,
    ) -> std::result::Result<Caller, Denied> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Denied::Unauthenticated(
                    "this server needs a token: `authorization: Bearer TOKEN`".into(),
                )
            })?;
        let caller = self
            .callers
            .get(token.trim())
            .ok_or_else(|| Denied::Unauthenticated("unknown token".into()))?;
        let role = caller.role;
        if allowed.contains(&role) {
            Ok(caller.clone())
        } else {
            let need: Vec<&str> = allowed.iter().map(|r| r.name()).collect();
            Err(Denied::PermissionDenied(format!(
                "a {} token may not do this (needs {})",
                role.name(),
                need.join(" or ")
            )))
        }
    }
}

/// Who may call gRPC method `path` (`/package.Service/Method`); `None`: anyone.
pub fn grpc_allowed(path: &str) -> Option<Allowed> {
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    match service {
        "meridian.v1.MembershipService" => None,
        s if s.starts_with("grpc.reflection.") => None,
        "meridian.v1.NodeService" | "meridian.v1.ElectionService" | "meridian.v1.KvService" => {
            Some(NODES)
        }
        "meridian.v1.RouteService" => Some(ANY_TOKEN),
        "meridian.v1.CatalogService" => Some(match method {
            "GetTable" | "ListTables" | "ListSchemas" => ANY_TOKEN,
            _ => ADMINS,
        }),
        // Anything new is admin-only until it is classified here.
        _ => Some(ADMINS),
    }
}

/// Who may call HTTP `method` on `path`; `None`: anyone.
pub fn http_allowed(method: &axum::http::Method, path: &str) -> Option<Allowed> {
    if matches!(
        path,
        "/" | "/dashboard" | "/health" | "/api/v1/openapi.json"
    ) {
        return None;
    }
    if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
        // A backup holds every secret of the metadata: admins only.
        if path == "/api/v1/backup" {
            return Some(ADMINS);
        }
        return Some(READERS);
    }
    Some(ADMINS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_files_are_checked_and_roles_applied() {
        let t = Tokens::parse("# ops\nadmin a1 alice\nreader r1\n\nnode n1\n").unwrap();
        assert_eq!(
            t.check(Some("Bearer a1"), ADMINS).unwrap().to_string(),
            "alice (admin)"
        );
        assert_eq!(
            t.check(Some("Bearer r1"), READERS).unwrap().name,
            "reader token of line 3"
        );
        let create = grpc_allowed("/meridian.v1.CatalogService/CreateTable").unwrap();
        let get = grpc_allowed("/meridian.v1.CatalogService/GetTable").unwrap();
        assert_eq!(
            t.check(Some("Bearer a1"), create).map(|c| c.role),
            Ok(Role::Admin)
        );
        assert!(matches!(
            t.check(Some("Bearer r1"), create),
            Err(Denied::PermissionDenied(_))
        ));
        assert_eq!(
            t.check(Some("Bearer r1"), get).map(|c| c.role),
            Ok(Role::Reader)
        );
        assert!(matches!(
            t.check(None, get),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            t.check(Some("Bearer zz"), get),
            Err(Denied::Unauthenticated(_))
        ));
        let heartbeat = grpc_allowed("/meridian.v1.NodeService/Heartbeat").unwrap();
        assert_eq!(
            t.check(Some("Bearer n1"), heartbeat).map(|c| c.role),
            Ok(Role::Node)
        );
        assert!(t.check(Some("Bearer r1"), heartbeat).is_err());
        assert!(grpc_allowed("/meridian.v1.MembershipService/GetLeader").is_none());
        let get_http = axum::http::Method::GET;
        assert!(http_allowed(&get_http, "/api/v1/openapi.json").is_none());
        assert!(http_allowed(&get_http, "/api/v1/clusters").is_some());

        for bad in ["", "admin", "root x", "admin a b c", "admin a\nreader a"] {
            assert!(Tokens::parse(bad).is_err(), "{bad:?}");
        }
    }
}

/// A tower layer that checks every gRPC call against the tokens (see the module docs).
#[derive(Clone)]
pub struct GrpcAuthLayer {
    /// The tokens; `None`: everything open.
    pub tokens: Option<std::sync::Arc<Tokens>>,
}

impl<S> tower::Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcAuth {
            inner,
            tokens: self.tokens.clone(),
        }
    }
}

/// The service [`GrpcAuthLayer`] makes.
#[derive(Clone)]
pub struct GrpcAuth<S> {
    inner: S,
    tokens: Option<std::sync::Arc<Tokens>>,
}

impl<S, B> tower::Service<axum::http::Request<B>> for GrpcAuth<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, std::result::Result<S::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        let mut caller = None;
        if let Some(tokens) = &self.tokens {
            if let Some(allowed) = grpc_allowed(req.uri().path()) {
                let header = req
                    .headers()
                    .get(axum::http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                match tokens.check(header, allowed) {
                    Ok(c) => caller = Some(c),
                    Err(denied) => {
                        let status = match denied {
                            Denied::Unauthenticated(m) => tonic::Status::unauthenticated(m),
                            Denied::PermissionDenied(m) => tonic::Status::permission_denied(m),
                        };
                        return Box::pin(async move { Ok(status.into_http()) });
                    }
                }
            }
        }
        // The handler runs inside this future (tonic does not spawn it), so the events it
        // records name the caller.
        let who = requester(caller.as_ref(), grpc_peer(&req));
        Box::pin(crate::events::REQUESTER.scope(who, self.inner.call(req)))
    }
}
