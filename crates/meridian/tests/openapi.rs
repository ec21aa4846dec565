//! The HTTP API's OpenAPI document (`GET /api/v1/openapi.json`): it names every route the
//! router serves, and a property-based run of schemathesis (from PyPI, installed by the
//! README's test command) against a live server with nodes finds no 5xx and no answer
//! that breaks the document's schemas.

mod common;

use common::*;
use meridian_model::{PartitionRule, TableName};
use std::collections::BTreeSet;
use std::path::Path;

/// The router's source: every `.route("PATH", get(..).post(..))` in the HTTP module.
const ROUTER_DIR: &str = "../server/src/http";

/// The (METHOD, path) pairs the router's source declares, the dashboard page aside.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(ROUTER_DIR);
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("the router's source") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        routes.extend(routes_in(&text));
    }
    routes.retain(|(_, p)| p != "/" && p != "/dashboard");
    routes
}

/// The routes of one file: after each `.route(`, its path literal and, up to the call's
/// closing parenthesis, each `get(` / `post(` / `put(` / `patch(` / `delete(`.
fn routes_in(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (start, _) in text.match_indices(".route(") {
        let rest = &text[start + ".route(".len()..];
        let open = rest.find('"').expect("a path literal");
        let close = open + 1 + rest[open + 1..].find('"').unwrap();
        let path = rest[open + 1..close].to_string();
        // The call's arguments end where the parentheses balance again.
        let mut depth = 1;
        let mut end = rest.len();
        for (i, ch) in rest.char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let args = &rest[close + 1..end];
        for method in ["get", "post", "put", "patch", "delete"] {
            let called = args.match_indices(&format!("{method}(")).any(|(i, _)| {
                i == 0
                    || !args.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && args.as_bytes()[i - 1] != b'_'
            });
            if called {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

async fn document(server: &meridian_server::RunningServer) -> serde_json::Value {
    let (status, doc) = http(
        reqwest::Method::GET,
        format!("http://{}/api/v1/openapi.json", server.http_addr),
        None,
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_names_every_route_the_router_serves() {
    let server = start(memory_config()).await;
    let doc = document(&server).await;
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            documented.insert((method.to_uppercase(), path.clone()));
            // Every operation says what its errors look like.
            for status in ["400", "404", "409", "412", "503", "default"] {
                assert_eq!(
                    op["responses"][status]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path}: {status}"
                );
            }
        }
    }
    let served = routes_in_source();
    // The parser itself found the routes (a change of style must not empty the list).
    assert!(served.len() >= 35, "{served:?}");
    assert!(served.contains(&(
        "PATCH".into(),
        "/api/v1/clusters/{cluster}/tables/{catalog}/{schema}/{table}".into()
    )));
    let undocumented: Vec<_> = served.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes without #[utoipa::path] in the OpenAPI document (crates/server/src/http/openapi.rs): {undocumented:?}"
    );
    let stale: Vec<_> = documented.difference(&served).collect();
    assert!(stale.is_empty(), "documented but not served: {stale:?}");

    // Open to all, like /health, also with tokens; errors keep the documented body, axum's
    // own rejections included.
    let (status, body) = http(
        reqwest::Method::DELETE,
        format!(
            "http://{}/api/v1/clusters/default/operators/not-a-number",
            server.http_addr
        ),
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_argument", "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let server = start(memory_config()).await;
    let nodes = start_nodes(&server, "st", 3, 3).await;
    shards_ready(&server, &nodes).await;
    let client = client(&server).await;
    for name in ["a", "b"] {
        client
            .create_table(
                &TableName::new("default", "public", name).unwrap(),
                &PartitionRule::None,
                false,
            )
            .await
            .unwrap();
    }

    let st = std::env::var("MERIDIAN_SCHEMATHESIS_BIN").unwrap_or_else(|_| "st".into());
    let url = format!("http://{}/api/v1/openapi.json", server.http_addr);
    // Cluster, catalog and schema fixed to ones that exist, and names of tables, nodes,
    // shards, schedulers and settings that exist most of the time: random names would stop
    // most requests at a 404 before the code under test.
    let base = format!("http://{}/api/v1/clusters/default", server.http_addr);
    let names = |v: &serde_json::Value, list: &str, field: &str| -> Vec<serde_json::Value> {
        v[list]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|x| x[field].clone())
            .collect()
    };
    let list = |path: &str| http(reqwest::Method::GET, format!("{base}/{path}"), None);
    let nodes_json = list("nodes").await.1;
    let mut node_names = names(&nodes_json, "nodes", "name");
    node_names.extend(names(&nodes_json, "nodes", "id"));
    let shard_ids = names(&list("shards").await.1, "shards", "id");
    let schedulers = names(&list("schedulers").await.1, "schedulers", "name");
    let settings = names(&list("config").await.1, "settings", "key");
    let dictionary = |values: &[serde_json::Value]| {
        serde_json::to_string(
            &values
                .iter()
                .map(|v| v.to_string().trim_matches('"').to_string())
                .collect::<Vec<_>>(),
        )
        .unwrap()
    };
    let shard_numbers = serde_json::to_string(&shard_ids).unwrap();
    let toml = format!(
        "[dictionaries.tables]\nvalues = [\"a\", \"b\"]\n\
         [dictionaries.nodes]\nvalues = {nodes}\n\
         [dictionaries.shards]\nvalues = {shard_numbers}\n\
         [dictionaries.schedulers]\nvalues = {schedulers}\n\
         [dictionaries.settings]\nvalues = {settings}\n\
         [parameters]\n\
         \"path.cluster\" = \"default\"\n\
         \"path.catalog\" = \"default\"\n\
         \"path.schema\" = \"public\"\n\
         \"path.table\" = {{ dictionary = \"tables\", probability = 0.7 }}\n\
         \"path.node\" = {{ dictionary = \"nodes\", probability = 0.7 }}\n\
         \"path.shard\" = {{ dictionary = \"shards\", probability = 0.7 }}\n\
         \"path.name\" = {{ dictionary = \"schedulers\", probability = 0.7 }}\n\
         \"path.key\" = {{ dictionary = \"settings\", probability = 0.7 }}\n\
         \"body.to\" = {{ dictionary = \"nodes\", probability = 0.7 }}\n\
         \"body.from\" = {{ dictionary = \"nodes\", probability = 0.7 }}\n\
         \"body.key\" = {{ dictionary = \"settings\", probability = 0.7 }}\n\
         \"body.with\" = {{ dictionary = \"shards\", probability = 0.7 }}\n",
        nodes = dictionary(&node_names),
        schedulers = dictionary(&schedulers),
        settings = dictionary(&settings),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(&config, &toml).unwrap();
    println!("{toml}");
    let config = config.to_str().unwrap().to_string();
    // 20 keeps the run within about a minute; set more for a deeper search.
    let examples = std::env::var("MERIDIAN_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "20".into());
    let args = [
        "--config-file",
        config.as_str(),
        "run",
        url.as_str(),
        "--checks",
        "not_a_server_error,response_schema_conformance,content_type_conformance",
        "--max-examples",
        examples.as_str(),
        // The event stream never ends: a request to it would only time out.
        "--exclude-path",
        "/api/v1/events/stream",
        "--request-timeout",
        "20",
        "--workers",
        "2",
        // Nothing left behind: no example database, no cache (it runs in `dir`).
        "--generation-database",
        "none",
        "--no-color",
    ];
    // CPython 3.11 (Debian's) can fail inside hypothesis with "AST constructor recursion
    // depth mismatch" while describing a strategy: a fault of the tool, not a finding, so
    // such a run (with no failure found) is tried again, twice at most.
    for attempt in 1..=3 {
        let out = tokio::process::Command::new(&st)
            .args(args)
            .current_dir(dir.path())
            .output()
            .await
            .unwrap_or_else(|e| {
                panic!("cannot run {st} ({e}): the README's test command (scripts/test.sh) installs schemathesis, or set MERIDIAN_SCHEMATHESIS_BIN")
            });
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{st} {}\n{said}", args.join(" "));
        if out.status.success() {
            break;
        }
        let tool_fault = said.contains("AST constructor recursion depth mismatch")
            && !said.contains("= FAILURES =");
        assert!(
            tool_fault && attempt < 3,
            "schemathesis found problems:\n{said}"
        );
    }
    drop(nodes);
}
