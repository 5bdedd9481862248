//! `SessionsTable`: `SESSION#<id>`/`META`, `SESSION#<id>`/`MEMBER#<userId>` (with the member's
//! receipt watermarks; indexed by user in `byUser`), and `IDEMP#<sender>#<clientMsgId>`/`IDEMP`
//! records written with each message (see [`super::DynamoMessages`]).

use super::{backend, codec};
use crate::capacity::{Recorded, TOTAL};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use chrono::{DateTime, Utc};
use courier_core::chat::{Membership, Receipt, SessionKind, Watermark};
use courier_core::error::PortError;
use courier_core::ports::SessionStore;
use courier_core::{SessionId, UserId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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

pub(crate) fn session_pk(s: &SessionId) -> String {
    format!("SESSION#{s}")
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
        };
        let items = vec![
            self.put(meta, Some("attribute_not_exists(pk)"))?,
            self.put(Self::member(session, a, SessionKind::Direct, at), None)?,
            self.put(Self::member(session, b, SessionKind::Direct, at), None)?,
        ];
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
            .return_consumed_capacity(TOTAL)
            .send()
            .await
            .recorded()
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
                .set_key(Some(key(session_pk(session), format!("MEMBER#{user}"))))
                .consistent_read(consistent)
                .return_consumed_capacity(TOTAL)
                .send()
                .await
                .recorded()
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
        let items: Vec<HashMap<String, AttributeValue>> = crate::capacity::query_all(
            self.client
                .query()
                .table_name(&self.table)
                .index_name(BY_USER_INDEX)
                .key_condition_expression("memberUserId = :u")
                .expression_attribute_values(":u", AttributeValue::S(user.to_string())),
        )
        .await
        .map_err(backend)?;
        items
            .into_iter()
            .map(|i| {
                serde_dynamo::from_item::<_, MemberItem>(i)
                    .map(Into::into)
                    .map_err(codec)
            })
            .collect()
    }

    async fn leave_all(&self, user: &UserId) -> Result<usize, PortError> {
        let memberships = self.sessions_of(user).await?;
        for m in &memberships {
            self.client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(key(
                    session_pk(&m.session_id),
                    format!("MEMBER#{user}"),
                )))
                .return_consumed_capacity(TOTAL)
                .send()
                .await
                .recorded()
                .map_err(backend)?;
        }
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
            .set_key(Some(key(session_pk(session), format!("MEMBER#{user}"))))
            .update_expression("SET #s = :s, #t = :t")
            .condition_expression("attribute_exists(pk) AND (attribute_not_exists(#s) OR #s < :s)")
            .expression_attribute_names("#s", seq_attr)
            .expression_attribute_names("#t", at_attr)
            .expression_attribute_values(":s", AttributeValue::N(seq.to_string()))
            .expression_attribute_values(":t", AttributeValue::S(courier_core::chat::timestamp(at)))
            .return_consumed_capacity(TOTAL)
            .send()
            .await
            .recorded();
        match res {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(backend(e)),
        }
    }
}
