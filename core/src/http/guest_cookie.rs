//! The guest device cookie: a random device id the server gives a browser for one
//! link (`Path=/j/{id}`), signed so that only ids this server issued count. A
//! removal or block holds on to it as well as to the key the page chooses, so a
//! guest who was removed cannot come back by sending a new key from the same
//! browser (docs/security.md, "Who stays out").

use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::random_base62;

/// The cookie's name; its path scopes it to one link.
pub const GUEST_COOKIE: &str = "confab_guest";
/// Characters of a device id.
const DEVICE_CHARS: usize = 22;

/// Signs and checks guest cookies with a key made when the server starts (calls do
/// not outlive the process, so neither need the cookies).
#[derive(Clone)]
pub struct GuestCookies {
    key: [u8; 32],
}

impl std::fmt::Debug for GuestCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuestCookies(..)")
    }
}

impl Default for GuestCookies {
    fn default() -> Self {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self { key }
    }
}

impl GuestCookies {
    fn mac(&self, link_pk: i64, device: &str) -> String {
        // Any key length is valid for HMAC.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC key");
        mac.update(format!("confab-guest-device\n{link_pk}\n{device}").as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// The device id of a valid cookie for this link in `jar`, if any.
    pub fn device(&self, jar: &CookieJar, link_pk: i64) -> Option<String> {
        let value = jar.get(GUEST_COOKIE)?.value();
        let (device, mac) = value.split_once('.')?;
        let well_formed =
            device.len() == DEVICE_CHARS && device.chars().all(|c| c.is_ascii_alphanumeric());
        (well_formed && crate::secret::constant_time_eq(mac, &self.mac(link_pk, device)))
            .then(|| device.to_string())
    }

    /// `jar` with a cookie for this link, unless it already holds a valid one.
    pub fn ensure(&self, jar: CookieJar, link_pk: i64, public_id: &str, secure: bool) -> CookieJar {
        if self.device(&jar, link_pk).is_some() {
            return jar;
        }
        let device = random_base62(DEVICE_CHARS);
        let value = format!("{device}.{}", self.mac(link_pk, &device));
        jar.add(
            Cookie::build((GUEST_COOKIE, value))
                .path(format!("/j/{public_id}"))
                .http_only(true)
                .same_site(SameSite::Strict)
                .secure(secure)
                .build(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cookies_this_server_signed_for_this_link_name_a_device() {
        let cookies = GuestCookies::default();
        let jar = cookies.ensure(CookieJar::new(), 7, "abc", false);
        let device = cookies.device(&jar, 7).expect("a fresh cookie is valid");
        assert_eq!(device.len(), DEVICE_CHARS);
        assert_eq!(jar.get(GUEST_COOKIE).unwrap().path(), Some("/j/abc"));
        assert!(jar.get(GUEST_COOKIE).unwrap().http_only().unwrap());
        // Kept as it is when valid.
        let again = cookies.ensure(jar.clone(), 7, "abc", false);
        assert_eq!(cookies.device(&again, 7), Some(device.clone()));
        // Not for another link, not from another server, not made up.
        assert_eq!(cookies.device(&jar, 8), None);
        assert_eq!(GuestCookies::default().device(&jar, 7), None);
        let forged = CookieJar::new().add(Cookie::new(
            GUEST_COOKIE,
            format!("{device}.{}", "0".repeat(32)),
        ));
        assert_eq!(cookies.device(&forged, 7), None);
    }
}
