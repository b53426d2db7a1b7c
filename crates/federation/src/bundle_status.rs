//! "Is federation working?" — the bundle part of a ClusterFederatedTrustDomain's status:
//! whether SPIRE holds the trust domain's bundle, its sequence number and authorities, and
//! when that last changed; and whether the `spire.spiffe.io/refresh-bundle` annotation
//! asks for a refresh that has not been made yet.

use scm_api::{ClusterFederatedTrustDomain, FederatedBundleStatus, REFRESH_BUNDLE_ANNOTATION, Time};
use scm_spire_api::FederatedBundle;

/// The bundle status from what SPIRE listed (`None`: it holds no bundle for the trust
/// domain) and the previous status. `lastChanged` moves to `now` when the bundle appears,
/// goes away, or changes sequence number or authorities, and is kept otherwise.
pub fn bundle_status(
    previous: Option<&FederatedBundleStatus>,
    listed: Option<&FederatedBundle>,
    now: &Time,
) -> FederatedBundleStatus {
    let count = |n: usize| Some(i64::try_from(n).unwrap_or(i64::MAX));
    let next = match listed {
        Some(b) => FederatedBundleStatus {
            present: true,
            sequence_number: Some(i64::try_from(b.sequence_number).unwrap_or(i64::MAX)),
            x509_authorities: count(b.x509_authorities),
            jwt_authorities: count(b.jwt_authorities),
            digest: b.digest.clone(),
            last_changed: None,
        },
        None => FederatedBundleStatus::default(),
    };
    let same = previous.is_some_and(|p| {
        p.present == next.present && p.sequence_number == next.sequence_number && p.digest == next.digest
    });
    let last_changed = match previous {
        Some(p) if same => p.last_changed.clone(),
        // Nothing seen before and nothing now: nothing changed.
        None if !next.present => None,
        _ => Some(now.clone()),
    };
    FederatedBundleStatus { last_changed, ..next }
}

/// The refresh the annotation asks for: its value, when it is not the request the status
/// already answered.
pub fn refresh_request(cr: &ClusterFederatedTrustDomain) -> Option<String> {
    let value = cr.metadata.annotations.as_ref()?.get(REFRESH_BUNDLE_ANNOTATION)?;
    if value.is_empty() {
        return None;
    }
    let answered = cr.status.as_ref().and_then(|s| s.last_refresh.as_ref()).map(|r| r.request.as_str());
    (answered != Some(value.as_str())).then(|| value.clone())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use scm_api::{BundleRefreshStatus, ClusterFederatedTrustDomainStatus};
    use scm_spiffe::TrustDomain;

    use super::*;

    fn at(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    fn listed(seq: u64) -> FederatedBundle {
        FederatedBundle {
            trust_domain: TrustDomain::parse("partner.org").unwrap(),
            sequence_number: seq,
            refresh_hint: Duration::ZERO,
            x509_authorities: 2,
            jwt_authorities: 1,
            digest: Some(format!("sha256:{seq}")),
        }
    }

    #[test]
    fn last_changed_moves_only_when_the_bundle_does() {
        let none = bundle_status(None, None, &at(1));
        assert_eq!(none, FederatedBundleStatus::default(), "absent and never seen");
        let first = bundle_status(Some(&none), Some(&listed(3)), &at(10));
        assert_eq!(
            first,
            FederatedBundleStatus {
                present: true,
                sequence_number: Some(3),
                x509_authorities: Some(2),
                jwt_authorities: Some(1),
                digest: Some("sha256:3".into()),
                last_changed: Some(at(10))
            }
        );
        let same = bundle_status(Some(&first), Some(&listed(3)), &at(20));
        assert_eq!(same.last_changed, Some(at(10)), "same sequence: unchanged");
        let rotated = bundle_status(Some(&same), Some(&listed(4)), &at(30));
        assert_eq!((rotated.sequence_number, rotated.last_changed.clone()), (Some(4), Some(at(30))));
        // A refresh that brings new authorities under the same sequence number (SPIRE does
        // not bump it for federated bundles).
        let mut refreshed = listed(4);
        refreshed.digest = Some("sha256:other".into());
        let refreshed = bundle_status(Some(&rotated), Some(&refreshed), &at(35));
        assert_eq!(refreshed.last_changed, Some(at(35)));
        let rotated = refreshed;
        let gone = bundle_status(Some(&rotated), None, &at(40));
        assert_eq!((gone.present, gone.last_changed), (false, Some(at(40))));
    }

    #[test]
    fn a_refresh_is_asked_for_once_per_annotation_value() {
        let mut cr = ClusterFederatedTrustDomain::new("p", Default::default());
        assert_eq!(refresh_request(&cr), None);
        cr.metadata.annotations = Some(BTreeMap::from([(REFRESH_BUNDLE_ANNOTATION.to_owned(), "1".to_owned())]));
        assert_eq!(refresh_request(&cr).as_deref(), Some("1"));
        cr.status = Some(ClusterFederatedTrustDomainStatus {
            last_refresh: Some(BundleRefreshStatus {
                request: "1".into(),
                result: "Refreshed".into(),
                message: None,
                time: at(5),
            }),
            ..Default::default()
        });
        assert_eq!(refresh_request(&cr), None, "answered");
        cr.metadata.annotations = Some(BTreeMap::from([(REFRESH_BUNDLE_ANNOTATION.to_owned(), "2".to_owned())]));
        assert_eq!(refresh_request(&cr).as_deref(), Some("2"), "a new value asks again");
    }
}
