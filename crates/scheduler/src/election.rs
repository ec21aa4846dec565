//! Leader elections for database nodes (Meridian's `ElectionService`), pure: who wins a
//! campaign, when a lease runs out, who may resign. The server keeps one
//! [`ElectionState`] per election in memory, persists what [`CampaignDecision::Elected`]
//! says to persist, and measures time on its own monotonic clock (`now`, ms).
//!
//! ```text
//!                 campaign(c)                          campaign(c) before expiry: renewal
//!  vacant(t) ───────────────────> held(c, t+1) ─────┐  (same term, deadline now + ttl)
//!      ^   ^                         │   ^   ^      │
//!      │   │ resign(c, t+1)          │   │   └──────┘
//!      │   └─────────────────────────┘   │ campaign(d) before expiry: d loses
//!      │ now >= deadline (seen lazily)   │
//!      └─────────────────────────────────┘ campaign(d) after expiry: held(d, t+2)
//! ```
//!
//! The term only grows: a new leadership (another candidate, or the same one after its
//! lease ran out) takes `term + 1`. A state loaded from the store (after a restart or a
//! Meridian failover) gives its holder a full fresh ttl from the moment it was loaded: the
//! server that granted the old lease may have granted it just before it stopped, so the new
//! server can never let another candidate win earlier than the old one would have.

/// The current leader of an election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The candidate's identity.
    pub candidate: String,
    /// What it announces.
    pub value: Vec<u8>,
    /// The lease length it asked for (and was granted), ms.
    pub ttl_ms: u64,
    /// When its lease runs out, on the server's monotonic clock (ms). Not persisted.
    pub expires_at_ms: u64,
}

impl Holder {
    /// Whether the lease still runs at `now`.
    pub fn live_at(&self, now: u64) -> bool {
        now < self.expires_at_ms
    }

    /// How long the lease still runs at `now` (0 once it ran out).
    pub fn remaining_ms(&self, now: u64) -> u64 {
        self.expires_at_ms.saturating_sub(now)
    }
}

/// One election: its latest term and its holder, if any (possibly with an expired lease:
/// expiry is seen lazily, by [`ElectionState::leader`] and [`ElectionState::campaign`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElectionState {
    /// The latest term (0: never had a leader).
    pub term: u64,
    /// The latest holder, live or not.
    pub holder: Option<Holder>,
}

/// What a candidate asks for.
#[derive(Debug, Clone, Copy)]
pub struct Campaign<'a> {
    /// Its identity.
    pub candidate: &'a str,
    /// What it announces.
    pub value: &'a [u8],
    /// The lease length, ms.
    pub ttl_ms: u64,
}

/// The outcome of a [`Campaign`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CampaignDecision {
    /// The candidate leads in `next.term`.
    Elected {
        /// The state to adopt once persisted (if `persist`).
        next: ElectionState,
        /// It already led and renewed (same term).
        renewed: bool,
        /// The durable part (term, candidate, value, ttl) changed: write it to the store
        /// before answering (a pure renewal writes nothing).
        persist: bool,
    },
    /// Another candidate holds an unexpired lease.
    Lost {
        /// Who leads.
        leader: Holder,
        /// In which term.
        term: u64,
    },
}

/// Why a resignation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResignRefused {
    /// Nobody holds the election (never elected, or already resigned).
    #[error("nobody leads (term {term}); {candidate} at term {asked} holds nothing to resign")]
    Vacant {
        /// The latest term.
        term: u64,
        /// Who asked.
        candidate: String,
        /// The term it named.
        asked: u64,
    },
    /// Someone else, or the same candidate in another term, holds it.
    #[error("{candidate} at term {asked} does not lead: {holder} does, at term {term}")]
    NotHolder {
        /// The holder.
        holder: String,
        /// The current term.
        term: u64,
        /// Who asked.
        candidate: String,
        /// The term it named.
        asked: u64,
    },
}

impl ElectionState {
    /// A state loaded from the store at `now`: the stored holder, if any, gets a full fresh
    /// lease of its ttl from `now` (never shorter than what any earlier server granted).
    pub fn loaded(term: u64, holder: Option<(String, Vec<u8>, u64)>, now: u64) -> Self {
        Self {
            term,
            holder: holder.map(|(candidate, value, ttl_ms)| Holder {
                candidate,
                value,
                ttl_ms,
                expires_at_ms: now.saturating_add(ttl_ms),
            }),
        }
    }

    /// The leader at `now`: the holder while its lease runs.
    pub fn leader(&self, now: u64) -> Option<&Holder> {
        self.holder.as_ref().filter(|h| h.live_at(now))
    }

    /// Decides a campaign at `now`: a renewal if the candidate holds a live lease, a win
    /// with the next term if nobody does, else a loss naming the leader.
    pub fn campaign(&self, c: Campaign<'_>, now: u64) -> CampaignDecision {
        let holder = || Holder {
            candidate: c.candidate.to_string(),
            value: c.value.to_vec(),
            ttl_ms: c.ttl_ms,
            expires_at_ms: now.saturating_add(c.ttl_ms),
        };
        match self.leader(now) {
            Some(h) if h.candidate == c.candidate => {
                let persist = h.value != c.value || h.ttl_ms != c.ttl_ms;
                CampaignDecision::Elected {
                    next: ElectionState {
                        term: self.term,
                        holder: Some(holder()),
                    },
                    renewed: true,
                    persist,
                }
            }
            Some(h) => CampaignDecision::Lost {
                leader: h.clone(),
                term: self.term,
            },
            None => CampaignDecision::Elected {
                next: ElectionState {
                    term: self.term.saturating_add(1),
                    holder: Some(holder()),
                },
                renewed: false,
                persist: true,
            },
        }
    }

    /// Gives the election up: only `candidate` holding it in `term` may (an expired
    /// holder too, as long as nobody took over). The result is vacant at the same term.
    pub fn resign(&self, candidate: &str, term: u64) -> Result<ElectionState, ResignRefused> {
        match &self.holder {
            None => Err(ResignRefused::Vacant {
                term: self.term,
                candidate: candidate.to_string(),
                asked: term,
            }),
            Some(h) if h.candidate != candidate || self.term != term => {
                Err(ResignRefused::NotHolder {
                    holder: h.candidate.clone(),
                    term: self.term,
                    candidate: candidate.to_string(),
                    asked: term,
                })
            }
            Some(_) => Ok(ElectionState {
                term: self.term,
                holder: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(candidate: &str, ttl_ms: u64) -> Campaign<'_> {
        Campaign {
            candidate,
            value: candidate.as_bytes(),
            ttl_ms,
        }
    }

    fn elected(d: CampaignDecision) -> (ElectionState, bool, bool) {
        match d {
            CampaignDecision::Elected {
                next,
                renewed,
                persist,
            } => (next, renewed, persist),
            other => panic!("not elected: {other:?}"),
        }
    }

    #[test]
    fn the_first_candidate_wins_term_one_and_others_lose_to_it() {
        let s = ElectionState::default();
        let (s, renewed, persist) = elected(s.campaign(ask("a", 1000), 10));
        assert_eq!(s.term, 1);
        assert!(!renewed && persist);
        assert_eq!(s.leader(10).unwrap().expires_at_ms, 1010);
        match s.campaign(ask("b", 1000), 500) {
            CampaignDecision::Lost { leader, term } => {
                assert_eq!(leader.candidate, "a");
                assert_eq!(term, 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_leader_renews_in_its_term_without_a_write_unless_it_changes_value_or_ttl() {
        let (s, ..) = elected(ElectionState::default().campaign(ask("a", 1000), 0));
        let (s, renewed, persist) = elected(s.campaign(ask("a", 1000), 900));
        assert!(renewed && !persist);
        assert_eq!(s.term, 1);
        assert_eq!(s.leader(1899).unwrap().candidate, "a");
        let changed = Campaign {
            candidate: "a",
            value: b"new",
            ttl_ms: 1000,
        };
        let (s, renewed, persist) = elected(s.campaign(changed, 1000));
        assert!(renewed && persist);
        assert_eq!(s.holder.as_ref().unwrap().value, b"new");
        let (_, _, persist) = elected(s.campaign(ask("a", 2000), 1100));
        assert!(persist, "a new ttl is persisted");
    }

    #[test]
    fn an_unrenewed_lease_runs_out_and_the_next_winner_gets_a_higher_term() {
        let (s, ..) = elected(ElectionState::default().campaign(ask("a", 1000), 0));
        assert!(s.leader(999).is_some());
        assert!(s.leader(1000).is_none(), "the lease ends at its deadline");
        assert!(matches!(
            s.campaign(ask("b", 1000), 999),
            CampaignDecision::Lost { .. }
        ));
        let (s, renewed, _) = elected(s.campaign(ask("b", 1000), 1000));
        assert!(!renewed);
        assert_eq!(s.term, 2);
        // The old leader coming back after its lease ran out is a new leadership too.
        let (s, ..) = elected(s.campaign(ask("a", 1000), 5000));
        assert_eq!(s.term, 3);
        let (s, renewed, _) = elected(s.campaign(ask("a", 1000), 9000));
        assert!(!renewed, "a lapsed leader is not renewed in its old term");
        assert_eq!(s.term, 4);
    }

    #[test]
    fn only_the_holder_in_its_term_may_resign_and_the_term_survives() {
        let (s, ..) = elected(ElectionState::default().campaign(ask("a", 1000), 0));
        assert!(matches!(
            s.resign("b", 1),
            Err(ResignRefused::NotHolder { .. })
        ));
        assert!(matches!(
            s.resign("a", 7),
            Err(ResignRefused::NotHolder { .. })
        ));
        let vacant = s.resign("a", 1).unwrap();
        assert_eq!(vacant.term, 1);
        assert!(vacant.leader(1).is_none());
        assert!(matches!(
            vacant.resign("a", 1),
            Err(ResignRefused::Vacant { .. })
        ));
        let (s, ..) = elected(vacant.campaign(ask("b", 1000), 2));
        assert_eq!(s.term, 2, "terms never go back after a resignation");
    }

    #[test]
    fn a_loaded_holder_gets_a_full_fresh_lease_from_the_load() {
        let s = ElectionState::loaded(7, Some(("a".into(), b"x".to_vec(), 3000)), 100);
        assert_eq!(s.term, 7);
        assert_eq!(s.leader(3099).unwrap().candidate, "a");
        assert!(matches!(
            s.campaign(ask("b", 1000), 3099),
            CampaignDecision::Lost { .. }
        ));
        let (s, ..) = elected(s.campaign(ask("b", 1000), 3100));
        assert_eq!(s.term, 8);
        // The holder itself renews in its stored term.
        let s = ElectionState::loaded(7, Some(("a".into(), b"x".to_vec(), 3000)), 0);
        let (s, renewed, persist) = elected(s.campaign(
            Campaign {
                candidate: "a",
                value: b"x",
                ttl_ms: 3000,
            },
            10,
        ));
        assert!(renewed && !persist);
        assert_eq!(s.term, 7);
    }
}
