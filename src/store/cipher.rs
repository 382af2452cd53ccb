//! Fernet (AES-128-CBC + HMAC-SHA256) for secrets at rest, interchangeable with the reference's
//! `Cipher` (PERSISTENCE.md §8): the 32-byte key is SHA-256 of the configured key string; the first
//! 16 bytes sign, the last 16 encrypt; tokens are URL-safe base64 with padding.

use aes::Aes128;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// A Fernet key derived from the server's secret key string.
pub struct Fernet {
    signing: [u8; 16],
    encryption: [u8; 16],
}

impl std::fmt::Debug for Fernet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fernet(..)")
    }
}

impl Fernet {
    /// Derives the key like the reference: `SHA-256(key.encode("utf-8"))`.
    pub fn from_secret_key(key: &str) -> Fernet {
        let digest = Sha256::digest(key.as_bytes());
        let mut signing = [0u8; 16];
        let mut encryption = [0u8; 16];
        signing.copy_from_slice(&digest[..16]);
        encryption.copy_from_slice(&digest[16..]);
        Fernet {
            signing,
            encryption,
        }
    }

    /// Encrypts with the current time and a random IV.
    pub fn encrypt(&self, plain: &[u8]) -> String {
        let mut iv = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut iv);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.encrypt_at(plain, now, iv)
    }

    fn encrypt_at(&self, plain: &[u8], ts: u64, iv: [u8; 16]) -> String {
        let ct = cbc::Encryptor::<Aes128>::new(&self.encryption.into(), &iv.into())
            .encrypt_padded_vec_mut::<Pkcs7>(plain);
        let mut token = Vec::with_capacity(1 + 8 + 16 + ct.len() + 32);
        token.push(0x80);
        token.extend_from_slice(&ts.to_be_bytes());
        token.extend_from_slice(&iv);
        token.extend_from_slice(&ct);
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.signing)
            .expect("hmac accepts any key length");
        mac.update(&token);
        token.extend_from_slice(&mac.finalize().into_bytes());
        URL_SAFE.encode(token)
    }

    /// Verifies and decrypts a token (no TTL, like the reference); `None` if it is not ours.
    pub fn decrypt(&self, token: &str) -> Option<Vec<u8>> {
        let t = token.trim();
        let raw = URL_SAFE.decode(t).or_else(|_| STANDARD.decode(t)).ok()?;
        if raw.len() < 1 + 8 + 16 + 16 + 32 || raw[0] != 0x80 {
            return None;
        }
        let (body, sig) = raw.split_at(raw.len() - 32);
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.signing).ok()?;
        mac.update(body);
        mac.verify_slice(sig).ok()?;
        let iv: [u8; 16] = body[9..25].try_into().ok()?;
        let ct = &body[25..];
        if ct.len() % 16 != 0 {
            return None;
        }
        cbc::Decryptor::<Aes128>::new(&self.encryption.into(), &iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(ct)
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let f = Fernet::from_secret_key("k");
        let t = f.encrypt(b"hello");
        assert!(t.starts_with("gAAAAA"));
        assert_eq!(f.decrypt(&t).as_deref(), Some(&b"hello"[..]));
        assert_eq!(Fernet::from_secret_key("other").decrypt(&t), None);
        assert_eq!(f.decrypt("**********"), None);
    }

    #[test]
    fn decrypts_a_token_made_by_python_cryptography() {
        // Fernet(base64.b64encode(sha256(b"my-secret-key-for-tests").digest())).encrypt(b"sk-fake-secret"),
        // the reference's key derivation (PERSISTENCE.md §8).
        let token = "gAAAAABrDGhkwYn9C_nf4-rLB7GrrVfYVHf4DRsg57OOrkLGGEeIcu5m1qwTT4cSSy_zMXKE4OFQZL88wELwWGX-Sqf2R4fiMA==";
        let f = Fernet::from_secret_key("my-secret-key-for-tests");
        assert_eq!(f.decrypt(token).as_deref(), Some(&b"sk-fake-secret"[..]));
    }

    #[test]
    fn known_vector() {
        // The Fernet spec's generate vector (key cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=).
        let key = URL_SAFE
            .decode("cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=")
            .unwrap();
        let mut f = Fernet::from_secret_key("");
        f.signing.copy_from_slice(&key[..16]);
        f.encryption.copy_from_slice(&key[16..]);
        let iv: [u8; 16] = (0u8..16).collect::<Vec<_>>().try_into().unwrap();
        let t = f.encrypt_at(b"hello", 499162800, iv);
        assert_eq!(
            t,
            "gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA=="
        );
    }
}
