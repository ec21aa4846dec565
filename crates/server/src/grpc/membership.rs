//! `MembershipService`: which server leads. The leader (or a single server) answers for
//! itself; a follower answers from the election (see `crate::ha::follower`).

use crate::server::ServingTerm;
use meridian_proto as pb;
use tonic::{Request, Response, Status};

/// The leader's answer: "I lead, in this term".
pub struct LeaderMembership {
    term: ServingTerm,
}

impl LeaderMembership {
    /// The service for a server leading `term`.
    pub fn new(term: ServingTerm) -> Self {
        Self { term }
    }
}

#[tonic::async_trait]
impl pb::membership_service_server::MembershipService for LeaderMembership {
    async fn get_leader(
        &self,
        _: Request<pb::GetLeaderRequest>,
    ) -> Result<Response<pb::GetLeaderResponse>, Status> {
        let t = &self.term;
        Ok(Response::new(pb::GetLeaderResponse {
            is_leader: t.is_valid(),
            term: t.term,
            leader_grpc_addr: t.grpc_addr.clone(),
            leader_http_addr: t.http_addr.clone(),
            server_name: t.server_name.clone(),
        }))
    }
}
