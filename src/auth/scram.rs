//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL uses it: the stored verifier and the
//! server side of the exchange.
//!
//! A role keeps only its verifier — salt, iteration count, StoredKey and ServerKey —
//! written the way PostgreSQL writes `pg_authid.rolpassword`
//! (`SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>`). Unlike the salted password that
//! pgwire's own SCRAM handler wants, these keys are not enough to log in: a client proof
//! needs the ClientKey, which only the password gives. That is why the exchange is done
//! here rather than by `pgwire::api::auth::sasl`.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// PostgreSQL's default iteration count (`scram_iterations`).
pub const ITERATIONS: u32 = 4096;
/// The SASL mechanism name.
pub const MECHANISM: &str = "SCRAM-SHA-256";
const PREFIX: &str = "SCRAM-SHA-256$";

/// Why an exchange failed. `BadProof` is a wrong password; the others are a client
/// that does not follow the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported (the server offers SCRAM-SHA-256 only)")]
    ChannelBinding,
    #[error("wrong SCRAM proof")]
    BadProof,
}

/// What a role stores instead of its password.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier(SCRAM-SHA-256, redacted)")
    }
}

impl Verifier {
    /// The verifier of `password` with a fresh random salt.
    pub fn new(password: &str) -> Self {
        let salt: [u8; 16] = rand::random();
        Self::compute(password, &salt, ITERATIONS)
    }

    /// The verifier of `password` for a given salt and iteration count. The password is
    /// SASLprep-normalised first, as libpq does (pgwire's `gen_salted_password`).
    pub fn compute(password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = pgwire::api::auth::sasl::scram::gen_salted_password(
            password,
            salt,
            iterations as usize,
        );
        let client_key = hmac(&salted, b"Client Key");
        Verifier {
            salt: salt.to_vec(),
            iterations,
            stored_key: Sha256::digest(&client_key).to_vec(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// A verifier no password matches, for a role that does not exist or has no
    /// password: the exchange runs to its end and fails like a wrong password, so a
    /// client cannot tell which roles exist. The salt is stable per user name (a
    /// `secret` fixed for the process) so repeated attempts look alike.
    pub fn impossible(user: &str, secret: &[u8]) -> Self {
        let mut salt = hmac(secret, user.as_bytes());
        salt.truncate(16);
        let random: [u8; 32] = rand::random();
        Verifier {
            salt,
            iterations: ITERATIONS,
            stored_key: random.to_vec(),
            server_key: random.to_vec(),
        }
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(&self.stored_key),
            STANDARD.encode(&self.server_key)
        )
    }
}

impl FromStr for Verifier {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || "not a SCRAM-SHA-256 verifier".to_string();
        let rest = s.strip_prefix(PREFIX).ok_or_else(bad)?;
        let (params, keys) = rest.split_once('$').ok_or_else(bad)?;
        let (iterations, salt) = params.split_once(':').ok_or_else(bad)?;
        let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
        let b64 = |t: &str| STANDARD.decode(t).map_err(|e| format!("{}: {e}", bad()));
        Ok(Verifier {
            iterations: iterations.parse().map_err(|_| bad())?,
            salt: b64(salt)?,
            stored_key: b64(stored)?,
            server_key: b64(server)?,
        })
    }
}

impl serde::Serialize for Verifier {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Verifier {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The server's side of one exchange, between its first message and the client's last.
#[derive(Debug)]
pub struct Exchange {
    verifier: Verifier,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl Exchange {
    /// Read the client-first message; returns the exchange and the server-first message.
    pub fn start(client_first: &str, verifier: Verifier) -> Result<(Self, String), ScramError> {
        // gs2-header: cbind-flag "," [authzid] ","
        let (flag, rest) = client_first
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        match flag {
            // "y": the client could bind but the server did not offer it; fine.
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad channel binding flag")),
        }
        let (_authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        let gs2_header = client_first[..client_first.len() - bare.len()].to_string();
        let mut client_nonce = None;
        for attr in bare.split(',') {
            if attr.starts_with("m=") {
                return Err(ScramError::Malformed(
                    "mandatory extensions are not supported",
                ));
            }
            if let Some(r) = attr.strip_prefix("r=") {
                client_nonce = Some(r);
            }
        }
        let client_nonce = client_nonce
            .filter(|n| !n.is_empty())
            .ok_or(ScramError::Malformed("no client nonce"))?;
        let nonce = format!(
            "{client_nonce}{}",
            STANDARD.encode(rand::random::<[u8; 18]>())
        );
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&verifier.salt),
            verifier.iterations
        );
        Ok((
            Exchange {
                verifier,
                gs2_header,
                client_first_bare: bare.to_string(),
                server_first: server_first.clone(),
                nonce,
            },
            server_first,
        ))
    }

    /// Check the client-final message's proof; returns the server-final message.
    pub fn finish(&self, client_final: &str) -> Result<String, ScramError> {
        let (without_proof, proof) = client_final
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut binding = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(c) = attr.strip_prefix("c=") {
                binding = Some(c);
            } else if let Some(r) = attr.strip_prefix("r=") {
                nonce = Some(r);
            }
        }
        if binding != Some(STANDARD.encode(&self.gs2_header).as_str()) {
            return Err(ScramError::Malformed("channel binding data does not match"));
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof = STANDARD
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let client_signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::BadProof);
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if !constant_time_eq(&Sha256::digest(&client_key), &self.verifier.stored_key) {
            return Err(ScramError::BadProof);
        }
        let server_signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", STANDARD.encode(server_signature)))
    }
}

pub(crate) fn hmac(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil".
    const SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";

    fn rfc_verifier() -> Verifier {
        Verifier::compute(
            "pencil",
            &STANDARD.decode(SALT).expect("base64"),
            ITERATIONS,
        )
    }

    #[test]
    fn verifier_matches_rfc_7677() {
        let v = rfc_verifier();
        // StoredKey = H(HMAC(Hi("pencil", salt, 4096), "Client Key")), ServerKey likewise
        // (computed independently with Python's hashlib.pbkdf2_hmac and hmac).
        assert_eq!(
            STANDARD.encode(&v.stored_key),
            "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
        );
        assert_eq!(
            STANDARD.encode(&v.server_key),
            "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
        let text = v.to_string();
        assert!(text.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"));
        assert_eq!(text.parse::<Verifier>().expect("parse"), v);
        assert!(!format!("{v:?}").contains("WG5d"));
    }

    #[test]
    fn exchange_accepts_the_rfc_client_proof() {
        let (mut exchange, server_first) =
            Exchange::start(CLIENT_FIRST, rfc_verifier()).expect("start");
        assert!(server_first.starts_with("r=rOprNGfwEbeRWgbNEkqO"));
        assert!(server_first.ends_with(",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"));
        // Replay the RFC's exchange: its server nonce instead of our random one.
        exchange.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        exchange.server_first = format!("r={},s={SALT},i=4096", exchange.nonce);
        let client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        assert_eq!(
            exchange.finish(client_final).as_deref(),
            Ok("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
        );
        let wrong = client_final.replace("p=dHzb", "p=dHzc");
        assert_eq!(exchange.finish(&wrong), Err(ScramError::BadProof));
        let other_nonce = client_final.replace("k0,p=", "k1,p=");
        assert!(matches!(
            exchange.finish(&other_nonce),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn refuses_what_it_does_not_offer() {
        assert_eq!(
            Exchange::start("p=tls-server-end-point,,n=,r=abc", rfc_verifier()).map(|_| ()),
            Err(ScramError::ChannelBinding)
        );
        assert!(Exchange::start("n,,n=,r=", rfc_verifier()).is_err());
        assert!(Exchange::start("garbage", rfc_verifier()).is_err());
        let impossible = Verifier::impossible("nobody", b"secret");
        assert_eq!(
            impossible.salt,
            Verifier::impossible("nobody", b"secret").salt
        );
    }
}
