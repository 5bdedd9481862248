//! Disappearing messages: `courier timer 24h|7d|90d|off <chat>`, `/timer` in `courier chat`, and
//! how a change of the timer is shown.

use super::*;

/// The timer a user wrote, in seconds: `off` (or `0`), `24h` (or `1d`), `7d`, `90d`, or a
/// number of seconds (a test deployment may allow one short value).
pub(crate) fn parse_duration(s: &str) -> Result<u32> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "off" | "0" => 0,
        "24h" | "1d" => 86_400,
        "7d" | "1w" => 604_800,
        "90d" => 7_776_000,
        other => other
            .strip_suffix('s')
            .unwrap_or(other)
            .parse()
            .map_err(|_| anyhow!("{s}: a timer is 24h, 7d, 90d or off"))?,
    })
}

/// A timer as people say it.
pub(crate) fn describe(seconds: u32) -> String {
    match seconds {
        0 => "off".to_owned(),
        86_400 => "24 hours".to_owned(),
        604_800 => "7 days".to_owned(),
        7_776_000 => "90 days".to_owned(),
        s => format!("{s} seconds"),
    }
}

/// The line that shows a change of the timer.
pub(crate) fn notice(who: &str, seconds: u32) -> String {
    if seconds == 0 {
        format!("{who} turned off disappearing messages")
    } else {
        format!(
            "{who} turned on disappearing messages: new messages disappear after {}",
            describe(seconds)
        )
    }
}

/// `courier timer`.
pub async fn set_timer(ctx: &Ctx<'_>, target: Target, duration: &str) -> Result<()> {
    let seconds = parse_duration(duration)?;
    let (client, _events) = ctx.connect_quietly().await?;
    let session = ctx.session_for(&client, &target).await?;
    let result = client.set_disappearing_timer(&session, seconds).await;
    client.close().await;
    let now = result.map_err(|e| anyhow!("not changed: {e}"))?;
    print_line(&format!("disappearing messages: {}", describe(now)));
    Ok(())
}
