//! Status posts and their viewers.

use crate::error::PortError;
use crate::ids::UserId;
use crate::ports::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Status posts and views in maps, keyed like the table: (poster, status id) and
/// (poster, status id, viewer).
#[derive(Default)]
pub struct MemoryStatuses {
    statuses: Mutex<BTreeMap<(UserId, String), Status>>,
    views: Mutex<BTreeMap<(UserId, String, UserId), DateTime<Utc>>>,
}

#[async_trait]
impl StatusStore for MemoryStatuses {
    async fn put_status(&self, status: &Status) -> Result<(), PortError> {
        self.statuses.lock().unwrap().insert(
            (status.user_id.clone(), status.status_id.clone()),
            status.clone(),
        );
        Ok(())
    }

    async fn live_statuses(
        &self,
        user: &UserId,
        now: DateTime<Utc>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Status>, bool), PortError> {
        let map = self.statuses.lock().unwrap();
        let mut live = map
            .values()
            .filter(|s| &s.user_id == user && s.expires_at > now)
            .filter(|s| after.is_none_or(|a| s.status_id.as_str() > a));
        let page: Vec<Status> = live.by_ref().take(limit).cloned().collect();
        Ok((page, live.next().is_some()))
    }

    async fn status(
        &self,
        user: &UserId,
        status_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Status>, PortError> {
        Ok(self
            .statuses
            .lock()
            .unwrap()
            .get(&(user.clone(), status_id.to_owned()))
            .filter(|s| s.expires_at > now)
            .cloned())
    }

    async fn record_views(
        &self,
        poster: &UserId,
        statuses: &[Status],
        viewer: &UserId,
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let mut views = self.views.lock().unwrap();
        for s in statuses {
            views
                .entry((poster.clone(), s.status_id.clone(), viewer.clone()))
                .or_insert(at);
        }
        Ok(())
    }

    async fn viewers(
        &self,
        poster: &UserId,
        status_id: &str,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<(Vec<StatusView>, bool), PortError> {
        let views = self.views.lock().unwrap();
        let mut found = views
            .iter()
            .filter(|((p, s, v), _)| p == poster && s == status_id && after.is_none_or(|a| v > a))
            .map(|((_, _, v), at)| StatusView {
                viewer: v.clone(),
                viewed_at: *at,
            });
        let page: Vec<StatusView> = found.by_ref().take(limit).collect();
        Ok((page, found.next().is_some()))
    }

    async fn remove_status(&self, poster: &UserId, status_id: &str) -> Result<(), PortError> {
        self.statuses
            .lock()
            .unwrap()
            .remove(&(poster.clone(), status_id.to_owned()));
        self.views
            .lock()
            .unwrap()
            .retain(|(p, s, _), _| !(p == poster && s == status_id));
        Ok(())
    }

    async fn delete_statuses(&self, user: &UserId) -> Result<(), PortError> {
        self.statuses.lock().unwrap().retain(|(p, _), _| p != user);
        self.views.lock().unwrap().retain(|(p, _, _), _| p != user);
        Ok(())
    }
}
