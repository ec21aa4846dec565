//! How ctl prints for people: JSON values as table cells, aligned tables, and node names
//! where the API has node ids (`--json` keeps the ids, for scripts).

use serde_json::{json, Value};
use std::collections::HashMap;

/// A JSON value as a table cell: `-` for null, strings unquoted, lists comma-separated.
pub(super) fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Prints rows as an aligned table.
pub(super) fn print_table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!(
        "{}",
        line(headers.iter().map(|h| h.to_uppercase()).collect())
    );
    for r in rows {
        println!("{}", line(r));
    }
}

/// One row per entry of the list `list`: the cells at the JSON pointers `fields`.
pub(super) fn rows(list: &Value, fields: &[&str]) -> Vec<Vec<String>> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|item| {
                    fields
                        .iter()
                        .map(|f| cell(&item.pointer(f).cloned().unwrap_or(Value::Null)))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Replaces the node ids in `v` (a shard, an operator step, a position) with names, under
/// the keys that hold node ids, and `node-4` in the scheduler's texts.
pub(super) fn name_nodes(v: &mut Value, names: &HashMap<u64, String>) {
    const NODE_KEYS: [&str; 6] = ["leader", "followers", "node", "from", "to", "on"];
    // Texts written by the scheduler, which knows ids only (`node-4`).
    const TEXT_KEYS: [&str; 2] = ["reason", "message"];
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if NODE_KEYS.contains(&k.as_str()) {
                    rename(child, names);
                } else if let (true, Value::String(text)) =
                    (TEXT_KEYS.contains(&k.as_str()), &*child)
                {
                    let named =
                        meridian_model::with_node_names(text, |id| names.get(&id.0).cloned());
                    *child = json!(named);
                } else {
                    name_nodes(child, names);
                }
            }
        }
        Value::Array(list) => list.iter_mut().for_each(|c| name_nodes(c, names)),
        _ => {}
    }
}

fn rename(v: &mut Value, names: &HashMap<u64, String>) {
    match v {
        Value::Number(n) => {
            if let Some(name) = n.as_u64().and_then(|id| names.get(&id)) {
                *v = json!(name);
            }
        }
        Value::Array(list) => list.iter_mut().for_each(|c| rename(c, names)),
        // A node as an object (`{"node": 4, "endpoint", "zone"}`, as routes give it).
        Value::Object(_) => name_nodes(v, names),
        _ => {}
    }
}
