//! Safety numbers and pinned identity keys: what a user checks before trusting a peer.

use super::*;

impl E2ee {
    /// The safety number with `user` and both sides' device fingerprints (from
    /// `listDevices`). Does not change any pin.
    pub async fn safety(&self, c: &impl Caller, user: &str) -> Result<SafetyInfo, ClientError> {
        let (me, _) = self.me();
        let listed = list_devices(c, &[me.clone(), user.to_owned()]).await?;
        let keys = |u: &str| -> Vec<&UserDevice> {
            listed
                .iter()
                .filter(|d| d.user_id == u && d.identity_key.is_some())
                .collect()
        };
        let (mine, theirs) = (keys(&me), keys(user));
        if theirs.is_empty() {
            return Err(protocol_error(&format!(
                "{user} has no device with end-to-end encryption keys"
            )));
        }
        let key = |d: &&UserDevice| d.identity_key.clone().unwrap_or_default();
        let my_keys: Vec<String> = if mine.is_empty() {
            vec![self.identity_key()]
        } else {
            mine.iter().map(key).collect()
        };
        let their_keys: Vec<String> = theirs.iter().map(key).collect();
        let number = safety_number(&me, &my_keys, user, &their_keys).map_err(crypto_err)?;
        let fp = |d: &&UserDevice| fingerprint(&key(d)).unwrap_or_default();
        Ok(SafetyInfo {
            safety_number: number,
            mine: mine.iter().map(|d| (d.device_id.clone(), fp(d))).collect(),
            theirs: theirs
                .iter()
                .map(|d| (d.device_id.clone(), fp(d), d.primary))
                .collect(),
        })
    }

    /// Whether every listed device of `user` matches the pins (false: an identity changed).
    pub async fn is_trusted(&self, c: &impl Caller, user: &str) -> Result<bool, ClientError> {
        let listed = list_devices(c, &[user.to_owned()]).await?;
        let st = self.state.lock().unwrap();
        Ok(listed.iter().filter(|d| d.user_id == user).all(|d| {
            let Some(key) = d.identity_key.as_deref() else {
                return true;
            };
            st.device.trust().check(user, &d.device_id, key).is_ok()
                && (!d.primary
                    || st
                        .device
                        .trust()
                        .check_primary(user, &d.device_id, key)
                        .is_ok())
        }))
    }

    /// Accepts the identity keys `user`'s devices have now (after a change was reported and
    /// the user chose to trust it, ideally after comparing safety numbers). Returns how many
    /// devices' keys were (re)pinned.
    pub async fn accept_identity(&self, c: &impl Caller, user: &str) -> Result<usize, ClientError> {
        let listed = list_devices(c, &[user.to_owned()]).await?;
        let mut st = self.state.lock().unwrap();
        let mut n = 0;
        for d in listed.iter().filter(|d| d.user_id == user) {
            let Some(key) = d.identity_key.as_deref() else {
                continue;
            };
            st.device
                .accept_new_identity(user, &d.device_id, key)
                .map_err(crypto_err)?;
            if d.primary {
                st.device
                    .trust_mut()
                    .accept_new_primary(user, &d.device_id, key)
                    .map_err(crypto_err)?;
            }
            n += 1;
        }
        st.directory.insert(user.to_owned(), listed);
        st.save()?;
        Ok(n)
    }
}
