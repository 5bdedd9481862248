//! `courier contacts`: the people this user saved, by the names it gave them, kept in
//! `contacts.json` (mode 0600) beside the credentials, and listed as contacts on the server too
//! (whom `contacts`-only privacy settings show). Everyone else is shown as WhatsApp shows people
//! who are not saved: `~` and their profile name, with their number when the server shows it (to
//! those who share a chat with them).

use crate::address_book::{Contact, FILE, load};
use crate::messaging::{Ctx, print_line};
use anyhow::{Context, Result, bail};

/// `courier contacts ...`.
pub async fn contacts(ctx: &Ctx<'_>, command: crate::ContactsCommand) -> Result<()> {
    use crate::ContactsCommand as C;
    let mut saved = load(ctx.store)?;
    match command {
        C::List => {
            if saved.is_empty() {
                eprintln!("No contacts. Add one with `courier contacts add <phone> [name]`.");
            }
            let mut rows: Vec<_> = saved.iter().collect();
            rows.sort_by_key(|(_, c)| (c.name.clone().unwrap_or_default(), c.phone.clone()));
            for (user_id, c) in rows {
                let name = c.name.as_deref().unwrap_or("(no name)");
                print_line(&format!("{name}  {}  {user_id}", c.phone));
            }
            return Ok(());
        }
        C::Add { phone, name } => {
            let name = name.join(" ");
            let name = (!name.trim().is_empty()).then(|| name.trim().to_owned());
            let (client, _events) = ctx.connect_quietly().await?;
            let user_id = client
                .lookup_user(&phone)
                .await
                .with_context(|| format!("looking up {phone}"))?;
            client
                .update_contacts(std::slice::from_ref(&user_id), &[])
                .await
                .context("adding the contact on the server")?;
            client.close().await;
            let shown = name.clone().unwrap_or_else(|| phone.clone());
            saved.insert(user_id.clone(), Contact { phone, name });
            ctx.store.write(FILE, &saved)?;
            print_line(&format!("saved {shown} ({user_id})"));
        }
        C::Remove { phone } => {
            let Some(user_id) = saved
                .iter()
                .find(|(_, c)| c.phone == phone)
                .map(|(u, _)| u.clone())
            else {
                bail!("{phone} is not in your contacts");
            };
            let (client, _events) = ctx.connect_quietly().await?;
            client
                .update_contacts(&[], std::slice::from_ref(&user_id))
                .await
                .context("removing the contact on the server")?;
            client.close().await;
            saved.remove(&user_id);
            ctx.store.write(FILE, &saved)?;
            print_line(&format!("removed {phone}"));
        }
    }
    Ok(())
}

/// `courier profile`: shows this user's profile name (what people who did not save them see,
/// after a `~`), or sets it with `--name`.
pub async fn profile(ctx: &Ctx<'_>, name: Option<String>) -> Result<()> {
    use courier_core::protocol::{DisplayUpdate, UpdateSettingsParams};
    let (client, _events) = ctx.connect_quietly().await?;
    let shown = match name {
        Some(name) => {
            let update = UpdateSettingsParams {
                display: Some(DisplayUpdate {
                    name: Some(Some(name)),
                    ..Default::default()
                }),
                privacy: None,
            };
            let settings = client.update_settings(&update).await;
            client.close().await;
            settings.context("setting the name")?.display.name
        }
        None => {
            let profile = client.get_profile(&ctx.me.user_id).await;
            client.close().await;
            profile.context("reading the profile")?.name
        }
    };
    print_line(shown.as_deref().unwrap_or("(no name)"));
    Ok(())
}

/// A person argument: a user id as is, else a phone number (looked up).
async fn user_of(client: &courier_client::Client, person: &str) -> Result<String> {
    if person.starts_with("u_") {
        return Ok(person.to_owned());
    }
    client
        .lookup_user(person)
        .await
        .with_context(|| format!("looking up {person}"))
}

/// `courier block|unblock <phone>`, `courier blocked`.
pub async fn block(ctx: &Ctx<'_>, person: Option<&str>, block: bool) -> Result<()> {
    let (client, _events) = ctx.connect_quietly().await?;
    let result = async {
        let Some(person) = person else {
            let blocked = client.list_blocked().await.context("listing")?;
            ctx.learn(&client, blocked.iter().map(String::as_str)).await;
            if blocked.is_empty() {
                eprintln!("Nobody is blocked.");
            }
            for u in &blocked {
                print_line(&format!("{}  {u}", ctx.who(u)));
            }
            return Ok(());
        };
        let user = user_of(&client, person).await?;
        let now = client.block_user(&user, block).await?;
        print_line(if now { "blocked" } else { "unblocked" });
        Ok(())
    }
    .await;
    client.close().await;
    result
}

/// `courier report <phone> [--last N]`: reports someone, with the last `last` (at most 5) of
/// their messages this device has in its history, and blocks them.
pub async fn report(ctx: &Ctx<'_>, person: &str, last: usize) -> Result<()> {
    use courier_client::history::HistoryStore;
    use courier_core::protocol::ReportedMessage;
    if last > 5 {
        bail!("a report carries at most 5 messages");
    }
    let (client, _events) = ctx.connect_quietly().await?;
    let result = async {
        let user = user_of(&client, person).await?;
        let history = HistoryStore::open(ctx.store.crypto_dir())?.load()?;
        let mut theirs: Vec<ReportedMessage> = history
            .into_iter()
            .filter(|e| e.sender == user && e.kind != "deleted")
            .filter_map(|e| {
                e.text.map(|text| ReportedMessage {
                    msg_id: e.msg_id,
                    text,
                })
            })
            .collect();
        let messages = theirs.split_off(theirs.len().saturating_sub(last));
        let attached = messages.len();
        let id = client.report_user(&user, messages).await?;
        print_line(&format!(
            "reported ({attached} messages attached; report {id}) and blocked"
        ));
        Ok(())
    }
    .await;
    client.close().await;
    result
}
