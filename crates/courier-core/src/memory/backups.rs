//! Backup records.

use crate::error::PortError;
use crate::ids::UserId;
use crate::ports::*;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;

/// Backup records in a map, per user.
#[derive(Default)]
pub struct MemoryBackups(Mutex<HashMap<UserId, Vec<BackupRecord>>>);

#[async_trait]
impl BackupStore for MemoryBackups {
    async fn put_backup(&self, backup: &BackupRecord) -> Result<(), PortError> {
        let mut map = self.0.lock().unwrap();
        let list = map.entry(backup.user_id.clone()).or_default();
        list.retain(|b| b.backup_id != backup.backup_id);
        list.push(backup.clone());
        Ok(())
    }

    async fn backups(&self, user: &UserId) -> Result<Vec<BackupRecord>, PortError> {
        let mut list = self
            .0
            .lock()
            .unwrap()
            .get(user)
            .cloned()
            .unwrap_or_default();
        list.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then(b.backup_id.cmp(&a.backup_id))
        });
        Ok(list)
    }

    async fn backup(
        &self,
        user: &UserId,
        backup_id: &str,
    ) -> Result<Option<BackupRecord>, PortError> {
        let map = self.0.lock().unwrap();
        Ok(map
            .get(user)
            .and_then(|l| l.iter().find(|b| b.backup_id == backup_id).cloned()))
    }

    async fn mark_complete(&self, user: &UserId, backup_id: &str) -> Result<(), PortError> {
        let mut map = self.0.lock().unwrap();
        if let Some(b) = map
            .get_mut(user)
            .and_then(|l| l.iter_mut().find(|b| b.backup_id == backup_id))
        {
            b.complete = true;
        }
        Ok(())
    }

    async fn delete_backup(&self, user: &UserId, backup_id: &str) -> Result<(), PortError> {
        if let Some(l) = self.0.lock().unwrap().get_mut(user) {
            l.retain(|b| b.backup_id != backup_id);
        }
        Ok(())
    }
}
