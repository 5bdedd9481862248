//! The address book: the people this user saved (`courier contacts`), by user id, with the
//! number and the name to show them by, in `contacts.json` (mode 0600) beside the credentials.
//! Read by every command that shows people; written by `courier contacts`.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub(crate) const FILE: &str = "contacts.json";

/// One saved person.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Contact {
    pub(crate) phone: String,
    #[serde(default)]
    pub(crate) name: Option<String>,
}

/// The saved people, by user id.
pub(crate) type Contacts = BTreeMap<String, Contact>;

pub(crate) fn load(store: &crate::Store) -> Result<Contacts> {
    Ok(store.read::<Contacts>(FILE)?.unwrap_or_default())
}
