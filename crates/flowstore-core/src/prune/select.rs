//! Which versions a retention policy keeps and which it deletes: pure, no storage access.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::storage::StoredVersion;

use super::RetentionPolicy;

/// Why a version stays or goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Kept: the newest version of its flow always stays.
    Newest,
    /// Kept: a protected reference names it.
    Protected,
    /// Kept: among the newest `--keep-last` versions of its flow.
    WithinKeepLast,
    /// Kept: stored more recently than `--older-than`.
    Recent,
    /// Kept: the storage does not say when it was stored, so its age is unknown.
    AgeUnknown,
    /// Deleted: every rule of the policy lets it go.
    Expired,
}

impl Reason {
    /// True for the reasons that keep a version.
    pub fn keeps(self) -> bool {
        self != Reason::Expired
    }

    /// A short phrase for tables: `newest`, `protected`, `within keep-last`, …
    pub fn phrase(self) -> &'static str {
        match self {
            Reason::Newest => "newest of its flow",
            Reason::Protected => "protected",
            Reason::WithinKeepLast => "within keep-last",
            Reason::Recent => "newer than older-than",
            Reason::AgeUnknown => "age unknown",
            Reason::Expired => "expired",
        }
    }
}

/// A listed version and the policy's verdict on it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    /// The version, as listed.
    #[serde(flatten)]
    pub version: StoredVersion,
    /// Why it stays or goes ([`Reason::keeps`]).
    pub reason: Reason,
}

/// Sorts `versions` into verdicts, newest first within each flow (flows by slug).
///
/// Per flow (the first key segment), newest first by storage time, then by key (timestamp
/// keys sort in time order): the newest always stays; a version whose location is in
/// `protected` stays; with `keep_last` the newest N stay; with `older_than` a version stored less
/// than that long before `now` stays, as does one whose time is unknown. What every given rule
/// lets go is [`Reason::Expired`].
pub fn select(
    versions: Vec<StoredVersion>,
    policy: &RetentionPolicy,
    protected: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> Vec<Verdict> {
    let mut by_flow: BTreeMap<String, Vec<StoredVersion>> = BTreeMap::new();
    for v in versions {
        by_flow.entry(v.slug.clone()).or_default().push(v);
    }
    let cutoff = policy
        .older_than
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .and_then(|d| now.checked_sub_signed(d));
    let mut out = Vec::new();
    for (_, mut versions) in by_flow {
        versions.sort_by(|a, b| {
            b.stored_at
                .cmp(&a.stored_at)
                .then_with(|| b.location.cmp(&a.location))
        });
        for (rank, version) in versions.into_iter().enumerate() {
            let reason = if rank == 0 {
                Reason::Newest
            } else if protected.contains(&version.location) {
                Reason::Protected
            } else if policy.keep_last.is_some_and(|n| rank < n) {
                Reason::WithinKeepLast
            } else {
                match (cutoff, version.stored_at) {
                    (None, _) => Reason::Expired,
                    (Some(_), None) => Reason::AgeUnknown,
                    (Some(cutoff), Some(at)) if at > cutoff => Reason::Recent,
                    (Some(_), Some(_)) => Reason::Expired,
                }
            };
            out.push(Verdict { version, reason });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn version(slug: &str, minutes_ago: i64, now: DateTime<Utc>) -> StoredVersion {
        let at = now - chrono::Duration::minutes(minutes_ago);
        StoredVersion {
            flow: Some(slug.to_string()),
            slug: slug.to_string(),
            location: crate::key::flow_key(slug, &at),
            size: Some(10),
            stored_at: Some(at),
            bundle: false,
        }
    }

    fn reasons(verdicts: &[Verdict]) -> Vec<(String, Reason)> {
        verdicts
            .iter()
            .map(|v| (v.version.slug.clone(), v.reason))
            .collect()
    }

    fn policy(keep_last: Option<usize>, older_than_min: Option<u64>) -> RetentionPolicy {
        RetentionPolicy {
            keep_last,
            older_than: older_than_min.map(|m| Duration::from_secs(m * 60)),
        }
    }

    #[test]
    fn keep_last_keeps_the_newest_n_of_each_flow() {
        let now = Utc::now();
        let vs = vec![
            version("a", 30, now),
            version("a", 10, now),
            version("b", 5, now),
            version("a", 20, now),
            version("a", 40, now),
        ];
        let got = select(vs, &policy(Some(2), None), &BTreeSet::new(), now);
        use Reason::*;
        assert_eq!(
            reasons(&got),
            [
                ("a".into(), Newest),
                ("a".into(), WithinKeepLast),
                ("a".into(), Expired),
                ("a".into(), Expired),
                ("b".into(), Newest),
            ]
        );
        // Newest first within the flow.
        assert!(got[0].version.stored_at > got[1].version.stored_at);
        assert!(got[2].version.stored_at > got[3].version.stored_at);
    }

    #[test]
    fn older_than_deletes_only_what_is_older_and_never_the_newest() {
        let now = Utc::now();
        let vs = vec![
            version("a", 90, now),
            version("a", 61, now),
            version("a", 59, now),
            version("b", 500, now),
        ];
        let got = select(vs, &policy(None, Some(60)), &BTreeSet::new(), now);
        use Reason::*;
        assert_eq!(
            reasons(&got),
            [
                ("a".into(), Newest),
                ("a".into(), Expired),
                ("a".into(), Expired),
                ("b".into(), Newest),
            ]
        );
        let got = select(
            vec![version("a", 10, now), version("a", 30, now)],
            &policy(None, Some(60)),
            &BTreeSet::new(),
            now,
        );
        assert_eq!(got[1].reason, Recent);
    }

    #[test]
    fn both_rules_must_agree_and_protection_wins() {
        let now = Utc::now();
        let vs: Vec<_> = [10, 20, 30, 120, 130, 140]
            .iter()
            .map(|m| version("a", *m, now))
            .collect();
        let protected: BTreeSet<String> = [vs[4].location.clone()].into();
        let got = select(vs, &policy(Some(2), Some(60)), &protected, now);
        use Reason::*;
        let r: Vec<Reason> = got.iter().map(|v| v.reason).collect();
        assert_eq!(
            r,
            [Newest, WithinKeepLast, Recent, Expired, Protected, Expired]
        );
    }

    #[test]
    fn a_version_of_unknown_age_stays_under_older_than() {
        let now = Utc::now();
        let mut old = version("a", 500, now);
        old.stored_at = None;
        let got = select(
            vec![version("a", 1, now), old.clone()],
            &policy(None, Some(60)),
            &BTreeSet::new(),
            now,
        );
        assert_eq!(got[1].reason, Reason::AgeUnknown);
        // keep-last alone does not need the age.
        let got = select(
            vec![version("a", 1, now), old],
            &policy(Some(1), None),
            &BTreeSet::new(),
            now,
        );
        assert_eq!(got[1].reason, Reason::Expired);
    }
}
