//! Every example in docs/protocol.md, run through the protocol's types: each request frame is
//! parsed into its action's params type, each reply into the action's reply type and each event
//! into `Event`, then written back; the JSON must come back the same. So the page, the server
//! (which parses the params and writes the replies and events with these types) and the SDK
//! (which writes its frames and reads replies with them) cannot drift apart unseen. And every
//! action the page lists, and every route of the WebSocket API, has an example.

use courier_core::protocol::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

fn page() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    std::fs::read_to_string(path).expect("docs/protocol.md")
}

/// The JSON lines of the page's `json` blocks, with their line numbers.
fn examples(page: &str) -> Vec<(usize, Value)> {
    let mut out = Vec::new();
    let mut inside = false;
    for (i, line) in page.lines().enumerate() {
        let t = line.trim();
        if t.starts_with("```") {
            inside = !inside && t == "```json";
            continue;
        }
        if inside && !t.is_empty() {
            let v: Value = serde_json::from_str(t)
                .unwrap_or_else(|e| panic!("docs/protocol.md:{}: not JSON ({e}): {t}", i + 1));
            out.push((i + 1, v));
        }
    }
    out
}

/// `v` read as `T` and written back.
fn through<T: Serialize + DeserializeOwned>(what: &str, v: &Value) -> Value {
    let typed: T =
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{what}: {e} in {v}"));
    serde_json::to_value(typed).expect("a protocol value is JSON")
}

/// The actions the server serves, each with its params and reply types.
fn round_trip(action: &str, params: &Value, reply: &Value) -> Option<(Value, Value)> {
    macro_rules! types {
        ($($name:literal => $p:ty, $r:ty;)*) => {
            match action {
                $($name => Some((
                    through::<$p>(&format!("{action} params"), params),
                    through::<$r>(&format!("{action} reply"), reply),
                )),)*
                _ => None,
            }
        };
    }
    types! {
        "lookupUser" => LookupUserParams, LookupUserReply;
        "discoverContacts" => DiscoverContactsParams, DiscoverContactsReply;
        "getSettings" => GetSettingsParams, SettingsReply;
        "updateSettings" => UpdateSettingsParams, courier_core::settings::Settings;
        "updateContacts" => UpdateContactsParams, ContactsCount;
        "getProfile" => GetProfileParams, Profile;
        "setRegistrationPin" => SetRegistrationPinParams, RegistrationPinResponse;
        "removeRegistrationPin" => RemoveRegistrationPinParams, RegistrationPinResponse;
        "checkRegistrationPin" => CheckRegistrationPinParams, CheckRegistrationPinResponse;
        "registerPushToken" => RegisterPushTokenParams, PushTokenReply;
        "deleteAccount" => DeleteAccountParams, AccountDeleted;
        "initiateDirectChatSession" => InitiateDirectChatParams, DirectChat;
        "listSessions" => ListSessionsParams, SessionsPage;
        "sendMessage" => SendMessageParams, SentMessage;
        "readNewMessages" => ReadNewMessagesParams, MessagesPage;
        "ackMessages" => AckMessagesParams, AckReply;
        "getMessageStatus" => GetMessageStatusParams, MessageStatus;
        "deleteMessage" => DeleteMessageParams, MessageDeleted;
        "setDisappearingTimer" => SetDisappearingTimerParams, DisappearingTimerSet;
        "blockUser" => BlockParams, BlockReply;
        "unblockUser" => BlockParams, BlockReply;
        "listBlocked" => ListBlockedParams, BlockedList;
        "reportUser" => ReportUserParams, ReportFiled;
        "sendTyping" => SendTypingParams, TypingSent;
        "initiateGroupChatSession" => InitiateGroupParams, GroupCreated;
        "getGroup" => GroupParams, GroupInfo;
        "addUserToGroup" => GroupMemberParams, MemberAdded;
        "removeUserFromGroup" => GroupMemberParams, MemberRemoved;
        "promoteUserToAdmin" => GroupMemberParams, MemberPromoted;
        "deleteGroup" => GroupParams, GroupDeleted;
        "approveDeviceLink" => ApproveDeviceLinkParams, LinkedDevice;
        "removeDevice" => RemoveDeviceParams, DeviceRemoved;
        "uploadKeys" => UploadKeysParams, UploadKeysReply;
        "claimKeys" => ClaimKeysParams, ClaimKeysReply;
        "listDevices" => ListDevicesParams, DeviceList;
        "sendToDevice" => SendToDeviceParams, SendToDeviceReply;
        "readDeviceMessages" => ReadDeviceMessagesParams, DeviceMessagesPage;
        "ackDeviceMessages" => AckDeviceMessagesParams, AckedDeviceMessages;
        "postStatus" => PostStatusParams, PostedStatus;
        "removeStatus" => RemoveStatusParams, RemovedStatus;
        "viewStatus" => ViewStatusParams, StatusesPage;
        "getStatusViewers" => GetStatusViewersParams, ViewersPage;
        "getStatusAudience" => GetStatusAudienceParams, AudiencePage;
        "createMediaUpload" => CreateMediaUploadParams, MediaUpload;
        "getMediaDownload" => GetMediaDownloadParams, MediaDownload;
        "createBackup" => CreateBackupParams, BackupUpload;
        "listBackups" => ListBackupsParams, BackupList;
        "getBackupDownload" => GetBackupDownloadParams, BackupDownload;
    }
}

/// The actions the WebSocket API routes (template.yaml's `RouteKey`s, `$connect` and the like
/// left out).
fn served_actions() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml");
    std::fs::read_to_string(path)
        .expect("template.yaml")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("RouteKey:"))
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.starts_with('$'))
        .collect()
}

fn without(v: &Value, keys: &[&str]) -> Value {
    let mut m: Map<String, Value> = v.as_object().cloned().unwrap_or_default();
    for k in keys {
        m.remove(*k);
    }
    Value::Object(m)
}

#[test]
fn every_example_of_the_protocol_page_reads_and_writes_back_the_same() {
    let page = page();
    let lines = examples(&page);
    assert!(lines.len() > 80, "only {} examples", lines.len());
    let mut pending: Option<(usize, String, Value)> = None;
    let mut actions = BTreeSet::new();
    let mut events = BTreeSet::new();
    for (line, v) in &lines {
        let at = format!("docs/protocol.md:{line}");
        if let Some(action) = v.get("action").and_then(Value::as_str) {
            assert!(
                pending.is_none(),
                "{at}: a request before the last one's reply"
            );
            pending = Some((
                *line,
                action.to_owned(),
                without(v, &["action", "requestId"]),
            ));
            continue;
        }
        match v["type"].as_str() {
            Some("response") => {
                let (req_line, action, params) = pending
                    .take()
                    .unwrap_or_else(|| panic!("{at}: a reply with no request"));
                if v["ok"] == true {
                    let (p, r) = round_trip(&action, &params, &v["result"])
                        .unwrap_or_else(|| panic!("{at}: no types for {action}"));
                    assert_eq!(p, params, "docs/protocol.md:{req_line}: {action}'s params");
                    assert_eq!(r, v["result"], "{at}: {action}'s reply");
                    actions.insert(action);
                } else {
                    let e = through::<ErrorDetail>("an error", &v["error"]);
                    assert_eq!(e, v["error"], "{at}: the error");
                }
            }
            Some("event") => {
                let event = through::<Event>("an event", &without(v, &["type"]));
                assert_eq!(event, without(v, &["type"]), "{at}: the event");
                let parsed: Event = serde_json::from_value(v.clone()).unwrap();
                let frame: Value = serde_json::from_str(&parsed.frame()).unwrap();
                assert_eq!(&frame, v, "{at}: the event frame");
                events.insert(v["event"].as_str().unwrap().to_owned());
            }
            _ => panic!("{at}: neither a request, a reply nor an event: {v}"),
        }
    }
    assert!(pending.is_none(), "a request with no reply at the end");

    // Every action the page lists, and every route of the WebSocket API, has an example.
    let listed: BTreeSet<String> = page
        .lines()
        .filter_map(|l| l.strip_prefix("- `"))
        .filter_map(|l| l.split_once(' '))
        .filter(|(a, rest)| {
            rest.starts_with('{')
                && a.starts_with(|c: char| c.is_ascii_lowercase())
                && a.chars().all(|c| c.is_ascii_alphanumeric())
        })
        .map(|(a, _)| a.to_owned())
        .collect();
    let missing: Vec<_> = listed.difference(&actions).collect();
    assert!(
        missing.is_empty(),
        "listed on the page, no example: {missing:?}"
    );
    let served = served_actions();
    assert!(
        served.len() >= 40,
        "only {} served actions found",
        served.len()
    );
    let missing: Vec<_> = served.difference(&actions).collect();
    assert!(missing.is_empty(), "routed, no example: {missing:?}");
    let all_events: BTreeSet<String> = [
        "message",
        "sessionStarted",
        "status",
        "deviceMessage",
        "statusPosted",
        "groupUpdate",
        "typing",
        "messageDeleted",
        "disappearingTimer",
    ]
    .map(String::from)
    .into();
    assert_eq!(events, all_events);
}
