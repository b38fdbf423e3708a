//! The server side of a SCRAM exchange (RFC 5802, SHA-256 per RFC 7677, SHA-512 as Kafka):
//! client-first → server-first → client-final → server-final. No channel binding (Kafka has
//! none); extensions after the nonce are accepted and ignored; an authorization id other than
//! the user name is refused, as Kafka does.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::RngCore;
use subtle::ConstantTimeEq;

use super::credentials::{ScramCredential, ScramHash, ScramLookup};
use super::SaslError;

/// What the server keeps between its first message and the client's final one.
#[derive(Debug)]
pub struct ScramPending {
    hash: ScramHash,
    user: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    credential: ScramCredential,
}

impl ScramPending {
    /// The user named in the client's first message.
    pub fn user(&self) -> &str {
        &self.user
    }
}

fn malformed(what: &str) -> SaslError {
    SaslError::Malformed(format!("invalid SCRAM message: {what}"))
}

/// Decodes a SCRAM `saslname` (`=2C` is `,`, `=3D` is `=`).
fn decode_saslname(s: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(malformed("bad escape in the user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Answers the client-first message: looks the user up and returns the server-first message.
///
/// # Errors
/// [`SaslError::Malformed`] for a message that is not a SCRAM client-first message (or asks for
/// channel binding), [`SaslError::InvalidCredentials`] for an unknown user.
pub fn server_first(
    store: &dyn ScramLookup,
    hash: ScramHash,
    msg: &[u8],
) -> Result<(ScramPending, Vec<u8>), SaslError> {
    let msg = std::str::from_utf8(msg).map_err(|_| malformed("not UTF-8"))?;
    let (cbind, rest) = msg.split_once(',').ok_or_else(|| malformed("no GS2 header"))?;
    if cbind.starts_with("p=") {
        return Err(SaslError::Malformed(
            "SCRAM channel binding is not supported".into(),
        ));
    }
    if cbind != "n" && cbind != "y" {
        return Err(malformed("bad channel binding flag"));
    }
    let (authzid, bare) = rest.split_once(',').ok_or_else(|| malformed("no GS2 header"))?;
    let mut attrs = bare.split(',');
    let user = match attrs.next() {
        Some(n) if n.starts_with("n=") => decode_saslname(&n[2..])?,
        Some(m) if m.starts_with("m=") => return Err(malformed("mandatory extensions are not supported")),
        _ => return Err(malformed("no user name")),
    };
    let client_nonce = match attrs.next() {
        Some(r) if r.len() > 2 && r.starts_with("r=") => &r[2..],
        _ => return Err(malformed("no nonce")),
    };
    if !client_nonce
        .bytes()
        .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(malformed("bad nonce"));
    }
    if !authzid.is_empty()
        && authzid
            .strip_prefix("a=")
            .map(decode_saslname)
            .transpose()?
            .as_deref()
            != Some(user.as_str())
    {
        return Err(SaslError::InvalidCredentials {
            user,
            reason: "the authorization id differs from the user name",
        });
    }
    let credential = store
        .scram(&user, hash)
        .ok_or_else(|| SaslError::InvalidCredentials {
            user: user.clone(),
            reason: "unknown user",
        })?;
    let mut server_nonce = [0u8; 24];
    rand::rng().fill_bytes(&mut server_nonce);
    let nonce = format!("{client_nonce}{}", B64.encode(server_nonce));
    let server_first = format!(
        "r={nonce},s={},i={}",
        B64.encode(&credential.salt),
        credential.iterations
    );
    let reply = server_first.clone().into_bytes();
    Ok((
        ScramPending {
            hash,
            user,
            gs2_header: format!("{cbind},{authzid},"),
            client_first_bare: bare.to_owned(),
            server_first,
            nonce,
            credential,
        },
        reply,
    ))
}

impl ScramPending {
    /// Checks the client-final message's proof; returns the server-final message.
    ///
    /// # Errors
    /// [`SaslError::Malformed`] for a message that is not a client-final message of this
    /// exchange, [`SaslError::InvalidCredentials`] for a wrong proof (a wrong password).
    pub fn server_final(self, msg: &[u8]) -> Result<Vec<u8>, SaslError> {
        let msg = std::str::from_utf8(msg).map_err(|_| malformed("not UTF-8"))?;
        let (without_proof, proof) = msg.rsplit_once(",p=").ok_or_else(|| malformed("no proof"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|c| c.strip_prefix("c="))
            .ok_or_else(|| malformed("no channel binding attribute"))?;
        if B64.decode(binding).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(malformed("channel binding differs from the first message"));
        }
        // The nonce must end with the server's, as Kafka's ScramSaslServer checks it: librdkafka
        // 2.x sends its own nonce once more in front of the server's (RFC 5802 wants them equal).
        // The server's random part is still required, and the proof covers the message as sent.
        if !attrs
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .is_some_and(|r| r.ends_with(self.nonce.as_str()))
        {
            return Err(malformed("nonce differs from the server's"));
        }
        let proof = B64.decode(proof).map_err(|_| malformed("proof is not base64"))?;
        let auth_message = format!("{},{},{without_proof}", self.client_first_bare, self.server_first);
        let signature = self
            .hash
            .hmac(&self.credential.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(SaslError::InvalidCredentials {
                user: self.user,
                reason: "invalid proof",
            });
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !bool::from(self.hash.hash(&client_key).ct_eq(&self.credential.stored_key)) {
            return Err(SaslError::InvalidCredentials {
                user: self.user,
                reason: "invalid password",
            });
        }
        let server_signature = self
            .hash
            .hmac(&self.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::CredentialStore;

    /// A client side of the exchange, written from RFC 5802 §3.
    fn client_final(
        hash: ScramHash,
        password: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, Vec<u8>) {
        let attrs: Vec<&str> = server_first.split(',').collect();
        let nonce = &attrs[0][2..];
        let salt = B64.decode(&attrs[1][2..]).unwrap();
        let iterations: u32 = attrs[2][2..].parse().unwrap();
        let salted = hash.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        let stored = hash.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let sig = hash.hmac(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let server_sig = hash.hmac(&hash.hmac(&salted, b"Server Key"), auth.as_bytes());
        (format!("{without_proof},p={}", B64.encode(proof)), server_sig)
    }

    fn store() -> CredentialStore {
        CredentialStore::parse("al=ice,x:pencil\n").unwrap()
    }

    #[test]
    fn full_exchange_with_both_hashes_and_wrong_password() {
        let store = store();
        for hash in [ScramHash::Sha256, ScramHash::Sha512] {
            let bare = "n=al=3Dice=2Cx,r=fyko+d2lbbFgONRv9qkxdawL";
            let (pending, first) = server_first(&store, hash, format!("n,,{bare}").as_bytes()).unwrap();
            assert_eq!(pending.user(), "al=ice,x");
            let first = String::from_utf8(first).unwrap();
            let (fin, server_sig) = client_final(hash, "pencil", bare, &first);
            let reply = pending.server_final(fin.as_bytes()).unwrap();
            assert_eq!(reply, format!("v={}", B64.encode(server_sig)).into_bytes());

            let (pending, first) = server_first(&store, hash, format!("n,,{bare}").as_bytes()).unwrap();
            let (fin, _) = client_final(hash, "pencil!", bare, &String::from_utf8(first).unwrap());
            assert!(matches!(
                pending.server_final(fin.as_bytes()),
                Err(SaslError::InvalidCredentials { .. })
            ));
        }
    }

    #[test]
    fn librdkafka_repeated_client_nonce_is_accepted_as_by_kafka() {
        let store = store();
        let hash = ScramHash::Sha512;
        let bare = "n=al=3Dice=2Cx,r=abc";
        let (pending, first) = server_first(&store, hash, format!("n,,{bare}").as_bytes()).unwrap();
        let first = String::from_utf8(first).unwrap();
        let doubled = first.replacen("r=", "r=abc", 1);
        let (fin, _) = client_final(hash, "pencil", bare, &doubled);
        // The client signs the AuthMessage with the server-first it received; re-derive it over
        // the real one and the doubled nonce, as librdkafka does.
        let nonce = &doubled.split(',').next().unwrap()[2..];
        let attrs: Vec<&str> = first.split(',').collect();
        let salt = B64.decode(&attrs[1][2..]).unwrap();
        let salted = hash.salted_password(b"pencil", &salt, 4096);
        let client_key = hash.hmac(&salted, b"Client Key");
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{bare},{first},{without_proof}");
        let sig = hash.hmac(&hash.hash(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        assert!(fin.starts_with("c=biws,r=abcabc"));
        let fin = format!("{without_proof},p={}", B64.encode(proof));
        assert!(pending.server_final(fin.as_bytes()).is_ok());
    }

    #[test]
    fn bad_messages_are_refused_without_panics() {
        let store = store();
        let h = ScramHash::Sha256;
        for bad in [
            &b""[..],
            b"n,,",
            b"p=tls-unique,,n=x,r=abc",
            b"x,,n=al=3Dice=2Cx,r=abc",
            b"n,,m=ext,n=a,r=b",
            b"n,,n=a=ZZ,r=b",
            b"n,,n=al=3Dice=2Cx",
            b"n,,n=al=3Dice=2Cx,r=",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(server_first(&store, h, bad), Err(SaslError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            server_first(&store, h, b"n,,n=nobody,r=abc"),
            Err(SaslError::InvalidCredentials { .. })
        ));
        assert!(matches!(
            server_first(&store, h, b"n,a=other,n=al=3Dice=2Cx,r=abc"),
            Err(SaslError::InvalidCredentials { .. })
        ));
        for bad in [
            &b"c=biws,r=x,p=AAAA"[..],
            b"nothing",
            b"c=eSws,r=abc,p=AAAA",
            b"c=biws,p=%%%",
        ] {
            let (pending, _) = server_first(&store, h, b"n,,n=al=3Dice=2Cx,r=abc").unwrap();
            assert!(pending.server_final(bad).is_err(), "{bad:?}");
        }
    }
}
