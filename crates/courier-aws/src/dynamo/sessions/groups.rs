//! Groups in the sessions table: creating one with its members in transactions of at most 49,
//! adding and removing members under the member cap, roles, and deleting a group.

use super::*;

/// Members written per transaction when creating a group: DynamoDB takes 100 items, one is the
/// group record, and each member is two (its member item and its `USER#` twin).
pub(super) const MEMBERS_PER_TRANSACTION: usize = 49;

impl DynamoSessions {
    pub(super) fn meta_key(session: &SessionId) -> HashMap<String, AttributeValue> {
        key(session_pk(session), "META".into())
    }

    pub(super) fn update_count(
        &self,
        session: &SessionId,
        by: i64,
        condition: &str,
    ) -> TransactWriteItem {
        let update = aws_sdk_dynamodb::types::Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::meta_key(session)))
            .update_expression("ADD memberCount :n")
            .condition_expression(condition)
            .expression_attribute_values(":n", AttributeValue::N(by.to_string()))
            .build()
            .expect("table, key and expression are set");
        TransactWriteItem::builder().update(update).build()
    }

    pub(super) fn group_member(
        session: &SessionId,
        user: &UserId,
        role: Role,
        seq: u64,
        at: DateTime<Utc>,
    ) -> MemberItem {
        MemberItem {
            joined_seq: seq,
            role,
            ..Self::member(session, user, SessionKind::Group, at)
        }
    }
}

pub(super) fn cancelled_codes<R>(
    e: &aws_sdk_dynamodb::error::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        R,
    >,
) -> Option<Vec<String>> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    match e.as_service_error() {
        Some(E::TransactionCanceledException(t)) => Some(
            t.cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_owned())
                .collect(),
        ),
        _ => None,
    }
}

#[async_trait]
impl GroupStore for DynamoSessions {
    async fn create_group(
        &self,
        group: &Group,
        members: &[(UserId, Role)],
    ) -> Result<(), PortError> {
        let s = &group.session_id;
        let mut chunks = members.chunks(MEMBERS_PER_TRANSACTION);
        let first = chunks.next().unwrap_or_default();
        let meta = MetaItem {
            pk: session_pk(s),
            sk: "META".into(),
            session_id: s.to_string(),
            kind: SessionKind::Group,
            created_at: group.created_at,
            name: Some(group.name.clone()),
            description: Some(group.description.clone()),
            created_by: Some(group.created_by.to_string()),
            member_count: Some(first.len() as u32),
        };
        let mut items = vec![self.put(meta, Some("attribute_not_exists(pk)"))?];
        for (u, role) in first {
            items.extend(self.join(Self::group_member(s, u, *role, 0, group.created_at), None)?);
        }
        crate::dynamo::transact(&self.client, items).await?;
        // Larger groups: each further transaction adds its members and counts them, so the count
        // is right even if this stops half-way (the creator then adds the rest).
        for chunk in chunks {
            let mut items = vec![self.update_count(s, chunk.len() as i64, "attribute_exists(pk)")];
            for (u, role) in chunk {
                items
                    .extend(self.join(Self::group_member(s, u, *role, 0, group.created_at), None)?);
            }
            crate::dynamo::transact(&self.client, items).await?;
        }
        Ok(())
    }

    async fn group_sizes(&self) -> Result<Vec<u32>, PortError> {
        // A scan of the META items of groups, reading only their member count; pages of 1 MB.
        let mut sizes = Vec::new();
        let mut pages = scan_pages(
            self.client
                .scan()
                .table_name(&self.table)
                .filter_expression("sk = :meta AND #k = :group")
                .projection_expression("memberCount")
                .expression_attribute_names("#k", "kind")
                .expression_attribute_values(":meta", AttributeValue::S("META".into()))
                .expression_attribute_values(":group", AttributeValue::S("group".into())),
        );
        while let Some(page) = pages.next().await {
            for item in page.map_err(backend)?.items.unwrap_or_default() {
                if let Some(AttributeValue::N(n)) = item.get("memberCount") {
                    sizes.push(n.parse().map_err(PortError::backend)?);
                }
            }
        }
        Ok(sizes)
    }

    async fn group(&self, session: &SessionId) -> Result<Option<Group>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::meta_key(session)))
            .consistent_read(true)
            .send_recorded()
            .await
            .map_err(backend)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let meta: MetaItem = serde_dynamo::from_item(item).map_err(codec)?;
        if meta.kind != SessionKind::Group {
            return Ok(None);
        }
        Ok(Some(Group {
            session_id: SessionId::from_trusted(meta.session_id),
            name: meta.name.unwrap_or_default(),
            description: meta.description.unwrap_or_default(),
            created_by: UserId::from_trusted(meta.created_by.unwrap_or_default()),
            created_at: meta.created_at,
            member_count: meta.member_count.unwrap_or_default(),
        }))
    }

    async fn add_member(
        &self,
        session: &SessionId,
        user: &UserId,
        joined_seq: u64,
        max: u32,
        at: DateTime<Utc>,
    ) -> Result<Added, PortError> {
        let count = aws_sdk_dynamodb::types::Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::meta_key(session)))
            .update_expression("ADD memberCount :one")
            .condition_expression("attribute_exists(pk) AND memberCount < :max")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":max", AttributeValue::N(max.to_string()))
            .build()
            .map_err(PortError::backend)?;
        let mut items = vec![TransactWriteItem::builder().update(count).build()];
        items.extend(self.join(
            Self::group_member(session, user, Role::Member, joined_seq, at),
            Some("attribute_not_exists(pk)"),
        )?);
        for attempt in 1..=6u64 {
            let res = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send_recorded()
                .await;
            let e = match res {
                Ok(_) => return Ok(Added::Added),
                Err(e) => e,
            };
            let Some(codes) = cancelled_codes(&e) else {
                return Err(backend(e));
            };
            let failed = |i: usize| codes.get(i).is_some_and(|c| c == "ConditionalCheckFailed");
            if failed(1) {
                return Ok(Added::AlreadyMember);
            }
            if failed(0) {
                return Ok(match self.group(session).await? {
                    None => Added::NoGroup,
                    Some(_) => Added::Full,
                });
            }
            // Contention with another change to the group record: try again.
            tokio::time::sleep(std::time::Duration::from_millis(
                10 * attempt + rand::random::<u64>() % 20,
            ))
            .await;
        }
        Err(PortError::Conflict)
    }

    async fn remove_member(&self, session: &SessionId, user: &UserId) -> Result<bool, PortError> {
        let delete = aws_sdk_dynamodb::types::Delete::builder()
            .table_name(&self.table)
            .set_key(Some(member_key(session, user)))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(PortError::backend)?;
        let delete = TransactWriteItem::builder().delete(delete).build();
        let items = vec![
            delete.clone(),
            self.update_count(session, -1, "attribute_exists(pk)"),
            self.leave(session, user)?,
        ];
        for attempt in 1..=6u64 {
            let res = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send_recorded()
                .await;
            let e = match res {
                Ok(_) => return Ok(true),
                Err(e) => e,
            };
            let Some(codes) = cancelled_codes(&e) else {
                return Err(backend(e));
            };
            let failed = |i: usize| codes.get(i).is_some_and(|c| c == "ConditionalCheckFailed");
            if failed(0) {
                return Ok(false);
            }
            if failed(1) {
                // No group record (it is being deleted): just the membership.
                return match crate::dynamo::transact(
                    &self.client,
                    vec![delete.clone(), self.leave(session, user)?],
                )
                .await
                {
                    Ok(()) => Ok(true),
                    Err(PortError::Conflict) => Ok(false),
                    Err(e) => Err(e),
                };
            }
            tokio::time::sleep(std::time::Duration::from_millis(
                10 * attempt + rand::random::<u64>() % 20,
            ))
            .await;
        }
        Err(PortError::Conflict)
    }

    async fn set_role(
        &self,
        session: &SessionId,
        user: &UserId,
        role: Role,
    ) -> Result<bool, PortError> {
        let role = serde_dynamo::to_attribute_value(role).map_err(codec)?;
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(member_key(session, user)))
            .update_expression("SET #r = :r")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#r", "role")
            .expression_attribute_values(":r", role)
            .send_recorded()
            .await;
        match res.unless_condition_failed()? {
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    async fn delete_group(&self, session: &SessionId, members: &[UserId]) -> Result<(), PortError> {
        // The record first: from then on every group operation answers NOT_FOUND.
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::meta_key(session)))
            .send_recorded()
            .await
            .map_err(backend)?;
        let keys: Vec<_> = members
            .iter()
            .flat_map(|u| [member_key(session, u), user_session_key(u, session)])
            .collect();
        crate::capacity::batch_delete(&self.client, &self.table, keys)
            .await
            .map_err(PortError::backend)
    }
}
