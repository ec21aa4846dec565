//! Failure domains: which nodes fail together at the configured isolation level.
//!
//! Invariant 4 (DESIGN.md): replicas of one shard never share a failure domain when the
//! topology has enough domains; when it does not, placement degrades openly (a warning and a
//! violation count), never silently. [`violations`] is the one definition of "violation".

use meridian_model::{IsolationLevel, NodeId, NodeLabels};
use std::collections::HashMap;

/// The failure domain of a node at `level`, as a string key.
///
/// Empty labels count as one shared unknown domain (see `NodeLabels`), so an unlabelled
/// cluster under zone isolation has one zone and placement warns about it. Racks and hosts
/// are qualified by their parents, so `rack-1` in two zones are two racks.
pub fn domain_key(labels: &NodeLabels, node: NodeId, level: IsolationLevel) -> String {
    match level {
        IsolationLevel::Zone => labels.zone.clone(),
        IsolationLevel::Rack => format!("{}/{}", labels.zone, labels.rack),
        IsolationLevel::Host => format!("{}/{}/{}", labels.zone, labels.rack, labels.host),
        IsolationLevel::Node => node.to_string(),
    }
}

/// Dense indices for the failure domains of a set of nodes, so hot loops compare integers.
#[derive(Debug, Clone)]
pub struct IsolationDomains {
    level: IsolationLevel,
    keys: Vec<String>,
    by_key: HashMap<String, usize>,
}

impl IsolationDomains {
    /// An empty table for one isolation level.
    pub fn new(level: IsolationLevel) -> Self {
        Self {
            level,
            keys: Vec::new(),
            by_key: HashMap::new(),
        }
    }

    /// The isolation level the table was built for.
    pub fn level(&self) -> IsolationLevel {
        self.level
    }

    /// The dense index of `node`'s domain, allocating one for a domain not seen before.
    pub fn intern(&mut self, labels: &NodeLabels, node: NodeId) -> usize {
        let key = domain_key(labels, node, self.level);
        if let Some(&i) = self.by_key.get(&key) {
            return i;
        }
        let i = self.keys.len();
        self.by_key.insert(key.clone(), i);
        self.keys.push(key);
        i
    }

    /// Number of distinct domains interned so far.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no domain was interned yet.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key of domain `index` (for warnings and reports).
    pub fn key(&self, index: usize) -> Option<&str> {
        self.keys.get(index).map(String::as_str)
    }
}

/// Number of distinct values among `domains`.
pub fn distinct(domains: &[usize]) -> usize {
    let mut d = domains.to_vec();
    d.sort_unstable();
    d.dedup();
    d.len()
}

/// Domain violations of one replica set: replicas that share a domain although a free
/// domain existed. `available` is how many domains can host replicas at all.
///
/// Three replicas in two zones count one violation when three zones are available, and
/// none when only two are: the topology, not placement, is short then.
pub fn violations(replica_domains: &[usize], available: usize) -> u32 {
    violations_of(replica_domains.iter().copied(), available)
}

/// [`violations`] over an iterator, without allocating for ordinary replica counts
/// (schedulers evaluate it for many candidate moves per tick).
pub fn violations_of(domains: impl IntoIterator<Item = usize>, available: usize) -> u32 {
    let mut buf = [0usize; 16];
    let mut n = 0;
    let mut spill = Vec::new();
    for d in domains {
        if n < buf.len() {
            buf[n] = d;
            n += 1;
        } else {
            spill.push(d);
        }
    }
    let (len, distinct) = if spill.is_empty() {
        let s = &mut buf[..n];
        s.sort_unstable();
        (n, 1 + s.windows(2).filter(|w| w[0] != w[1]).count())
    } else {
        spill.extend_from_slice(&buf);
        (spill.len(), distinct(&spill))
    };
    if len == 0 {
        return 0;
    }
    len.min(available).saturating_sub(distinct) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(zone: &str, rack: &str, host: &str) -> NodeLabels {
        NodeLabels {
            zone: zone.into(),
            rack: rack.into(),
            host: host.into(),
        }
    }

    #[test]
    fn racks_with_the_same_name_in_two_zones_are_two_domains() {
        let a = domain_key(&labels("z1", "r1", "h1"), NodeId(1), IsolationLevel::Rack);
        let b = domain_key(&labels("z2", "r1", "h1"), NodeId(2), IsolationLevel::Rack);
        assert_ne!(a, b);
    }

    #[test]
    fn violations_count_only_when_enough_domains_exist() {
        assert_eq!(violations(&[0, 0, 1], 3), 1);
        assert_eq!(violations(&[0, 0, 1], 2), 0);
        assert_eq!(violations(&[0, 1, 2], 3), 0);
        assert_eq!(violations(&[0, 0, 0], 3), 2);
    }
}
