//! `SessionsTable`: `SESSION#<id>`/`META`, `SESSION#<id>`/`MEMBER#<userId>` (with the member's
//! receipt watermarks; indexed by user in `byUser`), `USER#<userId>`/`SESSION#<id>` (the same
//! membership seen from the user, written in the same transaction, so that it can be read
//! consistently), and `IDEMP#<sender>#<clientMsgId>`/`IDEMP` records written with each message
//! (see [`super::DynamoMessages`]).

use super::Conditional;
use super::{backend, codec};
use crate::capacity::{SendRecorded, scan_pages};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::{DateTime, Utc};
use courier_core::chat::{Membership, Receipt, Role, SessionKind, Watermark};
use courier_core::error::PortError;
use courier_core::ports::{Added, Group, GroupStore, SessionStore};
use courier_core::{SessionId, UserId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

mod groups;

/// The global secondary index by member.
pub const BY_USER_INDEX: &str = "byUser";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaItem {
    pk: String,
    sk: String,
    session_id: String,
    kind: SessionKind,
    created_at: DateTime<Utc>,
    // Groups only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    member_count: Option<u32>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MemberItem {
    pk: String,
    sk: String,
    member_user_id: String,
    session_id: String,
    kind: SessionKind,
    joined_at: DateTime<Utc>,
    #[serde(default)]
    joined_seq: u64,
    #[serde(default)]
    role: Role,
    #[serde(default)]
    delivered_seq: u64,
    #[serde(default)]
    delivered_at: Option<DateTime<Utc>>,
    #[serde(default)]
    read_seq: u64,
    #[serde(default)]
    read_at: Option<DateTime<Utc>>,
}

impl From<MemberItem> for Membership {
    fn from(m: MemberItem) -> Self {
        Membership {
            session_id: SessionId::from_trusted(m.session_id),
            kind: m.kind,
            user_id: UserId::from_trusted(m.member_user_id),
            joined_at: m.joined_at,
            joined_seq: m.joined_seq,
            role: m.role,
            delivered: Watermark {
                seq: m.delivered_seq,
                at: m.delivered_at,
            },
            read: Watermark {
                seq: m.read_seq,
                at: m.read_at,
            },
        }
    }
}

/// `USER#<userId>`/`SESSION#<sessionId>`: the user is a member of the session. It is written and
/// deleted in the same transaction as the member item. The `byUser` index is updated
/// asynchronously (on AWS it can miss a chat started a moment ago, see docs/local-cloud.md's GSI
/// lag); these items can be read with a consistent query, so a new chat is listed at once. They
/// carry no `memberUserId`, so they stay out of `byUser`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserSessionItem {
    pk: String,
    sk: String,
    session_id: String,
    kind: SessionKind,
}

pub(crate) fn session_pk(s: &SessionId) -> String {
    format!("SESSION#{s}")
}

fn user_pk(u: &UserId) -> String {
    format!("USER#{u}")
}

fn member_key(session: &SessionId, user: &UserId) -> HashMap<String, AttributeValue> {
    key(session_pk(session), format!("MEMBER#{user}"))
}

fn user_session_key(user: &UserId, session: &SessionId) -> HashMap<String, AttributeValue> {
    key(user_pk(user), format!("SESSION#{session}"))
}

fn key(pk: String, sk: String) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk)),
        ("sk".to_owned(), AttributeValue::S(sk)),
    ])
}

/// Sessions and memberships in DynamoDB.
#[derive(Clone)]
pub struct DynamoSessions {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoSessions {
    /// A repository over `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn put(
        &self,
        item: impl Serialize,
        condition: Option<&str>,
    ) -> Result<TransactWriteItem, PortError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(serde_dynamo::to_item(item).map_err(codec)?))
            .set_condition_expression(condition.map(str::to_owned))
            .build()
            .map_err(PortError::backend)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The two items of a membership: the member item (put on `condition`) and its
    /// `USER#`/`SESSION#` twin.
    fn join(
        &self,
        item: MemberItem,
        condition: Option<&str>,
    ) -> Result<[TransactWriteItem; 2], PortError> {
        let twin = UserSessionItem {
            pk: user_pk(&UserId::from_trusted(item.member_user_id.clone())),
            sk: format!("SESSION#{}", item.session_id),
            session_id: item.session_id.clone(),
            kind: item.kind,
        };
        Ok([self.put(item, condition)?, self.put(twin, None)?])
    }

    /// Deletes the `USER#`/`SESSION#` twin of a membership, in a transaction with its member item.
    fn leave(&self, session: &SessionId, user: &UserId) -> Result<TransactWriteItem, PortError> {
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.table)
            .set_key(Some(user_session_key(user, session)))
            .build()
            .map_err(PortError::backend)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    fn member(
        session: &SessionId,
        user: &UserId,
        kind: SessionKind,
        at: DateTime<Utc>,
    ) -> MemberItem {
        MemberItem {
            pk: session_pk(session),
            sk: format!("MEMBER#{user}"),
            member_user_id: user.to_string(),
            session_id: session.to_string(),
            kind,
            joined_at: at,
            joined_seq: 0,
            role: Role::Member,
            delivered_seq: 0,
            delivered_at: None,
            read_seq: 0,
            read_at: None,
        }
    }
}

#[async_trait]
impl SessionStore for DynamoSessions {
    async fn create_direct(
        &self,
        session: &SessionId,
        a: &UserId,
        b: &UserId,
        at: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        let meta = MetaItem {
            pk: session_pk(session),
            sk: "META".into(),
            session_id: session.to_string(),
            kind: SessionKind::Direct,
            created_at: at,
            name: None,
            description: None,
            created_by: None,
            member_count: None,
        };
        let mut items = vec![self.put(meta, Some("attribute_not_exists(pk)"))?];
        for user in [a, b] {
            items.extend(self.join(Self::member(session, user, SessionKind::Direct, at), None)?);
        }
        match super::transact(&self.client, items).await {
            Ok(()) => Ok(true),
            Err(PortError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn exists(&self, session: &SessionId) -> Result<bool, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(session_pk(session), "META".into())))
            .projection_expression("pk")
            .consistent_read(true)
            .send_recorded()
            .await
            .map_err(backend)?;
        Ok(out.item.is_some())
    }

    async fn membership(
        &self,
        session: &SessionId,
        user: &UserId,
    ) -> Result<Option<Membership>, PortError> {
        // A direct session's two members never change once both items are written (in one
        // transaction), so an eventually consistent read (half the price) is enough, unless it
        // finds nothing: the session may be a moment old, so that is asked again consistently.
        // Group memberships change; they are always read consistently.
        let mut consistent = !session.is_direct();
        loop {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(member_key(session, user)))
                .consistent_read(consistent)
                .send_recorded()
                .await
                .map_err(backend)?;
            if out.item.is_none() && !consistent {
                consistent = true;
                continue;
            }
            return out
                .item
                .map(|i| {
                    serde_dynamo::from_item::<_, MemberItem>(i)
                        .map(Into::into)
                        .map_err(codec)
                })
                .transpose();
        }
    }

    async fn members(&self, session: &SessionId) -> Result<Vec<Membership>, PortError> {
        // As in `membership`: a direct session read eventually consistently must show both members.
        let query = |consistent: bool| {
            crate::capacity::query_all(
                self.client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("pk = :pk AND begins_with(sk, :m)")
                    .expression_attribute_values(":pk", AttributeValue::S(session_pk(session)))
                    .expression_attribute_values(":m", AttributeValue::S("MEMBER#".into()))
                    .consistent_read(consistent),
            )
        };
        let mut items: Vec<HashMap<String, AttributeValue>> = Vec::new();
        if session.is_direct() {
            items = query(false).await.map_err(backend)?;
        }
        if items.len() < 2 {
            items = query(true).await.map_err(backend)?;
        }
        items
            .into_iter()
            .map(|i| {
                serde_dynamo::from_item::<_, MemberItem>(i)
                    .map(Into::into)
                    .map_err(codec)
            })
            .collect()
    }

    async fn sessions_of(&self, user: &UserId) -> Result<Vec<Membership>, PortError> {
        // Which sessions: the user's `USER#` items, read consistently (a chat started a moment ago
        // is there), together with the `byUser` index, which also has memberships written before
        // those items existed. The index may still show a membership that has ended, and its copy
        // of the watermarks may be behind, so the member items themselves are then read
        // consistently: a session is listed only if its member item exists.
        let (twins, indexed) = futures_util::future::join(
            crate::capacity::query_all(
                self.client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("pk = :pk AND begins_with(sk, :s)")
                    .expression_attribute_values(":pk", AttributeValue::S(user_pk(user)))
                    .expression_attribute_values(":s", AttributeValue::S("SESSION#".into()))
                    .projection_expression("sessionId")
                    .consistent_read(true),
            ),
            crate::capacity::query_all(
                self.client
                    .query()
                    .table_name(&self.table)
                    .index_name(BY_USER_INDEX)
                    .key_condition_expression("memberUserId = :u")
                    .expression_attribute_values(":u", AttributeValue::S(user.to_string()))
                    .projection_expression("sessionId"),
            ),
        )
        .await;
        let sessions: std::collections::BTreeSet<String> = twins
            .map_err(backend)?
            .into_iter()
            .chain(indexed.map_err(backend)?)
            .filter_map(|mut i| match i.remove("sessionId") {
                Some(AttributeValue::S(s)) => Some(s),
                _ => None,
            })
            .collect();
        let keys = sessions
            .into_iter()
            .map(|s| member_key(&SessionId::from_trusted(s), user))
            .collect();
        let items = crate::capacity::batch_get_consistent(&self.client, &self.table, keys)
            .await
            .map_err(PortError::backend)?;
        let mut memberships = items
            .into_iter()
            .map(|i| {
                serde_dynamo::from_item::<_, MemberItem>(i)
                    .map(Into::<Membership>::into)
                    .map_err(codec)
            })
            .collect::<Result<Vec<_>, _>>()?;
        // BatchGetItem answers in no particular order; the index listed by session.
        memberships.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        Ok(memberships)
    }

    async fn leave_all(&self, user: &UserId) -> Result<usize, PortError> {
        let memberships = self.sessions_of(user).await?;
        let keys = memberships
            .iter()
            .flat_map(|m| {
                [
                    member_key(&m.session_id, user),
                    user_session_key(user, &m.session_id),
                ]
            })
            .collect();
        crate::capacity::batch_delete(&self.client, &self.table, keys)
            .await
            .map_err(PortError::backend)?;
        Ok(memberships.len())
    }

    async fn advance(
        &self,
        session: &SessionId,
        user: &UserId,
        receipt: Receipt,
        seq: u64,
        at: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        let (seq_attr, at_attr) = match receipt {
            Receipt::Delivered => ("deliveredSeq", "deliveredAt"),
            Receipt::Read => ("readSeq", "readAt"),
            Receipt::Sent => return Ok(false),
        };
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(member_key(session, user)))
            .update_expression("SET #s = :s, #t = :t")
            // A member's watermark covers only what it was there for: acknowledging a message
            // from before it joined changes nothing (and tells no one).
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(#s) OR #s < :s) \
                 AND (attribute_not_exists(joinedSeq) OR joinedSeq < :s)",
            )
            .expression_attribute_names("#s", seq_attr)
            .expression_attribute_names("#t", at_attr)
            .expression_attribute_values(":s", AttributeValue::N(seq.to_string()))
            .expression_attribute_values(":t", AttributeValue::S(courier_core::chat::timestamp(at)))
            .send_recorded()
            .await;
        match res.unless_condition_failed()? {
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }
}
