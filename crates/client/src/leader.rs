//! Finding the Meridian leader among several servers, and channels that follow it.
//!
//! Every server answers `MembershipService.GetLeader`: the leader for itself, a follower
//! with the leader's address. [`find_leader`] asks every address at once and picks the
//! server that says it leads in the highest term. [`following_channel`] keeps a channel on
//! the leader and moves it when the leader changes (followers forward requests anyway, so
//! a channel on a live follower still works between two checks).

use crate::{connect_channel, ClientError, ClientTls};
use meridian_proto as pb;
use std::time::Duration;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};

/// How long one server may take to say who leads.
const ASK_TIMEOUT: Duration = Duration::from_millis(1000);
/// How often a [`following_channel`] checks who leads.
const FOLLOW_PERIOD: Duration = Duration::from_millis(300);

/// The leader found by [`find_leader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundLeader {
    /// The address to connect to (one of those given when the leader answered itself,
    /// else the address a follower named).
    pub addr: String,
    /// Its term (0 for a single server).
    pub term: u64,
}

/// `host:port` as an `https://` URL with TLS, `http://` without; a URL as it is.
pub(crate) fn url_of(addr: &str, tls: bool) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else if tls {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    }
}

/// An endpoint for `addr`, with `tls` when given.
pub(crate) fn tls_endpoint(addr: &str, tls: Option<&ClientTls>) -> Result<Endpoint, ClientError> {
    let endpoint = Endpoint::from_shared(url_of(addr, tls.is_some()))
        .map_err(|e| ClientError::InvalidAddress(format!("{addr}: {e}")))?;
    match tls {
        Some(tls) => endpoint
            .tls_config(tls.tonic_config())
            .map_err(|e| ClientError::Tls(format!("{addr}: {e}"))),
        None => Ok(endpoint),
    }
}

pub(crate) fn endpoint(addr: &str, tls: Option<&ClientTls>) -> Result<Endpoint, ClientError> {
    Ok(tls_endpoint(addr, tls)?
        .connect_timeout(Duration::from_secs(2))
        // A server that stops answering (paused, cut off) is noticed within ~2 s by its
        // silence to pings, and requests waiting on it fail instead of hanging.
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(1))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true))
}

/// One server's answer.
enum Answer {
    /// It answered GetLeader.
    Known(pb::GetLeaderResponse),
    /// It is an older server without the membership service: it is a single server, so it
    /// leads.
    Single,
}

/// One channel per server, connected on first use and kept: a follower that checks who
/// leads every 300 ms asks over the same connections each time.
struct Members {
    channels: Vec<(String, Channel)>,
    tls: Option<ClientTls>,
}

impl Members {
    fn new(addrs: &[String], tls: Option<&ClientTls>) -> Result<Self, ClientError> {
        let mut channels = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let channel = endpoint(addr, tls)?.timeout(ASK_TIMEOUT).connect_lazy();
            channels.push((addr.clone(), channel));
        }
        Ok(Self {
            channels,
            tls: tls.cloned(),
        })
    }
}

async fn ask(addr: &str, channel: Channel) -> Result<Answer, String> {
    let mut client = pb::membership_service_client::MembershipServiceClient::new(channel);
    match client.get_leader(pb::GetLeaderRequest {}).await {
        Ok(r) => Ok(Answer::Known(r.into_inner())),
        Err(s) if s.code() == tonic::Code::Unimplemented => Ok(Answer::Single),
        Err(s) => Err(format!("{addr}: {}: {}", s.code(), s.message())),
    }
}

/// Asks every address at once (over TLS when `tls` is given) who leads. Returns the first
/// server that says it leads; if none does, the leader a follower names (highest term);
/// fails if no server leads or none could be reached.
pub async fn find_leader(
    addrs: &[String],
    tls: Option<&ClientTls>,
) -> Result<FoundLeader, ClientError> {
    if addrs.is_empty() {
        return Err(ClientError::InvalidAddress("no address given".into()));
    }
    find_leader_among(&Members::new(addrs, tls)?).await
}

async fn find_leader_among(members: &Members) -> Result<FoundLeader, ClientError> {
    let mut pending: futures::stream::FuturesUnordered<_> = members
        .channels
        .iter()
        .map(|(a, channel)| async move {
            let answer = tokio::time::timeout(ASK_TIMEOUT * 2, ask(a, channel.clone()))
                .await
                .unwrap_or_else(|_| Err(format!("{a}: no answer within {:?}", ASK_TIMEOUT * 2)));
            (a.clone(), answer)
        })
        .collect();
    let (mut leader, mut hint, mut errors) = (None::<FoundLeader>, None::<FoundLeader>, vec![]);
    // The first server that says it leads wins: a deposed leader no longer says so (it
    // checks its own lease), and waiting for a paused server would only delay the node.
    while let Some((addr, answer)) = futures::StreamExt::next(&mut pending).await {
        match answer {
            Ok(Answer::Single) => {
                leader.get_or_insert(FoundLeader { addr, term: 0 });
            }
            Ok(Answer::Known(r)) if r.is_leader => {
                return Ok(FoundLeader { addr, term: r.term });
            }
            Ok(Answer::Known(r)) if !r.leader_grpc_addr.is_empty() => {
                if hint.as_ref().is_none_or(|h| r.term > h.term) {
                    hint = Some(FoundLeader {
                        addr: r.leader_grpc_addr,
                        term: r.term,
                    });
                }
            }
            Ok(Answer::Known(r)) => errors.push(format!(
                "{addr}: {} follows, and no leader is elected yet",
                r.server_name
            )),
            Err(e) => errors.push(e),
        }
    }
    match (leader, hint) {
        (Some(l), Some(h)) if h.term > l.term => Ok(h),
        (Some(l), _) => Ok(l),
        (None, Some(h)) => Ok(h),
        (None, None) => Err(ClientError::NoLeader(errors.join("; "))),
    }
}

/// A channel on the leader among `addrs`. With one address, simply a channel to it. With
/// several, a background task checks who leads every 300 ms and moves the channel to a new
/// leader; it ends when the channel (every clone) is dropped. Over TLS when `tls` is given.
pub async fn following_channel(
    addrs: &[String],
    tls: Option<&ClientTls>,
) -> Result<Channel, ClientError> {
    if addrs.len() <= 1 {
        return connect_channel(addrs, tls).await;
    }
    let members = Members::new(addrs, tls)?;
    let first = find_leader_among(&members).await?;
    let (channel, changes) = Channel::balance_channel::<String>(4);
    changes
        .send(Change::Insert(
            first.addr.clone(),
            endpoint(&first.addr, tls)?,
        ))
        .await
        .map_err(|_| ClientError::Connect("channel closed".into()))?;
    tokio::spawn(async move {
        let mut current = first;
        loop {
            tokio::time::sleep(FOLLOW_PERIOD).await;
            if changes.is_closed() {
                return;
            }
            let Ok(found) = find_leader_among(&members).await else {
                continue;
            };
            if found.addr == current.addr || found.term < current.term {
                continue;
            }
            let Ok(next) = endpoint(&found.addr, members.tls.as_ref()) else {
                continue;
            };
            tracing::info!(from = %current.addr, to = %found.addr, term = found.term, "Meridian leader changed");
            if changes
                .send(Change::Insert(found.addr.clone(), next))
                .await
                .is_err()
                || changes
                    .send(Change::Remove(current.addr.clone()))
                    .await
                    .is_err()
            {
                return;
            }
            current = found;
        }
    });
    Ok(channel)
}
