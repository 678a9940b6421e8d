//! DNS-01 through RFC 2136 dynamic updates: TXT records added to and
//! deleted from an authoritative server over TCP (RFC 1035 4.2.2,
//! length-prefixed), signed with TSIG (RFC 8945, HMAC-SHA256 or -SHA512),
//! and queried back until the server answers them.
//!
//! Every byte a server returns is parsed with bounds checks: a short,
//! looping or otherwise bogus response is an error naming the server,
//! never a panic.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};
use std::io::{Read, Write};
use std::time::Duration;

const TYPE_SOA: u16 = 6;
const TYPE_TXT: u16 = 16;
const TYPE_TSIG: u16 = 250;
const CLASS_IN: u16 = 1;
const CLASS_NONE: u16 = 254;
const CLASS_ANY: u16 = 255;
const OPCODE_QUERY: u8 = 0;
const OPCODE_UPDATE: u8 = 5;
/// Seconds of clock difference TSIG tolerates (RFC 8945 recommends 300).
const FUDGE: u16 = 300;

/// A TSIG MAC algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    HmacSha256,
    HmacSha512,
}

impl Algorithm {
    /// From the name BIND and `tsig-keygen` use.
    pub fn parse(name: &str) -> Result<Algorithm, String> {
        match name.trim_end_matches('.').to_ascii_lowercase().as_str() {
            "hmac-sha256" => Ok(Algorithm::HmacSha256),
            "hmac-sha512" => Ok(Algorithm::HmacSha512),
            other => Err(format!(
                "TSIG algorithm `{other}` is not supported: use \"hmac-sha256\" or \"hmac-sha512\""
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::HmacSha512 => "hmac-sha512",
        }
    }

    fn mac(self, secret: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Algorithm::HmacSha256 => {
                let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret)
                    .expect("HMAC takes a key of any length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Algorithm::HmacSha512 => {
                let mut m = <Hmac<Sha512> as Mac>::new_from_slice(secret)
                    .expect("HMAC takes a key of any length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }
}

/// A TSIG key: its name (as the server knows it), algorithm and secret.
#[derive(Clone)]
pub struct TsigKey {
    pub name: String,
    pub algorithm: Algorithm,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The secret from what a key file or variable holds: the base64 secret
/// alone, or a BIND `key "name" { algorithm ...; secret "..."; };` block
/// as `tsig-keygen` writes it.
pub fn parse_secret(text: &str) -> Result<Vec<u8>, String> {
    let t = text.trim();
    let b64 = match t.find("secret") {
        Some(i) => {
            let rest = &t[i + "secret".len()..];
            let open = rest
                .find('"')
                .ok_or("the key block's `secret` has no quoted value")?;
            let rest = &rest[open + 1..];
            let close = rest
                .find('"')
                .ok_or("the key block's `secret` value is not closed")?;
            &rest[..close]
        }
        None => t,
    };
    let secret = STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("the TSIG secret is not base64 ({e})"))?;
    if secret.is_empty() {
        return Err("the TSIG secret is empty".into());
    }
    Ok(secret)
}

/// `name` as wire labels, lower-cased (TSIG's canonical form), always
/// absolute. Refuses empty or over-long labels.
pub fn encode_name(name: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let n = name.trim_end_matches('.');
    if !n.is_empty() {
        if n.len() > 253 {
            return Err(format!("`{name}` is longer than a DNS name may be"));
        }
        for label in n.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(format!("`{name}` has an empty or over-long label"));
            }
            out.push(label.len() as u8);
            out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    }
    out.push(0);
    Ok(())
}

/// One TXT record to add or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txt {
    /// Owner name, such as `_acme-challenge.example.test`.
    pub name: String,
    pub value: String,
}

fn txt_rdata(value: &str) -> Result<Vec<u8>, String> {
    if value.len() > 255 {
        return Err(format!("TXT value `{value}` is longer than 255 bytes"));
    }
    let mut r = vec![value.len() as u8];
    r.extend_from_slice(value.as_bytes());
    Ok(r)
}

fn push_rr(
    out: &mut Vec<u8>,
    name: &str,
    typ: u16,
    class: u16,
    ttl: u32,
    rdata: &[u8],
) -> Result<(), String> {
    encode_name(name, out)?;
    out.extend_from_slice(&typ.to_be_bytes());
    out.extend_from_slice(&class.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
    Ok(())
}

fn header(id: u16, opcode: u8, counts: [u16; 4]) -> Vec<u8> {
    let mut h = Vec::with_capacity(512);
    h.extend_from_slice(&id.to_be_bytes());
    h.push(opcode << 3);
    h.push(0);
    for c in counts {
        h.extend_from_slice(&c.to_be_bytes());
    }
    h
}

/// An UPDATE for `zone` that adds (`add = true`, with `ttl`) or deletes
/// exactly these TXT records (RFC 2136 2.5.1 and 2.5.4), unsigned.
pub fn update_message(
    id: u16,
    zone: &str,
    records: &[Txt],
    add: bool,
    ttl: u32,
) -> Result<Vec<u8>, String> {
    let count = u16::try_from(records.len()).map_err(|_| "too many records")?;
    let mut m = header(id, OPCODE_UPDATE, [1, 0, count, 0]);
    encode_name(zone, &mut m)?;
    m.extend_from_slice(&TYPE_SOA.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    for r in records {
        let (class, ttl) = if add {
            (CLASS_IN, ttl)
        } else {
            (CLASS_NONE, 0)
        };
        push_rr(&mut m, &r.name, TYPE_TXT, class, ttl, &txt_rdata(&r.value)?)?;
    }
    Ok(m)
}

/// A query for the TXT records at `name`, without recursion.
pub fn query_message(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut m = header(id, OPCODE_QUERY, [1, 0, 0, 0]);
    encode_name(name, &mut m)?;
    m.extend_from_slice(&TYPE_TXT.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(m)
}

/// The TSIG variables (RFC 8945 4.3.3) after the key name and class.
fn tsig_variables(key: &TsigKey, time: u64, error: u16, other: &[u8]) -> Result<Vec<u8>, String> {
    let mut v = Vec::new();
    encode_name(&key.name, &mut v)?;
    v.extend_from_slice(&CLASS_ANY.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    encode_name(key.algorithm.name(), &mut v)?;
    v.extend_from_slice(&time.to_be_bytes()[2..]);
    v.extend_from_slice(&FUDGE.to_be_bytes());
    v.extend_from_slice(&error.to_be_bytes());
    v.extend_from_slice(&(other.len() as u16).to_be_bytes());
    v.extend_from_slice(other);
    Ok(v)
}

/// The MAC of a request: the message as sent without its TSIG record,
/// then the TSIG variables.
pub fn request_mac(key: &TsigKey, message: &[u8], time: u64) -> Result<Vec<u8>, String> {
    let mut data = message.to_vec();
    data.extend(tsig_variables(key, time, 0, &[])?);
    Ok(key.algorithm.mac(&key.secret, &data))
}

/// Appends a TSIG record to `message` (signed at `time`, Unix seconds)
/// and returns the MAC, which the response's MAC covers.
pub fn sign(key: &TsigKey, message: &mut Vec<u8>, time: u64) -> Result<Vec<u8>, String> {
    if message.len() < 12 {
        return Err("a DNS message is at least 12 bytes".into());
    }
    let mac = request_mac(key, message, time)?;
    let id = [message[0], message[1]];
    let mut rdata = Vec::new();
    encode_name(key.algorithm.name(), &mut rdata)?;
    rdata.extend_from_slice(&time.to_be_bytes()[2..]);
    rdata.extend_from_slice(&FUDGE.to_be_bytes());
    rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    rdata.extend_from_slice(&mac);
    rdata.extend_from_slice(&id);
    rdata.extend_from_slice(&0u16.to_be_bytes());
    rdata.extend_from_slice(&0u16.to_be_bytes());
    push_rr(message, &key.name, TYPE_TSIG, CLASS_ANY, 0, &rdata)?;
    let ar = u16::from_be_bytes([message[10], message[11]]) + 1;
    message[10..12].copy_from_slice(&ar.to_be_bytes());
    Ok(mac)
}

/// A bounds-checked reader over a message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let end =
            end.ok_or_else(|| format!("the message ends inside a field at byte {}", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A possibly compressed name, as lower-case dotted text (no final
    /// dot; empty for the root). Pointers must point backwards, so a
    /// loop cannot run forever.
    fn name(&mut self) -> Result<String, String> {
        let mut labels: Vec<String> = Vec::new();
        let mut pos = self.pos;
        let mut end_after: Option<usize> = None;
        let mut total = 0usize;
        loop {
            let len = *self
                .buf
                .get(pos)
                .ok_or_else(|| format!("a name runs past the end of the message at byte {pos}"))?;
            match len {
                0 => {
                    self.pos = end_after.unwrap_or(pos + 1);
                    return Ok(labels.join("."));
                }
                l if l & 0xC0 == 0xC0 => {
                    let lo = *self
                        .buf
                        .get(pos + 1)
                        .ok_or("a compression pointer is cut off")?;
                    let target = (usize::from(l & 0x3F) << 8) | usize::from(lo);
                    if target >= pos {
                        return Err(format!(
                            "a compression pointer at byte {pos} does not point backwards"
                        ));
                    }
                    end_after.get_or_insert(pos + 2);
                    pos = target;
                }
                l if l & 0xC0 != 0 => {
                    return Err(format!("label type {l:#x} at byte {pos} is not supported"));
                }
                l => {
                    let l = usize::from(l);
                    let label = self
                        .buf
                        .get(pos + 1..pos + 1 + l)
                        .ok_or("a label runs past the end of the message")?;
                    total += l + 1;
                    if total > 255 {
                        return Err("a name is longer than 255 bytes".into());
                    }
                    labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
                    pos += 1 + l;
                }
            }
        }
    }
}

/// A resource record as read.
#[derive(Debug, Clone)]
pub struct Record {
    pub name: String,
    pub typ: u16,
    pub class: u16,
    /// Offset of the record's first byte in the message.
    pub start: usize,
    pub rdata: Vec<u8>,
    /// Offset of the rdata in the message.
    pub rdata_at: usize,
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub id: u16,
    pub is_response: bool,
    pub opcode: u8,
    pub rcode: u16,
    pub answers: Vec<Record>,
    pub additional: Vec<Record>,
}

/// Parses a DNS message.
pub fn parse(buf: &[u8]) -> Result<Response, String> {
    let mut r = Reader { buf, pos: 0 };
    let id = r.u16()?;
    let flags = r.u16()?;
    let qd = r.u16()?;
    let an = r.u16()?;
    let ns = r.u16()?;
    let ar = r.u16()?;
    for _ in 0..qd {
        r.name()?;
        r.take(4)?;
    }
    let mut sections: [Vec<Record>; 3] = Default::default();
    for (i, count) in [an, ns, ar].into_iter().enumerate() {
        for _ in 0..count {
            let start = r.pos;
            let name = r.name()?;
            let typ = r.u16()?;
            let class = r.u16()?;
            r.u32()?;
            let len = r.u16()?;
            let rdata_at = r.pos;
            let rdata = r.take(usize::from(len))?.to_vec();
            sections[i].push(Record {
                name,
                typ,
                class,
                start,
                rdata,
                rdata_at,
            });
        }
    }
    if r.pos != buf.len() {
        return Err(format!(
            "{} bytes follow the last record",
            buf.len() - r.pos
        ));
    }
    let [answers, _, additional] = sections;
    Ok(Response {
        id,
        is_response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0xF) as u8,
        rcode: flags & 0xF,
        answers,
        additional,
    })
}

/// The strings of a TXT record's rdata, joined (RFC 7208 3.3 style).
pub fn txt_text(rdata: &[u8]) -> Result<String, String> {
    let mut r = Reader { buf: rdata, pos: 0 };
    let mut out = Vec::new();
    while r.pos < rdata.len() {
        let l = r.u8()?;
        out.extend_from_slice(r.take(usize::from(l))?);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// TSIG's fields as a response carries them.
#[derive(Debug, Clone)]
pub struct Tsig {
    pub algorithm: String,
    pub time: u64,
    pub mac: Vec<u8>,
    pub original_id: u16,
    pub error: u16,
    pub other: Vec<u8>,
}

/// Reads a TSIG record's rdata (names inside TSIG are never compressed).
pub fn parse_tsig(rdata: &[u8]) -> Result<Tsig, String> {
    let mut r = Reader { buf: rdata, pos: 0 };
    let algorithm = r.name()?;
    let t = r.take(6)?;
    let time = t.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b));
    r.u16()?;
    let mac_len = r.u16()?;
    let mac = r.take(usize::from(mac_len))?.to_vec();
    let original_id = r.u16()?;
    let error = r.u16()?;
    let other_len = r.u16()?;
    let other = r.take(usize::from(other_len))?.to_vec();
    Ok(Tsig {
        algorithm,
        time,
        mac,
        original_id,
        error,
        other,
    })
}

/// Checks a response's TSIG (RFC 8945 5.3): its MAC covers the request's
/// MAC, the response without the TSIG record, and the TSIG variables.
pub fn verify_response(
    key: &TsigKey,
    wire: &[u8],
    resp: &Response,
    request_mac: &[u8],
) -> Result<Tsig, String> {
    let rec = resp
        .additional
        .last()
        .filter(|r| r.typ == TYPE_TSIG)
        .ok_or("the response is not signed (no TSIG record)")?;
    if rec.name != key.name.trim_end_matches('.').to_ascii_lowercase() {
        return Err(format!(
            "the response is signed with another key (`{}`)",
            rec.name
        ));
    }
    let tsig = parse_tsig(&rec.rdata)?;
    if tsig.error != 0 {
        return Ok(tsig);
    }
    if tsig.algorithm != key.algorithm.name() {
        return Err(format!("the response is signed with {}", tsig.algorithm));
    }
    let mut data = Vec::new();
    data.extend_from_slice(&(request_mac.len() as u16).to_be_bytes());
    data.extend_from_slice(request_mac);
    let mut body = wire[..rec.start].to_vec();
    body[0..2].copy_from_slice(&tsig.original_id.to_be_bytes());
    let ar = u16::from_be_bytes([body[10], body[11]]).saturating_sub(1);
    body[10..12].copy_from_slice(&ar.to_be_bytes());
    data.extend(body);
    data.extend(tsig_variables(key, tsig.time, tsig.error, &tsig.other)?);
    let want = key.algorithm.mac(&key.secret, &data);
    if want != tsig.mac {
        return Err("the response's TSIG signature does not verify".into());
    }
    Ok(tsig)
}

/// Name of a response code (RFC 1035, 2136, 8945).
pub fn rcode_name(rcode: u16) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED (the server's policy refuses this key, address or name)".into(),
        6 => "YXDOMAIN".into(),
        7 => "YXRRSET".into(),
        8 => "NXRRSET".into(),
        9 => "NOTAUTH (the server is not authoritative for the zone, or refused the key)".into(),
        10 => "NOTZONE (a name lies outside the zone)".into(),
        16 => "BADSIG (the TSIG secret does not match the server's)".into(),
        17 => "BADKEY (the server does not know this TSIG key name or algorithm)".into(),
        18 => {
            "BADTIME (this machine's clock and the server's differ by more than 5 minutes)".into()
        }
        other => format!("response code {other}"),
    }
}

/// A DNS server reached over TCP.
pub struct Server {
    /// `host:port`, as configured (it names the server in errors).
    pub addr: String,
    pub timeout: Duration,
}

impl Server {
    /// Sends one message and reads one reply (RFC 1035 4.2.2 framing).
    pub fn exchange(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        let at = &self.addr;
        let mut s = std::net::TcpStream::connect(at.as_str()).map_err(|e| {
            format!("DNS server {at}: cannot connect over TCP ({e}); is it in the job's net grant?")
        })?;
        let _ = s.set_read_timeout(Some(self.timeout));
        let _ = s.set_write_timeout(Some(self.timeout));
        let len = u16::try_from(msg.len()).map_err(|_| "DNS message too long")?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(msg);
        s.write_all(&framed)
            .map_err(|e| format!("DNS server {at}: sending: {e}"))?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len)
            .map_err(|e| format!("DNS server {at}: no answer ({e})"))?;
        let n = usize::from(u16::from_be_bytes(len));
        let mut buf = vec![0u8; n];
        s.read_exact(&mut buf)
            .map_err(|e| format!("DNS server {at}: the answer was cut off ({e})"))?;
        Ok(buf)
    }

    /// Sends a signed UPDATE and checks the answer (and its signature).
    pub fn update(
        &self,
        key: &TsigKey,
        zone: &str,
        records: &[Txt],
        add: bool,
        ttl: u32,
    ) -> Result<(), String> {
        let at = &self.addr;
        let id = random_id();
        let mut msg = update_message(id, zone, records, add, ttl)?;
        let mac = sign(key, &mut msg, unix_now())?;
        let wire = self.exchange(&msg)?;
        let resp =
            parse(&wire).map_err(|e| format!("DNS server {at} sent a malformed answer: {e}"))?;
        if !resp.is_response || resp.id != id || resp.opcode != OPCODE_UPDATE {
            return Err(format!(
                "DNS server {at} answered something else than the update"
            ));
        }
        let tsig = verify_response(key, &wire, &resp, &mac);
        let key_name = &key.name;
        match (resp.rcode, tsig) {
            (0, Ok(t)) if t.error == 0 => Ok(()),
            (0, Ok(t)) => Err(format!(
                "DNS server {at} answered the update signed with TSIG key `{key_name}` with TSIG error {}",
                rcode_name(t.error)
            )),
            (0, Err(e)) => Err(format!(
                "DNS server {at} accepted the update but its answer fails the TSIG check for key `{key_name}`: {e}"
            )),
            (_, Ok(t)) if t.error != 0 => Err(format!(
                "DNS server {at} refused the update signed with TSIG key `{key_name}`: {}",
                rcode_name(t.error)
            )),
            (rcode, _) => Err(format!(
                "DNS server {at} refused the update for zone {zone} signed with TSIG key `{key_name}`: {}",
                rcode_name(rcode)
            )),
        }
    }

    /// The TXT values the server holds at `name`.
    pub fn txt(&self, name: &str) -> Result<Vec<String>, String> {
        let at = &self.addr;
        let id = random_id();
        let wire = self.exchange(&query_message(id, name)?)?;
        let resp =
            parse(&wire).map_err(|e| format!("DNS server {at} sent a malformed answer: {e}"))?;
        if !resp.is_response || resp.id != id {
            return Err(format!(
                "DNS server {at} answered something else than the query"
            ));
        }
        match resp.rcode {
            0 | 3 => {}
            rc => {
                return Err(format!(
                    "DNS server {at} answered the query for {name}: {}",
                    rcode_name(rc)
                ));
            }
        }
        let want = name.trim_end_matches('.').to_ascii_lowercase();
        resp.answers
            .iter()
            .filter(|r| r.typ == TYPE_TXT && r.class == CLASS_IN && r.name == want)
            .map(|r| txt_text(&r.rdata).map_err(|e| format!("DNS server {at}: a TXT record: {e}")))
            .collect()
    }
}

fn random_id() -> u16 {
    let mut b = [0u8; 2];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    u16::from_be_bytes(b)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An UPDATE `nsupdate -v -y hmac-sha256:opsd-acme:<secret>` sent
    /// (captured from a listening socket): adds
    /// `_acme-challenge.dns.opsd.test. 60 IN TXT "abc-DEF_123"` to zone
    /// `dns.opsd.test`, names compressed.
    const NSUPDATE: &str = "aa442800000100000001000103646e73046f707364047465737400000600010f5f61636d652d6368616c6c656e6765c00c001000010000003c000c0b6162632d4445465f313233096f7073642d61636d650000fa00ff00000000003d0b686d61632d7368613235360000006b0e2fe8012c002008f5bfae071ebcf1fcba3cfce7594ee6116b6b5cc1e1a560a6dd19343e5a28e6aa4400000000";
    const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYiE=";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn key() -> TsigKey {
        TsigKey {
            name: "opsd-acme".into(),
            algorithm: Algorithm::HmacSha256,
            secret: parse_secret(SECRET).unwrap(),
        }
    }

    #[test]
    fn our_tsig_mac_matches_nsupdates() {
        let wire = hex(NSUPDATE);
        let msg = parse(&wire).unwrap();
        assert_eq!(msg.opcode, OPCODE_UPDATE);
        let rec = msg.additional.last().unwrap();
        assert_eq!((rec.name.as_str(), rec.typ), ("opsd-acme", TYPE_TSIG));
        let tsig = parse_tsig(&rec.rdata).unwrap();
        assert_eq!(tsig.algorithm, "hmac-sha256");
        // The message as signed: without the TSIG record, ARCOUNT 0.
        let mut body = wire[..rec.start].to_vec();
        body[11] = 0;
        assert_eq!(request_mac(&key(), &body, tsig.time).unwrap(), tsig.mac);
        // And a wrong secret gives another MAC.
        let mut bad = key();
        bad.secret[0] ^= 1;
        assert_ne!(request_mac(&bad, &body, tsig.time).unwrap(), tsig.mac);
    }

    #[test]
    fn our_update_carries_the_same_record_and_verifies_like_nsupdates() {
        let records = [Txt {
            name: "_acme-challenge.dns.opsd.test".into(),
            value: "abc-DEF_123".into(),
        }];
        let mut ours = update_message(0xaa44, "dns.opsd.test.", &records, true, 60).unwrap();
        let nsupdate = parse(&hex(NSUPDATE)).unwrap();
        let time = parse_tsig(&nsupdate.additional[0].rdata).unwrap().time;
        let mac = sign(&key(), &mut ours, time).unwrap();
        let parsed = parse(&ours).unwrap();
        // Same update record as nsupdate's (which compressed the name).
        let theirs = &hex(NSUPDATE)[..];
        let mut r = Reader {
            buf: theirs,
            pos: 12,
        };
        r.name().unwrap();
        r.take(4).unwrap();
        assert_eq!(r.name().unwrap(), "_acme-challenge.dns.opsd.test");
        let tail = r.take(10).unwrap();
        assert_eq!(tail[..2], TYPE_TXT.to_be_bytes());
        assert_eq!(tail[4..8], 60u32.to_be_bytes());
        let tsig = parse_tsig(&parsed.additional[0].rdata).unwrap();
        assert_eq!((tsig.original_id, tsig.mac.len()), (0xaa44, 32));
        assert_eq!(tsig.mac, mac);
        // A delete names the same record with class NONE and TTL 0.
        let del = update_message(1, "dns.opsd.test", &records, false, 60).unwrap();
        let tail = &del[del.len() - 22..];
        assert_eq!(tail[..4], [0, 16, 0, 254]);
        assert_eq!(tail[4..8], [0, 0, 0, 0]);
        assert_eq!(txt_text(&tail[10..]).unwrap(), "abc-DEF_123");
    }

    /// A response signed the way a server does (RFC 8945 5.3) verifies;
    /// tampering with it does not.
    #[test]
    fn a_signed_response_is_verified() {
        let k = key();
        let mut req = update_message(7, "z.test", &[], true, 60).unwrap();
        let req_mac = sign(&k, &mut req, 1_700_000_000).unwrap();
        let mut resp = header(7, OPCODE_UPDATE, [1, 0, 0, 0]);
        resp[2] |= 0x80;
        encode_name("z.test", &mut resp).unwrap();
        resp.extend_from_slice(&[0, 6, 0, 1]);
        let mut data = (req_mac.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&req_mac);
        data.extend_from_slice(&resp);
        data.extend(tsig_variables(&k, 1_700_000_001, 0, &[]).unwrap());
        let mac = k.algorithm.mac(&k.secret, &data);
        let mut rdata = Vec::new();
        encode_name("hmac-sha256", &mut rdata).unwrap();
        rdata.extend_from_slice(&1_700_000_001u64.to_be_bytes()[2..]);
        rdata.extend_from_slice(&FUDGE.to_be_bytes());
        rdata.extend_from_slice(&32u16.to_be_bytes());
        rdata.extend_from_slice(&mac);
        rdata.extend_from_slice(&[0, 7, 0, 0, 0, 0]);
        push_rr(&mut resp, "opsd-acme", TYPE_TSIG, CLASS_ANY, 0, &rdata).unwrap();
        resp[11] = 1;
        let parsed = parse(&resp).unwrap();
        verify_response(&k, &resp, &parsed, &req_mac).unwrap();
        let mut tampered = resp.clone();
        tampered[3] = 5; // REFUSED
        let p = parse(&tampered).unwrap();
        assert!(verify_response(&k, &tampered, &p, &req_mac).is_err());
    }

    #[test]
    fn bogus_messages_are_errors_not_panics() {
        let good = hex(NSUPDATE);
        for cut in 0..good.len() {
            assert!(parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        // A pointer to itself, a forward pointer, a reserved label type.
        let mut looping = header(1, 0, [1, 0, 0, 0]);
        looping.extend_from_slice(&[0xC0, 12, 0, 16, 0, 1]);
        assert!(parse(&looping).unwrap_err().contains("backwards"));
        let mut fwd = header(1, 0, [1, 0, 0, 0]);
        fwd.extend_from_slice(&[0xC0, 40, 0, 16, 0, 1]);
        assert!(parse(&fwd).is_err());
        let mut ext = header(1, 0, [1, 0, 0, 0]);
        ext.extend_from_slice(&[0x41, 0, 0, 16, 0, 1]);
        assert!(parse(&ext).is_err());
        // Counts larger than the message holds.
        let huge = header(1, 0, [0, 0xFFFF, 0, 0]);
        assert!(parse(&huge).is_err());
        // Trailing garbage.
        let mut trailing = header(1, 0, [0, 0, 0, 0]);
        trailing.push(0);
        assert!(parse(&trailing).is_err());
        assert!(parse_tsig(&[3, b'a', b'b']).is_err());
        assert!(txt_text(&[5, b'a']).is_err());
        // Random bytes never panic.
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let len = (x % 80) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = parse(&bytes);
            let _ = parse_tsig(&bytes);
        }
    }

    #[test]
    fn secrets_read_bare_or_from_a_bind_key_block() {
        let block = format!(
            "key \"opsd-acme\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{SECRET}\";\n}};\n"
        );
        assert_eq!(parse_secret(&block).unwrap(), parse_secret(SECRET).unwrap());
        assert!(parse_secret("not base64!").is_err());
        assert!(parse_secret("").is_err());
        assert_eq!(
            Algorithm::parse("HMAC-SHA256.").unwrap(),
            Algorithm::HmacSha256
        );
        assert!(Algorithm::parse("hmac-md5").is_err());
    }

    #[test]
    fn names_are_checked() {
        let mut out = Vec::new();
        assert!(encode_name("a..b", &mut out).is_err());
        assert!(encode_name(&"x".repeat(64), &mut out).is_err());
        out.clear();
        encode_name("A.Test.", &mut out).unwrap();
        assert_eq!(out, b"\x01a\x04test\x00");
    }
}
