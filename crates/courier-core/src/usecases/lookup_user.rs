//! `lookupUser`: the account behind a phone number, so a client can start a chat with it.

use crate::error::{ApiError, ErrorCode};
use crate::phone::PhoneNumber;
use crate::ports::UserDirectory;
use crate::protocol::LookupUserReply;

/// Finds the user id of `phone`.
pub async fn lookup_user(
    accounts: &dyn UserDirectory,
    phone: &str,
) -> Result<LookupUserReply, ApiError> {
    let phone = PhoneNumber::parse(phone).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let user = accounts
        .user_by_phone(&phone)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no Courier account has this number"))?;
    Ok(LookupUserReply {
        user_id: user.to_string(),
    })
}
