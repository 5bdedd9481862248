//! Two-step verification: `courier pin set|remove|check` and the PIN asked for by
//! `courier verify` when the number's account has one. On a linked device, `set` and `remove`
//! also need the current PIN (from `--current-pin-file`, or asked for when the server answers
//! `PIN_REQUIRED`). A PIN is read from a file's first line or typed without echo, never taken as
//! an argument (arguments show in `ps` and shell history).

use crate::PinCommand;
use crate::messaging::Ctx;
use anyhow::{Context, Result, bail};
use courier_client::AccountsClient;
use courier_core::ErrorCode;
use courier_core::protocol::{Credentials, DeviceInfo};
use courier_core::secrets::RegistrationPin;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The PIN: the first line of `file`, or typed (twice when `confirm`). Six digits.
fn read_pin(file: Option<&Path>, confirm: bool) -> Result<Zeroizing<String>> {
    read_pin_as(file, confirm, "Registration PIN: ")
}

/// [`read_pin`], asking with `prompt` when typed.
fn read_pin_as(file: Option<&Path>, confirm: bool, prompt: &str) -> Result<Zeroizing<String>> {
    let pin = match file {
        Some(f) => {
            let text = Zeroizing::new(
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
            );
            Zeroizing::new(text.lines().next().unwrap_or("").trim().to_owned())
        }
        None => {
            let first = Zeroizing::new(rpassword::prompt_password(prompt)?);
            if confirm {
                let again = Zeroizing::new(rpassword::prompt_password("Again: ")?);
                if *first != *again {
                    bail!("the PINs differ");
                }
            }
            Zeroizing::new(first.trim().to_owned())
        }
    };
    if RegistrationPin::parse(&pin).is_none() {
        bail!("the PIN must be six digits");
    }
    Ok(pin)
}

/// `courier verify`: the code, with the PIN from `pin_file` if given; otherwise, if the server
/// answers that the account has a PIN, it is asked for and the same code sent again (a wrong
/// or missing PIN does not use the code up).
pub async fn verify(
    accounts: &AccountsClient,
    phone: &str,
    code: &str,
    device: DeviceInfo,
    pin_file: Option<PathBuf>,
) -> Result<Credentials> {
    let given = pin_file
        .as_deref()
        .map(|f| read_pin(Some(f), false))
        .transpose()?;
    match accounts
        .verify_with_pin(
            phone,
            code,
            device.clone(),
            given.as_deref().map(|p| p.as_str()),
        )
        .await
    {
        Err(e) if given.is_none() && e.code() == Some(ErrorCode::PinRequired) => {
            eprintln!("This account has two-step verification. {e}");
            let pin = read_pin(None, false)?;
            Ok(accounts
                .verify_with_pin(phone, code, device, Some(&pin))
                .await?)
        }
        other => Ok(other?),
    }
}

/// `courier pin set|remove|check`.
pub async fn pin(ctx: &Ctx<'_>, command: PinCommand) -> Result<()> {
    // Everything typed is asked for before connecting, but the current PIN, which only a
    // linked device needs: it is asked for when the server says so.
    let (new_pin, current_file, check) = match &command {
        PinCommand::Set {
            pin_file,
            current_pin_file,
        } => (
            Some(read_pin(pin_file.as_deref(), true)?),
            current_pin_file.clone(),
            None,
        ),
        PinCommand::Remove { current_pin_file } => (None, current_pin_file.clone(), None),
        PinCommand::Check { pin_file } => (None, None, Some(read_pin(pin_file.as_deref(), false)?)),
    };
    let mut current = current_file
        .as_deref()
        .map(|f| read_pin(Some(f), false))
        .transpose()?;
    let (client, _events) = ctx.connect_quietly().await?;
    if let Some(pin) = &check {
        let result = client.check_registration_pin(pin).await;
        client.close().await;
        return match result {
            Ok(true) => {
                println!("Correct: that is your registration PIN.");
                Ok(())
            }
            Ok(false) => bail!("wrong: that is not your registration PIN"),
            Err(e) if e.code() == Some(ErrorCode::NotFound) => {
                bail!("two-step verification is off: this account has no registration PIN")
            }
            Err(e) => Err(e.into()),
        };
    }
    let result = loop {
        let result = match &new_pin {
            Some(pin) => {
                client
                    .set_registration_pin(pin, current.as_deref().map(|p| p.as_str()))
                    .await
            }
            None => {
                client
                    .remove_registration_pin(current.as_deref().map(|p| p.as_str()))
                    .await
            }
        };
        match result {
            Err(e) if current.is_none() && e.code() == Some(ErrorCode::PinRequired) => {
                eprintln!("This is a linked device: it needs the current PIN.");
                current = Some(read_pin_as(None, false, "Current registration PIN: ")?);
            }
            other => break other,
        }
    };
    client.close().await;
    match result {
        Ok(()) if new_pin.is_some() => {
            println!("Two-step verification is on: re-registering this number needs the PIN.")
        }
        Ok(()) => println!("Two-step verification is off."),
        Err(e) if e.code() == Some(ErrorCode::Forbidden) => {
            bail!(
                "this account has no registration PIN, and only the primary device (the phone \
                 that registered the number) can turn two-step verification on"
            )
        }
        Err(e) if e.code() == Some(ErrorCode::WrongPin) => {
            bail!("that is not the current registration PIN; nothing was changed")
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
