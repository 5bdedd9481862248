use super::*;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-08T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn entry(session: &str, seq: u64, days_ago: i64, text: &str) -> HistoryEntry {
    HistoryEntry {
        session_id: session.into(),
        msg_id: format!("{session}.{seq}"),
        seq,
        sender: "u_alice".into(),
        sender_device: "d_a".into(),
        sent_at: (now() - chrono::Duration::days(days_ago))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        kind: "text".into(),
        text: Some(text.into()),
        payload: None,
        synced: false,
        expires_at: None,
    }
}

fn cipher(s: &Sealed) -> Vec<Vec<u8>> {
    s.parts.iter().map(|(c, _)| c.clone()).collect()
}

#[test]
fn a_bundle_holds_the_last_90_days_and_at_most_1000_messages_per_chat_newest_first_kept() {
    let mut all = Vec::new();
    // Chat a: 1,200 messages over the last 60 days (the oldest 200 are dropped).
    for seq in 1..=1200u64 {
        all.push(entry("a", seq, 60 - (seq as i64) / 20, "m"));
    }
    // Chat b: 10 messages, 5 of them older than 90 days.
    for seq in 1..=10u64 {
        let days = if seq <= 5 { 120 } else { 89 };
        all.push(entry("b", seq, days, "m"));
    }
    // Chat c: only an entry whose time cannot be read.
    let mut odd = entry("c", 1, 0, "m");
    odd.sent_at = "yesterday".into();
    all.push(odd);

    let chosen = select(&all, now(), &Limits::default());
    let a: Vec<u64> = chosen
        .iter()
        .filter(|e| e.session_id == "a")
        .map(|e| e.seq)
        .collect();
    assert_eq!(a.len(), 1000);
    assert_eq!((a[0], a[999]), (201, 1200), "the newest 1,000, in order");
    let b: Vec<u64> = chosen
        .iter()
        .filter(|e| e.session_id == "b")
        .map(|e| e.seq)
        .collect();
    assert_eq!(b, [6, 7, 8, 9, 10], "nothing older than 90 days");
    assert!(chosen.iter().all(|e| e.session_id != "c"));

    let sealed = seal("u_alice", &all, now(), &Limits::default()).unwrap();
    assert_eq!((sealed.messages, sealed.chats), (1005, 2));
    assert_eq!(sealed.parts.len(), 1);
}

#[test]
fn a_bundle_round_trips_in_parts_marked_synced_and_holds_no_plaintext() {
    let all: Vec<HistoryEntry> = (1..=40u64)
        .map(|seq| entry("s1", seq, 1, &format!("the secret plan number {seq}")))
        .collect();
    let limits = Limits {
        part_bytes: 1000,
        ..Limits::default()
    };
    let mut sealed = seal("u_alice", &all, now(), &limits).unwrap();
    assert!(sealed.parts.len() > 1, "cut into parts of 1,000 bytes");
    for (i, (c, p)) in sealed.parts.iter_mut().enumerate() {
        assert!(!c.windows(11).any(|w| w == b"secret plan"));
        assert!(p.size <= 1000);
        p.media_id = format!("m_{i}");
    }
    let offer = sealed.offer();
    assert_eq!((offer.messages, offer.chats), (40, 1));
    let text = serde_json::to_vec(&offer).unwrap();
    assert_eq!(HistoryOffer::parse(&text), Some(offer.clone()));
    assert!(!String::from_utf8_lossy(&text).contains("secret"));

    let got = open(&offer, "u_alice", &cipher(&sealed)).unwrap();
    assert_eq!(got.len(), 40);
    assert!(got.iter().all(|e| e.synced));
    let mut unmarked = got.clone();
    unmarked.iter_mut().for_each(|e| e.synced = false);
    assert_eq!(unmarked, all);
}

#[test]
fn a_tampered_reordered_foreign_or_oversized_bundle_is_refused() {
    let all = vec![entry("s1", 1, 1, "hello"), entry("s1", 2, 1, "world")];
    let limits = Limits {
        part_bytes: 200,
        ..Limits::default()
    };
    let sealed = seal("u_alice", &all, now(), &limits).unwrap();
    assert!(sealed.parts.len() >= 2);
    let offer = sealed.offer();
    let good = cipher(&sealed);
    assert!(open(&offer, "u_alice", &good).is_ok());

    // One flipped bit.
    let mut bad = good.clone();
    bad[0][5] ^= 1;
    assert!(matches!(
        open(&offer, "u_alice", &bad),
        Err(ClientError::Media(_))
    ));
    // The right ciphertext with a digest that does not match it.
    let mut wrong = offer.clone();
    wrong.parts[0].sha256 = "00".repeat(32);
    assert!(open(&wrong, "u_alice", &good).is_err());
    // Parts swapped, or one missing.
    let mut swapped = good.clone();
    swapped.swap(0, 1);
    assert!(open(&offer, "u_alice", &swapped).is_err());
    assert!(open(&offer, "u_alice", &good[..1]).is_err());
    // Another account's bundle, even intact.
    let err = open(&offer, "u_mallory", &good).unwrap_err();
    assert!(err.to_string().contains("another account"), "{err}");
    // Offers no sender makes.
    let mut many = offer.clone();
    many.parts = vec![offer.parts[0].clone(); MAX_PARTS + 1];
    assert!(many.check().is_err());
    let mut huge = offer.clone();
    huge.parts[0].size = MAX_FILE_BYTES + 1;
    assert!(huge.check().is_err());
    let mut none = offer.clone();
    none.parts.clear();
    assert!(open(&none, "u_alice", &[]).is_err());
    // Not an offer at all.
    assert_eq!(HistoryOffer::parse(br#"{"t":"room_key","v":1}"#), None);
    let mut v2 = serde_json::to_value(&offer).unwrap();
    v2["v"] = 2.into();
    assert_eq!(HistoryOffer::parse(v2.to_string().as_bytes()), None);
}

#[test]
fn a_bundle_too_large_for_its_parts_drops_the_oldest_messages() {
    let all: Vec<HistoryEntry> = (1..=100u64)
        .map(|seq| entry("s1", seq, 80 - seq as i64 / 2, &"x".repeat(100)))
        .collect();
    let limits = Limits {
        part_bytes: 2000,
        max_parts: 2,
        ..Limits::default()
    };
    let mut sealed = seal("u_alice", &all, now(), &limits).unwrap();
    assert!(sealed.parts.len() <= 2);
    assert!(sealed.messages > 0 && sealed.messages < 100);
    for (i, (_, p)) in sealed.parts.iter_mut().enumerate() {
        p.media_id = format!("m_{i}");
    }
    let got = open(&sealed.offer(), "u_alice", &cipher(&sealed)).unwrap();
    assert_eq!(got.len() as u64, sealed.messages);
    assert_eq!(got.last().unwrap().seq, 100, "the newest is kept");
    let first = got[0].seq;
    assert!(first > 1, "the oldest went first");
    assert!(got.iter().map(|e| e.seq).eq(first..=100));
}
