//! `DynamoSessions` as a `GroupStore`: a group is created with its members (in several
//! transactions past 99), counts them, refuses a member past the limit even when adds race, keeps
//! roles and join points, and is gone (record and memberships) once deleted.

use crate::sessions::fixture;
use crate::support;
use chrono::Utc;
use courier_core::chat::{Receipt, Role, SessionKind};
use courier_core::ports::{Added, Group, GroupStore, SessionStore};
use courier_core::{SessionId, UserId};

fn group(id: &SessionId, by: &UserId) -> Group {
    Group {
        session_id: id.clone(),
        name: "friends".into(),
        description: "d".into(),
        created_by: by.clone(),
        created_at: Utc::now(),
        member_count: 0,
    }
}

fn group_id() -> SessionId {
    SessionId::from_trusted(format!("g_{}", uuid::Uuid::new_v4().simple()))
}

fn members(n: usize) -> Vec<(UserId, Role)> {
    (0..n)
        .map(|i| {
            let role = if i == 0 { Role::Admin } else { Role::Member };
            (UserId::generate(), role)
        })
        .collect()
}

#[tokio::test]
async fn a_group_of_257_is_created_counted_and_found_by_each_member() {
    let f = fixture().await;
    let id = group_id();
    let m = members(257);
    f.store
        .create_group(&group(&id, &m[0].0), &m)
        .await
        .unwrap();
    let g = f.store.group(&id).await.unwrap().expect("the record");
    assert_eq!((g.name.as_str(), g.member_count), ("friends", 257));
    let stored = f.store.members(&id).await.unwrap();
    assert_eq!(
        stored.len(),
        257,
        "written in six transactions of 49 members"
    );
    assert!(
        stored
            .iter()
            .all(|x| x.kind == SessionKind::Group && x.joined_seq == 0)
    );
    let admins: Vec<_> = stored.iter().filter(|x| x.role == Role::Admin).collect();
    assert_eq!(admins.len(), 1);
    assert_eq!(admins[0].user_id, m[0].0);
    // Each member finds it (through its `USER#` item and the index by user), with its role.
    let mine = f.store.sessions_of(&m[200].0).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0].session_id.clone(), mine[0].role),
        (id.clone(), Role::Member)
    );
    // The id is taken.
    assert!(
        f.store
            .create_group(&group(&id, &m[0].0), &m[..2])
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_to_a_group_one_short_of_the_limit_let_exactly_one_in() {
    let f = fixture().await;
    let id = group_id();
    let m = members(256);
    f.store
        .create_group(&group(&id, &m[0].0), &m)
        .await
        .unwrap();
    let newcomers: Vec<UserId> = (0..10).map(|_| UserId::generate()).collect();
    let tasks: Vec<_> = newcomers
        .iter()
        .map(|u| {
            let (store, id, u) = (f.store.clone(), id.clone(), u.clone());
            tokio::spawn(async move { store.add_member(&id, &u, 7, 257, Utc::now()).await })
        })
        .collect();
    let mut outcomes = vec![];
    for t in tasks {
        outcomes.push(t.await.unwrap().unwrap());
    }
    assert_eq!(
        outcomes.iter().filter(|o| **o == Added::Added).count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(outcomes.iter().filter(|o| **o == Added::Full).count(), 9);
    assert_eq!(f.store.group(&id).await.unwrap().unwrap().member_count, 257);
    assert_eq!(f.store.members(&id).await.unwrap().len(), 257);
    let i = outcomes.iter().position(|o| *o == Added::Added).unwrap();
    let joined = f
        .store
        .membership(&id, &newcomers[i])
        .await
        .unwrap()
        .unwrap();
    assert_eq!((joined.joined_seq, joined.role), (7, Role::Member));
    // Again: already a member, nothing changes.
    assert_eq!(
        f.store
            .add_member(&id, &newcomers[i], 9, 300, Utc::now())
            .await
            .unwrap(),
        Added::AlreadyMember
    );
}

#[tokio::test]
async fn remove_set_role_and_delete() {
    let f = fixture().await;
    let id = group_id();
    let m = members(3);
    f.store
        .create_group(&group(&id, &m[0].0), &m)
        .await
        .unwrap();
    assert!(f.store.remove_member(&id, &m[2].0).await.unwrap());
    assert!(
        !f.store.remove_member(&id, &m[2].0).await.unwrap(),
        "already gone"
    );
    assert_eq!(f.store.sessions_of(&m[2].0).await.unwrap(), Vec::new());
    assert_eq!(f.store.group(&id).await.unwrap().unwrap().member_count, 2);
    assert!(f.store.set_role(&id, &m[1].0, Role::Admin).await.unwrap());
    assert_eq!(
        f.store
            .membership(&id, &m[1].0)
            .await
            .unwrap()
            .unwrap()
            .role,
        Role::Admin
    );
    assert!(
        !f.store.set_role(&id, &m[2].0, Role::Admin).await.unwrap(),
        "not a member"
    );
    let left: Vec<UserId> = vec![m[0].0.clone(), m[1].0.clone()];
    f.store.delete_group(&id, &left).await.unwrap();
    assert_eq!(f.store.group(&id).await.unwrap(), None);
    assert!(f.store.members(&id).await.unwrap().is_empty());
    assert!(!f.store.exists(&id).await.unwrap());
    // Nothing of the group is left, its members' `USER#` items included.
    assert_eq!(support::scan(&f.client, &f.table).await, Vec::new());
    for (u, _) in &m {
        assert_eq!(f.store.sessions_of(u).await.unwrap(), Vec::new());
    }
    assert_eq!(
        f.store
            .add_member(&id, &UserId::generate(), 0, 257, Utc::now())
            .await
            .unwrap(),
        Added::NoGroup
    );
}

#[tokio::test]
async fn the_census_reads_every_groups_member_count_and_nothing_else() {
    let f = fixture().await;
    assert!(f.store.group_sizes().await.unwrap().is_empty());
    let mut expected = Vec::new();
    for n in [3usize, 120, 2] {
        let id = group_id();
        let m = members(n);
        f.store
            .create_group(&group(&id, &m[0].0), &m)
            .await
            .unwrap();
        if n == 3 {
            // A member leaves: the census sees the group as it is now.
            assert!(f.store.remove_member(&id, &m[2].0).await.unwrap());
            expected.push(2);
        } else {
            expected.push(n as u32);
        }
    }
    // A direct chat is not a group.
    let (a, b) = (UserId::generate(), UserId::generate());
    f.store
        .create_direct(
            &SessionId::from_trusted(format!("s_{}", uuid::Uuid::new_v4().simple())),
            &a,
            &b,
            Utc::now(),
        )
        .await
        .unwrap();
    let mut sizes = f.store.group_sizes().await.unwrap();
    sizes.sort_unstable();
    expected.sort_unstable();
    assert_eq!(sizes, expected);
}

#[tokio::test]
async fn a_late_member_cannot_move_a_watermark_over_messages_from_before_it_joined() {
    let f = fixture().await;
    let id = group_id();
    let m = members(2);
    f.store
        .create_group(&group(&id, &m[0].0), &m)
        .await
        .unwrap();
    let late = UserId::generate();
    assert_eq!(
        f.store
            .add_member(&id, &late, 5, 257, Utc::now())
            .await
            .unwrap(),
        Added::Added
    );
    for receipt in [Receipt::Delivered, Receipt::Read] {
        for seq in [1, 5] {
            assert!(
                !f.store
                    .advance(&id, &late, receipt, seq, Utc::now())
                    .await
                    .unwrap(),
                "{receipt:?} of seq {seq}, from before it joined at 5"
            );
        }
    }
    let w = f.store.membership(&id, &late).await.unwrap().unwrap();
    assert_eq!((w.delivered.seq, w.read.seq), (0, 0));
    // What came after it joined is its to acknowledge; the founders' watermarks start at 0.
    assert!(
        f.store
            .advance(&id, &late, Receipt::Read, 6, Utc::now())
            .await
            .unwrap()
    );
    assert!(
        f.store
            .advance(&id, &m[1].0, Receipt::Delivered, 1, Utc::now())
            .await
            .unwrap()
    );
}
