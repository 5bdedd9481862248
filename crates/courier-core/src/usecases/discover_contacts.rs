//! `discoverContacts`: which numbers of an address book have an account, in one call, as
//! messengers do for address-book sync. It replaces one `lookupUser` per number (which is
//! limited per device and account for that reason) with a daily budget of calls per account.

use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode};
use crate::phone::PhoneNumber;
use crate::ports::{DeviceCredential, UserDirectory};
use crate::protocol::{DiscoverContactsParams, DiscoverContactsReply, DiscoveredContact};
use crate::rate_limit::Throttle;
use futures_util::{StreamExt, TryStreamExt, stream};

/// Numbers in one call.
pub const MAX_DISCOVER_PHONES: usize = 1000;
/// Lookups in flight at once.
const CONCURRENT_READS: usize = 16;

/// What `discoverContacts` needs.
pub struct Deps<'a> {
    /// Phone number -> account.
    pub accounts: &'a dyn UserDirectory,
    /// Calls per account and day (`None`: unlimited).
    pub budget: Option<Throttle<'a>>,
    /// The clock (a manual one in tests, to move time).
    pub clock: &'a dyn Clock,
}

/// The numbers among `phones` that have an account, with their user ids, in the order given
/// (each once). Numbers that are not E.164 are skipped: an address book holds all sorts.
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym()))]
pub async fn discover_contacts(
    deps: &Deps<'_>,
    who: &DeviceCredential,
    p: DiscoverContactsParams,
) -> Result<DiscoverContactsReply, ApiError> {
    if p.phones.len() > MAX_DISCOVER_PHONES {
        return Err(ApiError::new(
            ErrorCode::LimitExceeded,
            format!("phones: at most {MAX_DISCOVER_PHONES} per call"),
        ));
    }
    let mut phones: Vec<PhoneNumber> = Vec::with_capacity(p.phones.len());
    for phone in p.phones.iter().filter_map(|s| PhoneNumber::parse(s).ok()) {
        if !phones.contains(&phone) {
            phones.push(phone);
        }
    }
    // The budget is per account (all its devices), counted per call before anything is read.
    crate::rate_limit::take(
        deps.budget.as_ref(),
        &format!("discoverContacts#{}", who.user_id),
        "contact discoveries today",
        deps.clock.now(),
    )
    .await?;
    let found: Vec<DiscoveredContact> = stream::iter(phones)
        .map(|phone| async move {
            let user = deps.accounts.user_by_phone(&phone).await?;
            Ok::<_, ApiError>(user.map(|u| DiscoveredContact {
                phone: phone.as_str().to_owned(),
                user_id: u.to_string(),
            }))
        })
        .buffered(CONCURRENT_READS)
        .try_filter_map(|v| async move { Ok(v) })
        .try_collect()
        .await?;
    tracing::info!(found = found.len(), "contacts discovered");
    Ok(DiscoverContactsReply { registered: found })
}
