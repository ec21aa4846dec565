//! How ctl reaches Meridian: an HTTP client with the token and TLS of the flags, the
//! addresses of `--addr` tried in turn, paged lists read whole, and the exit codes that
//! tell a refusal from an unreachable server.

use super::CtlArgs;
use serde_json::{json, Value};
use std::process::ExitCode;

/// The beginning of the error when no server answered.
pub(super) const UNREACHABLE: &str = "cannot reach Meridian at";
/// Exit code: the server refused or failed the request (its message is printed).
const EXIT_REFUSED: u8 = 1;
/// Exit code: no server could be reached. (2 is a usage error, from the flag parser.)
const EXIT_UNREACHABLE: u8 = 3;
/// Exit code of `check` when some shard has a problem.
pub(super) const EXIT_PROBLEMS: u8 = 4;

/// What a command got. The outer error stops ctl at once (`error: ...` on stderr, exit
/// 1: something ctl itself cannot do, such as reading a TLS file); the inner one, a bad
/// flag value, a refusal or no server at all, is the command's answer: printed as JSON
/// with `--json`, with the exit code that says which ([`print_failure`]).
pub(super) type Answer = Result<Result<Value, String>, Box<dyn std::error::Error + Send + Sync>>;

/// The Meridian servers of `--addr`, as ctl's flags say to reach them.
pub(super) struct Http {
    pub(super) client: reqwest::Client,
    base: String,
    token: Option<String>,
    /// Whether addresses without a scheme mean `https://`.
    pub(super) tls: crate::cmd::ClientTlsArgs,
}

impl Http {
    /// The client for ctl's flags.
    pub(super) fn new(args: &CtlArgs) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self {
            // A server that accepts the connection and never answers must not hang ctl:
            // the next address (if any) is tried.
            client: args
                .tls
                .http_client()?
                .connect_timeout(std::time::Duration::from_secs(3))
                .timeout(std::time::Duration::from_secs(10))
                .default_headers(auth_headers(args.token.as_deref())?)
                .build()?,
            base: args.addr.clone(),
            token: args.token.clone(),
            tls: args.tls.clone(),
        })
    }

    /// The addresses of `--addr`, in order, as written.
    pub(super) fn addrs(&self) -> impl Iterator<Item = &str> {
        self.base
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
    }

    /// The `authorization` header of `--token`, if any.
    pub(super) fn auth_headers(&self) -> Result<reqwest::header::HeaderMap, String> {
        auth_headers(self.token.as_deref())
    }

    /// `GET path` with every page of the list under `key` followed and joined: the first
    /// page's answer, with `key` holding every entry.
    pub(super) async fn get_all(&self, path: &str, key: &str) -> Result<Value, String> {
        crate::cmd::get_all(path, key, |page| async move { self.get(&page).await }).await
    }

    /// `GET path`: see [`Http::call`].
    pub(super) async fn get(&self, path: &str) -> Result<Value, String> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// `method path` on the first server that answers (a follower redirects to the
    /// leader): its JSON answer, or its error as `STATUS CODE: message`.
    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut unreachable = Vec::new();
        let mut answered = None;
        for base in self.addrs() {
            let base = self.tls.url(base);
            let url = format!("{base}{path}");
            let mut req = self.client.request(method.clone(), &url);
            if let Some(b) = &body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(resp) => {
                    answered = Some(resp);
                    break;
                }
                Err(e) => unreachable.push(format!("{base}: {e}")),
            }
        }
        let resp = answered.ok_or_else(|| format!("{UNREACHABLE} {}", unreachable.join("; ")))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            let msg = value["error"]["message"]
                .as_str()
                .unwrap_or("no message")
                .to_string();
            let code = value["error"]["code"]
                .as_str()
                .unwrap_or("error")
                .to_string();
            Err(format!("{status} {code}: {msg}"))
        }
    }
}

/// The `authorization` header for `token`, if any.
fn auth_headers(token: Option<&str>) -> Result<reqwest::header::HeaderMap, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        let value = format!("Bearer {t}")
            .parse()
            .map_err(|_| "the token must be printable ASCII".to_string())?;
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(headers)
}

/// Prints a command's failure (as JSON with `--json`) and says how ctl exits: 3 when no
/// server answered, 1 when one refused.
pub(super) fn print_failure(error: &str, json: bool) -> ExitCode {
    if json {
        println!("{}", json!({ "error": error }));
    } else {
        eprintln!("error: {error}");
    }
    ExitCode::from(if error.starts_with(UNREACHABLE) {
        EXIT_UNREACHABLE
    } else {
        EXIT_REFUSED
    })
}
