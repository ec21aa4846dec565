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

/// The (METHOD, path) pairs the router's source declares.
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

/// What is untyped in the 2xx answers of one operation: a JSON answer whose schema (or a
/// schema it refers to, at any depth) is an object with no properties, an array with no
/// items, or a schema with no type at all; a text answer (server-sent events, metrics,
/// JSON lines) whose schema is not a string; an answer with no content.
fn untyped_successes(doc: &serde_json::Value, op: &serde_json::Value) -> Vec<String> {
    let mut found = Vec::new();
    for (status, response) in op["responses"].as_object().expect("responses") {
        if !status.starts_with('2') {
            continue;
        }
        let Some(content) = response["content"].as_object().filter(|c| !c.is_empty()) else {
            found.push(format!("{status} has no content"));
            continue;
        };
        for (media, body) in content {
            let schema = &body["schema"];
            if media == "application/json" {
                let mut seen = BTreeSet::new();
                if let Some(what) = untyped_in(doc, schema, &mut seen) {
                    found.push(format!("{status} {media}: {what}"));
                }
            } else if schema["type"] != "string" {
                found.push(format!(
                    "{status} {media} is not described as text: {schema}"
                ));
            }
        }
    }
    found
}

/// The first untyped part of `schema` (see [`untyped_successes`]), following `$ref`s
/// (each once: schemas may be recursive).
fn untyped_in(
    doc: &serde_json::Value,
    schema: &serde_json::Value,
    seen: &mut BTreeSet<String>,
) -> Option<String> {
    if let Some(reference) = schema["$ref"].as_str() {
        if !seen.insert(reference.to_string()) {
            return None;
        }
        let name = reference.strip_prefix("#/components/schemas/")?;
        let target = &doc["components"]["schemas"][name];
        if target.is_null() {
            return Some(format!("{reference} is not in the document"));
        }
        return untyped_in(doc, target, seen).map(|what| format!("{name}: {what}"));
    }
    for combined in ["oneOf", "anyOf", "allOf"] {
        if let Some(parts) = schema[combined].as_array() {
            return parts.iter().find_map(|p| untyped_in(doc, p, seen));
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        serde_json::Value::String(t) => vec![t.as_str()],
        serde_json::Value::Array(ts) => ts.iter().filter_map(|t| t.as_str()).collect(),
        _ => return Some(format!("a schema without a type: {schema}")),
    };
    if types.contains(&"object") {
        let properties = schema["properties"].as_object();
        let values = schema["additionalProperties"]
            .as_object()
            .filter(|v| !v.is_empty());
        if properties.is_none_or(|p| p.is_empty()) && values.is_none() {
            return Some(format!("an object without properties: {schema}"));
        }
        let nested = properties.into_iter().flat_map(|p| p.values());
        for part in nested.chain(values.map(|_| &schema["additionalProperties"])) {
            if let Some(what) = untyped_in(doc, part, seen) {
                return Some(what);
            }
        }
    }
    if types.contains(&"array") {
        let prefix = schema["prefixItems"].as_array();
        if schema["items"].is_null() && prefix.is_none() {
            return Some(format!("an array without items: {schema}"));
        }
        let items = prefix.into_iter().flatten().chain(Some(&schema["items"]));
        for part in items.filter(|p| p.is_object()) {
            if let Some(what) = untyped_in(doc, part, seen) {
                return Some(what);
            }
        }
    }
    None
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
    let mut untyped = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            documented.insert((method.to_uppercase(), path.clone()));
            untyped.extend(
                untyped_successes(&doc, op)
                    .into_iter()
                    .map(|what| format!("{} {path}: {what}", method.to_uppercase())),
            );
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
    // A success answer documented as a bare object tells a client nothing: every one is
    // the schema of the type the handler serialises (`Json<T>` with `T: ToSchema`).
    assert!(
        untyped.is_empty(),
        "success answers without a real schema (body = Object, a serde_json::Value...):\n{}",
        untyped.join("\n")
    );

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
