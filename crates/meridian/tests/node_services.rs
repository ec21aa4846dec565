//! The services for database nodes on Meridian's gRPC port, against real servers on
//! loopback: elections with leases and terms (win, observe, lapse, take over, resign), the
//! namespaced KV store (semantics, isolation, limits, bad input), durability across a
//! restart, and a Meridian leader failover on etcd.

mod common;

use common::{eventually, free_port, memory_config, redb_config, start};
use meridian_client::{ClientError, Election, ElectionConfig, KvExpect, MetaClient};
use meridian_proto as pb;
use meridian_server::{RunningServer, ServerConfig};
use std::time::{Duration, Instant};
use tonic::Code;

async fn client_of(server: &RunningServer, cluster: &str) -> MetaClient {
    MetaClient::connect(&[server.grpc_addr.to_string()], cluster)
        .await
        .expect("client connects")
}

fn code(r: Result<impl std::fmt::Debug, ClientError>) -> (Code, String) {
    match r {
        Err(ClientError::Status(s)) => (s.code(), s.message().to_string()),
        other => panic!("expected an error status, got {other:?}"),
    }
}

fn leader_of(r: &pb::CampaignResponse) -> &pb::ElectionLeader {
    r.leader.as_ref().expect("a campaign answer names a leader")
}

/// Campaigns as `candidate` until it wins; returns the winning answer.
async fn campaign_until_elected(
    client: &MetaClient,
    election: &str,
    candidate: &str,
    ttl_ms: u64,
) -> pb::CampaignResponse {
    eventually(Duration::from_secs(20), || async {
        match client
            .campaign(election, candidate, candidate.as_bytes(), ttl_ms)
            .await
        {
            Ok(r) if r.elected => Some(r),
            _ => None,
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_candidates_wins_the_other_observes_and_takes_over_with_a_higher_term_after_the_lease(
) {
    let server = start(memory_config()).await;
    let client = client_of(&server, "default").await;
    let mut observed = client.observe_election("writer").await.unwrap();
    let first = observed.message().await.unwrap().expect("initial state");
    assert!(first.leader.is_none(), "{first:?}");
    assert_eq!(first.term, 0);

    let a = client
        .campaign("writer", "a", b"addr-a", 2000)
        .await
        .unwrap();
    assert!(a.elected && !a.renewed, "{a:?}");
    let term = leader_of(&a).term;
    assert_eq!(term, 1);
    let b = client
        .campaign("writer", "b", b"addr-b", 2000)
        .await
        .unwrap();
    assert!(!b.elected, "{b:?}");
    assert_eq!(leader_of(&b).candidate, "a");
    assert_eq!(leader_of(&b).value, b"addr-a");
    assert_eq!(leader_of(&b).term, term);

    let seen = observed.message().await.unwrap().expect("a change");
    let leader = seen.leader.expect("a leads");
    assert_eq!((leader.candidate.as_str(), leader.term), ("a", term));

    // The leader renews in its term; Leader says who leads.
    let renewed = client
        .campaign("writer", "a", b"addr-a", 2000)
        .await
        .unwrap();
    assert!(renewed.elected && renewed.renewed, "{renewed:?}");
    assert_eq!(leader_of(&renewed).term, term);
    let now = client.election_leader("writer").await.unwrap();
    assert_eq!(now.leader.as_ref().unwrap().candidate, "a");
    assert!(now.leader.as_ref().unwrap().remaining_ms <= 2000);

    // a stops renewing: b wins once a's lease ran out, in a higher term.
    let b = campaign_until_elected(&client, "writer", "b", 2000).await;
    assert!(leader_of(&b).term > term, "{b:?}");
    // The observer hears of it.
    let b_term = leader_of(&b).term;
    let mut last = None;
    while last.as_ref().is_none_or(|l: &pb::ElectionLeaderResponse| {
        l.leader.as_ref().is_none_or(|l| l.candidate != "b")
    }) {
        last = Some(observed.message().await.unwrap().expect("changes go on"));
    }
    assert_eq!(last.unwrap().term, b_term);
    // a, back, is told b leads.
    let a = client
        .campaign("writer", "a", b"addr-a", 2000)
        .await
        .unwrap();
    assert!(!a.elected);
    assert_eq!(leader_of(&a).candidate, "b");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_holder_in_its_term_may_resign_and_terms_go_on_after_a_resignation() {
    let server = start(memory_config()).await;
    let client = client_of(&server, "default").await;
    let a = client.campaign("e", "a", b"", 60_000).await.unwrap();
    let term = leader_of(&a).term;
    let (c, msg) = code(client.resign("e", "b", term).await);
    assert_eq!(c, Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("does not lead"), "{msg}");
    let (c, msg) = code(client.resign("e", "a", term + 1).await);
    assert_eq!(c, Code::FailedPrecondition, "{msg}");
    let still = client.election_leader("e").await.unwrap();
    assert_eq!(
        still.leader.unwrap().candidate,
        "a",
        "a refused resign changes nothing"
    );

    client.resign("e", "a", term).await.unwrap();
    let vacant = client.election_leader("e").await.unwrap();
    assert!(vacant.leader.is_none());
    assert_eq!(vacant.term, term, "the term stays");
    let (c, _) = code(client.resign("e", "a", term).await);
    assert_eq!(c, Code::FailedPrecondition, "nothing left to resign");
    let b = client.campaign("e", "b", b"", 60_000).await.unwrap();
    assert!(b.elected, "a resignation frees the election at once");
    assert_eq!(leader_of(&b).term, term + 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_election_helper_hands_over_only_after_the_old_leaders_lease_ended_on_its_own_clock() {
    let server = start(memory_config()).await;
    let client = client_of(&server, "default").await;
    let config = ElectionConfig::new(Duration::from_millis(2000));
    let a = Election::start(client.clone(), "primary", "a", b"a".to_vec(), config);
    let a_term = eventually(Duration::from_secs(10), || async { a.leading() }).await;
    let b = Election::start(client.clone(), "primary", "b", b"b".to_vec(), config);
    let mut b_changes = b.changes();
    // More than a ttl passes: a renews in its term, and b never leads meanwhile.
    let first = a.leadership().expect("a leads");
    let renewed = eventually(Duration::from_secs(10), || async {
        let l = a.leadership()?;
        (l.until > first.until + Duration::from_millis(2000)).then_some(l)
    })
    .await;
    assert_eq!(renewed.term, a_term);
    assert_eq!(b.leading(), None);
    assert_eq!(b.leadership(), None, "b lost every campaign");

    // a dies (no resignation): b leads, but only after a stopped acting as leader.
    let last = a.stop().await.expect("a led");
    b_changes
        .wait_for(|l| l.is_some())
        .await
        .expect("b's state is watched");
    let b_learned = Instant::now();
    assert!(
        b_learned >= last.until,
        "b leads {:?} before a's lease ended",
        last.until - b_learned
    );
    let b_term = b.leading().expect("b leads");
    assert!(b_term > a_term);

    // A resignation hands over at once: c wins with the next term.
    let c = Election::start(client.clone(), "primary", "c", b"c".to_vec(), config);
    b.resign().await.unwrap();
    let c_term = eventually(Duration::from_secs(10), || async { c.leading() }).await;
    assert_eq!(c_term, b_term + 1);
    c.stop().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_put_get_range_delete_and_compare_and_swap_in_isolated_namespaces() {
    let server = start(memory_config()).await;
    let client = client_of(&server, "default").await;
    assert!(client.kv_put("ns1", b"k", b"v1").await.unwrap());
    assert!(
        !client.kv_put("ns1", b"k", b"v2").await.unwrap(),
        "replaced"
    );
    assert_eq!(
        client.kv_get("ns1", b"k").await.unwrap(),
        Some(b"v2".to_vec())
    );
    assert_eq!(client.kv_get("ns1", b"missing").await.unwrap(), None);
    // Namespaces are isolated, even where one's name is a prefix of another's.
    assert_eq!(client.kv_get("ns", b"1/k").await.unwrap(), None);
    assert_eq!(client.kv_get("ns2", b"k").await.unwrap(), None);
    client.kv_put("ns2", b"k", b"other").await.unwrap();
    assert_eq!(
        client.kv_get("ns1", b"k").await.unwrap(),
        Some(b"v2".to_vec())
    );
    assert!(client.kv_delete("ns2", b"k").await.unwrap());
    assert_eq!(
        client.kv_get("ns1", b"k").await.unwrap(),
        Some(b"v2".to_vec())
    );

    // Range by prefix, page by page.
    for i in 0..5 {
        client
            .kv_put("ns1", format!("a/{i}").as_bytes(), &[i])
            .await
            .unwrap();
    }
    client.kv_put("ns1", b"b/0", b"x").await.unwrap();
    client.kv_put("ns1", b"a", b"not under a/").await.unwrap();
    let mut keys = Vec::new();
    let mut after = Vec::new();
    let mut pages = 0;
    loop {
        let page = client.kv_range("ns1", b"a/", &after, 2).await.unwrap();
        pages += 1;
        assert!(page.entries.len() <= 2);
        keys.extend(page.entries.iter().map(|e| e.key.clone()));
        if page.next_start_after.is_empty() {
            break;
        }
        after = page.next_start_after;
    }
    let want: Vec<Vec<u8>> = (0..5).map(|i| format!("a/{i}").into_bytes()).collect();
    assert_eq!(keys, want);
    assert_eq!(pages, 3);
    let all = client.kv_range("ns1", b"", b"", 0).await.unwrap();
    let listed: Vec<&[u8]> = all.entries.iter().map(|e| e.key.as_slice()).collect();
    assert_eq!(
        listed,
        [
            &b"a"[..],
            b"a/0",
            b"a/1",
            b"a/2",
            b"a/3",
            b"a/4",
            b"b/0",
            b"k"
        ],
        "ascending by key"
    );
    assert!(all.next_start_after.is_empty());
    assert_eq!(all.entries[1].value, vec![0u8], "values come with the keys");

    // Delete.
    assert!(client.kv_delete("ns1", b"b/0").await.unwrap());
    assert!(!client.kv_delete("ns1", b"b/0").await.unwrap());
    assert_eq!(client.kv_get("ns1", b"b/0").await.unwrap(), None);

    // Compare-and-swap.
    let r = client
        .kv_compare_and_swap("ns1", b"k", KvExpect::Absent, Some(b"new"))
        .await
        .unwrap();
    assert!(!r.succeeded && r.found);
    assert_eq!(r.value, b"v2", "a failed swap returns the current value");
    let r = client
        .kv_compare_and_swap("ns1", b"k", KvExpect::Value(b"v1"), Some(b"new"))
        .await
        .unwrap();
    assert!(!r.succeeded);
    assert_eq!(r.value, b"v2");
    assert_eq!(
        client.kv_get("ns1", b"k").await.unwrap(),
        Some(b"v2".to_vec())
    );
    let r = client
        .kv_compare_and_swap("ns1", b"k", KvExpect::Value(b"v2"), Some(b"v3"))
        .await
        .unwrap();
    assert!(r.succeeded && r.found);
    assert_eq!(r.value, b"v3");
    let r = client
        .kv_compare_and_swap("ns1", b"fresh", KvExpect::Absent, Some(b"1"))
        .await
        .unwrap();
    assert!(r.succeeded);
    let r = client
        .kv_compare_and_swap("ns1", b"k", KvExpect::Value(b"v3"), None)
        .await
        .unwrap();
    assert!(r.succeeded && !r.found, "swapped for a delete");
    assert_eq!(client.kv_get("ns1", b"k").await.unwrap(), None);
    let r = client
        .kv_compare_and_swap("ns1", b"k", KvExpect::Value(b"v3"), Some(b"x"))
        .await
        .unwrap();
    assert!(
        !r.succeeded && !r.found,
        "an absent key fails a value comparison"
    );
    server.shutdown().await;
}

fn small_limits() -> ServerConfig {
    let mut config = memory_config();
    config.node_services.max_key_bytes = 16;
    config.node_services.max_value_bytes = 32;
    config.node_services.max_keys_per_namespace = 3;
    config.node_services.max_bytes_per_namespace = 60;
    config.node_services.min_ttl_ms = 500;
    config.node_services.max_ttl_ms = 10_000;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_oversized_input_and_full_namespaces_get_their_codes_and_change_nothing() {
    let server = start(small_limits()).await;
    let client = client_of(&server, "default").await;
    for bad in ["", "a/b", "-x", "sp ace", &"n".repeat(129)] {
        let (c, msg) = code(client.kv_put(bad, b"k", b"v").await);
        assert_eq!(c, Code::InvalidArgument, "{bad:?}: {msg}");
        assert!(msg.contains("namespace"), "{msg}");
        let (c, msg) = code(client.campaign(bad, "a", b"", 1000).await);
        assert_eq!(c, Code::InvalidArgument, "{bad:?}: {msg}");
        assert!(msg.contains("election"), "{msg}");
    }
    let (c, msg) = code(client.campaign("e", "bad/candidate", b"", 1000).await);
    assert_eq!(c, Code::InvalidArgument, "{msg}");
    let (c, msg) = code(client.kv_put("ns", b"", b"v").await);
    assert_eq!(c, Code::InvalidArgument, "{msg}");
    assert!(msg.contains("key must not be empty"), "{msg}");
    let (c, msg) = code(client.kv_put("ns", &[b'k'; 17], b"v").await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(
        msg.contains("key is 17 bytes") && msg.contains("max_key_bytes"),
        "{msg}"
    );
    let (c, msg) = code(client.kv_put("ns", b"k", &[0; 33]).await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(msg.contains("value is 33 bytes"), "{msg}");
    let (c, msg) = code(client.campaign("e", "a", &[0; 33], 1000).await);
    assert_eq!(c, Code::InvalidArgument, "{msg}");
    for ttl in [0, 499, 10_001] {
        let (c, msg) = code(client.campaign("e", "a", b"", ttl).await);
        assert_eq!(c, Code::InvalidArgument, "{ttl}: {msg}");
        assert!(msg.contains("ttl_ms"), "{msg}");
    }
    let (c, msg) = code(client.kv_range("ns", b"", b"", 1001).await);
    assert_eq!(c, Code::InvalidArgument, "{msg}");
    assert_eq!(
        client.election_leader("e").await.unwrap().term,
        0,
        "refused campaigns elected nobody"
    );

    // Keys per namespace.
    for k in ["k1", "k2", "k3"] {
        client.kv_put("full", k.as_bytes(), b"v").await.unwrap();
    }
    let (c, msg) = code(client.kv_put("full", b"k4", b"v").await);
    assert_eq!(c, Code::ResourceExhausted, "{msg}");
    assert!(msg.contains("max_keys_per_namespace"), "{msg}");
    let (c, _) = code(
        client
            .kv_compare_and_swap("full", b"k4", KvExpect::Absent, Some(b"v"))
            .await,
    );
    assert_eq!(c, Code::ResourceExhausted);
    assert_eq!(client.kv_get("full", b"k4").await.unwrap(), None);
    assert_eq!(
        client
            .kv_range("full", b"", b"", 0)
            .await
            .unwrap()
            .entries
            .len(),
        3
    );
    // Replacing and deleting still work in a full namespace, and free room.
    assert!(!client.kv_put("full", b"k1", b"w").await.unwrap());
    assert!(client.kv_delete("full", b"k3").await.unwrap());
    assert!(client.kv_put("full", b"k4", b"v").await.unwrap());

    // Bytes per namespace (keys plus values): 2 + 32, then 2 + 32 more is over 60.
    client.kv_put("bytes", b"b1", &[1; 32]).await.unwrap();
    let (c, msg) = code(client.kv_put("bytes", b"b2", &[2; 32]).await);
    assert_eq!(c, Code::ResourceExhausted, "{msg}");
    assert!(msg.contains("max_bytes_per_namespace"), "{msg}");
    assert_eq!(client.kv_get("bytes", b"b2").await.unwrap(), None);
    client.kv_put("bytes", b"b2", &[2; 20]).await.unwrap();

    // An unknown cluster.
    let elsewhere = client_of(&server, "nope").await;
    let (c, msg) = code(elsewhere.kv_get("ns", b"k").await);
    assert_eq!(c, Code::NotFound, "{msg}");
    let (c, _) = code(elsewhere.campaign("e", "a", b"", 1000).await);
    assert_eq!(c, Code::NotFound);
    let (c, _) = code(elsewhere.observe_election("e").await);
    assert_eq!(c, Code::NotFound);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_over_its_request_rate_is_refused_and_others_are_not() {
    let mut config = memory_config();
    // One token per 1000 s: the burst is all there is during the test.
    config.node_services.requests_per_second = 0.001;
    config.node_services.burst = 3;
    let server = start(config).await;
    let client = client_of(&server, "default").await;
    client.kv_put("busy", b"k", b"v").await.unwrap();
    client.kv_get("busy", b"k").await.unwrap();
    client.kv_get("busy", b"k").await.unwrap();
    let (c, msg) = code(client.kv_put("busy", b"k2", b"v").await);
    assert_eq!(c, Code::ResourceExhausted, "{msg}");
    assert!(msg.contains("request rate"), "{msg}");
    let (c, _) = code(client.kv_get("busy", b"k").await);
    assert_eq!(c, Code::ResourceExhausted);
    // Another namespace has its own bucket; the refused put wrote nothing.
    assert_eq!(
        client
            .kv_range("calm", b"", b"", 0)
            .await
            .unwrap()
            .entries
            .len(),
        0
    );
    client.kv_put("calm", b"k", b"v").await.unwrap();
    let busy = client.kv_range("calm", b"", b"", 0).await.unwrap();
    assert_eq!(busy.entries.len(), 1);
    // Elections have buckets of their own too.
    for _ in 0..3 {
        client.election_leader("e").await.unwrap();
    }
    let (c, _) = code(client.election_leader("e").await);
    assert_eq!(c, Code::ResourceExhausted);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_data_leaders_and_terms_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = redb_config(dir.path());
    let server = start(config.clone()).await;
    let client = client_of(&server, "default").await;
    client
        .kv_put("meta", b"schema/1", b"create table t")
        .await
        .unwrap();
    client
        .kv_put("meta", b"schema/2", b"alter table t")
        .await
        .unwrap();
    let a = client.campaign("long", "a", b"a", 60_000).await.unwrap();
    let long_term = leader_of(&a).term;
    let a = client.campaign("short", "a", b"a", 60_000).await.unwrap();
    client
        .resign("short", "a", leader_of(&a).term)
        .await
        .unwrap();
    let short_term = leader_of(&a).term;
    server.shutdown().await;

    let server = start(config.clone()).await;
    let client = client_of(&server, "default").await;
    let all = client.kv_range("meta", b"schema/", b"", 0).await.unwrap();
    let values: Vec<&[u8]> = all.entries.iter().map(|e| e.value.as_slice()).collect();
    assert_eq!(values, [&b"create table t"[..], b"alter table t"]);
    // The stored leader holds a fresh lease after the restart: b cannot take over, a
    // renews in its term.
    let b = client.campaign("long", "b", b"b", 60_000).await.unwrap();
    assert!(!b.elected, "{b:?}");
    assert_eq!(leader_of(&b).candidate, "a");
    let a = client.campaign("long", "a", b"a", 60_000).await.unwrap();
    assert!(a.renewed, "{a:?}");
    assert_eq!(leader_of(&a).term, long_term);
    // A resigned election's term goes on from where it was.
    let b = client.campaign("short", "b", b"b", 60_000).await.unwrap();
    assert!(b.elected);
    assert_eq!(leader_of(&b).term, short_term + 1);
    server.shutdown().await;
}

/// Server processes killed when the test ends, also when it fails.
struct Processes(Vec<std::process::Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

/// Two `meridian server` processes on one etcd: the election and the KV keep their data,
/// leaders and terms across a kill -9 of the Meridian leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn election_and_kv_keep_their_data_and_terms_across_a_meridian_leader_failover() {
    use meridian_store::etcd::LocalEtcd;
    let dir = tempfile::tempdir().unwrap();
    let etcd = LocalEtcd::start(1, dir.path()).await.unwrap();
    let endpoints = etcd.endpoints().join(",");
    let ports: Vec<(u16, u16)> = (0..2).map(|_| (free_port(), free_port())).collect();
    let mut servers = Processes(
        ports
            .iter()
            .enumerate()
            .map(|(i, (grpc, http))| {
                std::process::Command::new(env!("CARGO_BIN_EXE_meridian"))
                    .args(["server", "--store", "etcd", "--etcd-endpoints", &endpoints])
                    .args(["--name", &format!("m{i}")])
                    .args(["--grpc-addr", &format!("127.0.0.1:{grpc}")])
                    .args(["--http-addr", &format!("127.0.0.1:{http}")])
                    .env("RUST_LOG", "warn")
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .expect("server process starts")
            })
            .collect(),
    );
    let addrs: Vec<String> = ports
        .iter()
        .map(|(g, _)| format!("127.0.0.1:{g}"))
        .collect();
    let leader = eventually(Duration::from_secs(30), || {
        let addrs = addrs.clone();
        async move { meridian_client::find_leader(&addrs, None).await.ok() }
    })
    .await;
    let client = MetaClient::connect(&addrs, "default").await.unwrap();
    eventually(Duration::from_secs(20), || async {
        client.kv_put("ha", b"k", b"before").await.ok()
    })
    .await;
    let a = campaign_until_elected(&client, "ha-election", "a", 6000).await;
    let term = leader_of(&a).term;
    // A follower forwards both services to the leader, the Observe stream too.
    let follower = addrs
        .iter()
        .find(|a| **a != leader.addr)
        .expect("two servers");
    let via_follower = MetaClient::connect(std::slice::from_ref(follower), "default")
        .await
        .unwrap();
    assert_eq!(
        via_follower.kv_get("ha", b"k").await.unwrap(),
        Some(b"before".to_vec())
    );
    assert!(via_follower.kv_put("ha", b"forwarded", b"1").await.unwrap());
    let mut observed = via_follower.observe_election("ha-election").await.unwrap();
    let seen = observed.message().await.unwrap().expect("the state");
    assert_eq!(
        seen.leader.map(|l| (l.candidate, l.term)),
        Some(("a".into(), term))
    );
    drop(observed);

    // Kill -9 the Meridian leader; a keeps renewing through the takeover.
    let killed = addrs
        .iter()
        .position(|a| *a == leader.addr)
        .expect("a known leader");
    servers.0[killed].kill().unwrap();
    servers.0[killed].wait().unwrap();
    let renewed = eventually(Duration::from_secs(30), || async {
        let r = client.campaign("ha-election", "a", b"a", 6000).await.ok()?;
        let new_leader = meridian_client::find_leader(&addrs, None).await.ok()?;
        (new_leader.addr != leader.addr).then_some(r)
    })
    .await;
    assert!(renewed.elected && renewed.renewed, "{renewed:?}");
    assert_eq!(
        leader_of(&renewed).term,
        term,
        "the term survives the failover"
    );
    assert_eq!(
        client.kv_get("ha", b"k").await.unwrap(),
        Some(b"before".to_vec())
    );
    client.kv_put("ha", b"k2", b"after").await.unwrap();
    // a stops: b wins after a's lease, with the next term.
    let b = campaign_until_elected(&client, "ha-election", "b", 6000).await;
    assert_eq!(leader_of(&b).term, term + 1);
    let all = client.kv_range("ha", b"", b"", 0).await.unwrap();
    let keys: Vec<&[u8]> = all.entries.iter().map(|e| e.key.as_slice()).collect();
    assert_eq!(keys, [&b"forwarded"[..], b"k", b"k2"]);
    drop(servers);
}

/// An election service that elects everyone, but answers a campaign only after
/// [`SlowElections::DELAY`]: the answer arrives long after the request was sent.
struct SlowElections;

impl SlowElections {
    const DELAY: Duration = Duration::from_millis(300);
}

#[tonic::async_trait]
impl pb::election_service_server::ElectionService for SlowElections {
    async fn campaign(
        &self,
        request: tonic::Request<pb::CampaignRequest>,
    ) -> Result<tonic::Response<pb::CampaignResponse>, tonic::Status> {
        let r = request.into_inner();
        tokio::time::sleep(Self::DELAY).await;
        Ok(tonic::Response::new(pb::CampaignResponse {
            elected: true,
            renewed: false,
            leader: Some(pb::ElectionLeader {
                candidate: r.candidate,
                value: r.value,
                term: 1,
                ttl_ms: r.ttl_ms,
                remaining_ms: r.ttl_ms,
            }),
        }))
    }

    async fn leader(
        &self,
        _: tonic::Request<pb::ElectionLeaderRequest>,
    ) -> Result<tonic::Response<pb::ElectionLeaderResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("stub"))
    }

    type ObserveStream = tokio_stream::Empty<Result<pb::ElectionLeaderResponse, tonic::Status>>;

    async fn observe(
        &self,
        _: tonic::Request<pb::ElectionLeaderRequest>,
    ) -> Result<tonic::Response<Self::ObserveStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("stub"))
    }

    async fn resign(
        &self,
        _: tonic::Request<pb::ResignRequest>,
    ) -> Result<tonic::Response<pb::ResignResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("stub"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_election_helper_counts_its_lease_from_when_it_sent_the_campaign_not_from_the_answer() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stub = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(pb::election_service_server::ElectionServiceServer::new(
                SlowElections,
            ))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let client = MetaClient::connect(&[addr.to_string()], "default")
        .await
        .unwrap();
    let config = ElectionConfig::new(Duration::from_millis(2000));
    let usable = config.ttl - config.drift_margin;
    let election = Election::start(client, "e", "a", vec![], config);
    let mut changes = election.changes();
    changes.wait_for(|l| l.is_some()).await.unwrap();
    let answered = Instant::now();
    let lease = election.leadership().expect("elected");
    // The campaign was sent at least DELAY before its answer arrived (and before now).
    assert!(
        lease.until + SlowElections::DELAY <= answered + usable,
        "the lease runs {:?} past send time + ttl - drift margin",
        (lease.until + SlowElections::DELAY) - (answered + usable)
    );
    election.stop().await;
    stub.abort();
}
