//! Analytics: the figures operators read besides the health metrics. Daily and monthly active
//! users are counted from activity marks (a user's first `$connect` of a UTC day / month), the
//! median group size from a scheduled census of every group, and the delivery latency from
//! delivered acknowledgements. The functions turn what these return into metrics; nothing here
//! reveals who did what.

use crate::clock::Clock;
use crate::error::ApiError;
use crate::ids::UserId;
use crate::ports::{ActivityStore, FirstActivity, GroupStore};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Marks `user` active today (UTC): whether this is its first activity of the day and month.
pub async fn record_activity(
    store: &dyn ActivityStore,
    clock: &dyn Clock,
    user: &UserId,
) -> Result<FirstActivity, ApiError> {
    Ok(store.mark_active(user, clock.now().date_naive()).await?)
}

/// The member count of every group, largest first.
pub async fn group_census(groups: &dyn GroupStore) -> Result<Vec<u32>, ApiError> {
    let mut sizes = groups.group_sizes().await?;
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    Ok(sizes)
}

/// The median of `sizes` (the mean of the two middle values for an even count); `None` when
/// there are none.
pub fn median(sizes: &[u32]) -> Option<f64> {
    let mut v = sizes.to_vec();
    v.sort_unstable();
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(f64::from(v[n / 2])),
        _ => Some((f64::from(v[n / 2 - 1]) + f64::from(v[n / 2])) / 2.0),
    }
}

/// How long after the server stored a message (`sent_at`, RFC 3339) it was acknowledged at
/// `acked_at`; `None` if `sent_at` cannot be read. A clock step backwards gives zero.
pub fn latency(sent_at: &str, acked_at: DateTime<Utc>) -> Option<Duration> {
    let sent = DateTime::parse_from_rfc3339(sent_at)
        .ok()?
        .with_timezone(&Utc);
    Some((acked_at - sent).to_std().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Role;
    use crate::clock::ManualClock;
    use crate::memory::{MemoryConnections, MemorySessions};
    use crate::ports::{Group, GroupStore};
    use crate::{SessionId, UserId};
    use chrono::TimeZone;

    fn user(n: u32) -> UserId {
        UserId::from_trusted(format!("u{n}"))
    }

    #[tokio::test]
    async fn a_user_counts_once_a_day_and_once_a_month() {
        let store = MemoryConnections::default();
        let day1 = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 29, 8, 0, 0).unwrap());
        let a = user(1);
        let first = record_activity(&store, &day1, &a).await.unwrap();
        assert_eq!(
            first,
            FirstActivity {
                of_day: true,
                of_month: true
            }
        );
        let again = record_activity(&store, &day1, &a).await.unwrap();
        assert_eq!(
            again,
            FirstActivity::default(),
            "a second connect the same day"
        );
        // Another user the same day is counted on its own.
        let b = record_activity(&store, &day1, &user(2)).await.unwrap();
        assert!(b.of_day && b.of_month);
        let day2 = ManualClock::new(Utc.with_ymd_and_hms(2026, 11, 30, 23, 59, 0).unwrap());
        let next_day = record_activity(&store, &day2, &a).await.unwrap();
        assert_eq!(
            next_day,
            FirstActivity {
                of_day: true,
                of_month: false
            }
        );
        let december = ManualClock::new(Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 1).unwrap());
        let next_month = record_activity(&store, &december, &a).await.unwrap();
        assert_eq!(
            next_month,
            FirstActivity {
                of_day: true,
                of_month: true
            }
        );
    }

    #[tokio::test]
    async fn the_census_counts_every_groups_members() {
        let store = MemorySessions::default();
        assert!(group_census(&store).await.unwrap().is_empty());
        let at = Utc.with_ymd_and_hms(2026, 11, 29, 8, 0, 0).unwrap();
        for (g, size) in [(1, 3u32), (2, 10), (3, 2)] {
            let members: Vec<_> = (0..size)
                .map(|i| (user(100 * g + i), Role::Member))
                .collect();
            let group = Group {
                session_id: SessionId::from_trusted(format!("g{g}")),
                name: format!("group {g}"),
                description: String::new(),
                created_by: members[0].0.clone(),
                created_at: at,
                member_count: size,
            };
            store.create_group(&group, &members).await.unwrap();
        }
        let sizes = group_census(&store).await.unwrap();
        assert_eq!(sizes, vec![10, 3, 2]);
        assert_eq!(median(&sizes), Some(3.0));
    }

    #[test]
    fn medians_and_latencies() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[257]), Some(257.0));
        assert_eq!(median(&[2, 4, 10, 3]), Some(3.5));
        let acked = Utc.with_ymd_and_hms(2026, 11, 29, 8, 0, 1).unwrap();
        assert_eq!(
            latency("2026-11-29T08:00:00.250Z", acked),
            Some(Duration::from_millis(750))
        );
        assert_eq!(
            latency("2026-11-29T08:00:02.000Z", acked),
            Some(Duration::ZERO)
        );
        assert_eq!(latency("yesterday", acked), None);
    }
}
