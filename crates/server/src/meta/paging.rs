//! Pages of long lists: a size, an opaque token to go on from, a name prefix.
//!
//! Every list of the catalog answers one page at a time, so a cluster of a million tables
//! never puts them all in one message (a gRPC client's default limit is 4 MiB). A page is
//! at most [`MAX_PAGE_SIZE`] entries, [`DEFAULT_PAGE_SIZE`] when the caller names no size.
//! The token is the key of the last entry returned, encoded; it stays valid across changes
//! (entries created or dropped meanwhile are seen or not, but none is listed twice and none
//! that existed throughout is skipped). Clients treat it as opaque.

use crate::error::{Result, ServerError};

/// Entries per page when the caller asks for no size.
pub const DEFAULT_PAGE_SIZE: usize = 1000;
/// The most entries one page holds; larger requests are answered with this many.
pub const MAX_PAGE_SIZE: usize = 10_000;

/// Token format version (a changed format is refused clearly, not misread).
const TOKEN_PREFIX: &str = "p1.";

/// One page request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Entries to return at most.
    pub size: usize,
    /// Go on after this key (from the token), if any.
    pub after: Option<Vec<String>>,
    /// Only names that start with this.
    pub prefix: String,
}

impl PageRequest {
    /// Checks a caller's page size (0: the default), token ("": the first page) and name
    /// prefix. A token this server did not make is refused with `InvalidArgument`.
    pub fn new(size: u64, token: &str, prefix: &str) -> Result<Self> {
        let size = match size {
            0 => DEFAULT_PAGE_SIZE,
            n => usize::try_from(n)
                .unwrap_or(MAX_PAGE_SIZE)
                .min(MAX_PAGE_SIZE),
        };
        let after = if token.is_empty() {
            None
        } else {
            Some(decode_token(token)?)
        };
        Ok(Self {
            size,
            after,
            prefix: prefix.to_string(),
        })
    }
}

/// The token that goes on after the entry whose key parts are `key`.
pub fn encode_token(key: &[&str]) -> String {
    let parts: Vec<String> = key
        .iter()
        .map(|p| p.bytes().map(|b| format!("{b:02x}")).collect())
        .collect();
    format!("{TOKEN_PREFIX}{}", parts.join("."))
}

/// The key parts a token carries.
fn decode_token(token: &str) -> Result<Vec<String>> {
    let invalid = || {
        ServerError::InvalidArgument(format!(
            "invalid page token {token:?}: pass the next_page_token of the previous page unchanged, or none for the first page"
        ))
    };
    let body = token.strip_prefix(TOKEN_PREFIX).ok_or_else(invalid)?;
    body.split('.')
        .map(|part| {
            if part.len() % 2 != 0 {
                return Err(invalid());
            }
            let bytes = (0..part.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&part[i..i + 2], 16).map_err(|_| invalid()))
                .collect::<Result<Vec<u8>>>()?;
            String::from_utf8(bytes).map_err(|_| invalid())
        })
        .collect()
}

/// One page of a list and the token of the next ("" when this is the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The entries, in key order.
    pub items: Vec<T>,
    /// Pass it back for the next page; empty when there is none.
    pub next_page_token: String,
}

/// One page of a list ordered by numeric id (nodes, shards, operators): the entries after
/// the token's id, at most `req.size` of them. `items` may come in any order; the prefix
/// filter is the caller's (only some lists have names).
pub fn page_by_id<T>(
    items: impl IntoIterator<Item = (u64, T)>,
    req: &PageRequest,
) -> Result<Page<T>> {
    let after = match req.after.as_deref() {
        None => None,
        Some([id]) => Some(id.parse::<u64>().map_err(|_| {
            ServerError::InvalidArgument(format!(
                "invalid page token: {id:?} is not an id of this list; pass the next_page_token of the previous page unchanged"
            ))
        })?),
        Some(_) => {
            return Err(ServerError::InvalidArgument(
                "invalid page token: it belongs to another list; pass the next_page_token of the previous page unchanged".into(),
            ))
        }
    };
    let mut items: Vec<(u64, T)> = items
        .into_iter()
        .filter(|(id, _)| after.is_none_or(|a| *id > a))
        .collect();
    items.sort_by_key(|(id, _)| *id);
    let more = items.len() > req.size;
    items.truncate(req.size);
    let next_page_token = match items.last() {
        Some((id, _)) if more => encode_token(&[&id.to_string()]),
        _ => String::new(),
    };
    Ok(Page {
        items: items.into_iter().map(|(_, t)| t).collect(),
        next_page_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_lists_page_in_id_order_and_end_with_an_empty_token() {
        let items = [5u64, 1, 9, 3, 7].map(|id| (id, id * 10));
        let req = PageRequest::new(2, "", "").unwrap();
        let first = page_by_id(items, &req).unwrap();
        assert_eq!(first.items, vec![10, 30]);
        let req = PageRequest::new(2, &first.next_page_token, "").unwrap();
        let second = page_by_id(items, &req).unwrap();
        assert_eq!(second.items, vec![50, 70]);
        let req = PageRequest::new(2, &second.next_page_token, "").unwrap();
        let last = page_by_id(items, &req).unwrap();
        assert_eq!(
            (last.items, last.next_page_token),
            (vec![90], String::new())
        );
        // A table-list token is refused, not misread.
        let foreign = PageRequest::new(2, &encode_token(&["default", "public", "t"]), "").unwrap();
        assert!(page_by_id(items, &foreign).is_err());
    }

    #[test]
    fn tokens_round_trip_and_foreign_tokens_are_refused() {
        let token = encode_token(&["default", "public", "t.1"]);
        let req = PageRequest::new(5, &token, "").unwrap();
        assert_eq!(
            req.after,
            Some(vec!["default".into(), "public".into(), "t.1".into()])
        );
        for bad in ["x", "p1.zz", "p1.abc", "p2.00"] {
            let err = PageRequest::new(0, bad, "").unwrap_err();
            assert!(err.to_string().contains("invalid page token"), "{err}");
        }
    }

    #[test]
    fn sizes_default_and_are_capped() {
        assert_eq!(PageRequest::new(0, "", "").unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(PageRequest::new(7, "", "").unwrap().size, 7);
        assert_eq!(
            PageRequest::new(u64::MAX, "", "").unwrap().size,
            MAX_PAGE_SIZE
        );
    }
}
